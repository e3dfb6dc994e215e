package trainer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/shard"
)

// cancelAt is a progress writer that cancels a run once it reports step k.
type cancelAt struct {
	prefix string
	cancel context.CancelFunc
	lines  bytes.Buffer
}

func newCancelAt(k, steps int64, cancel context.CancelFunc) *cancelAt {
	return &cancelAt{prefix: fmt.Sprintf("step %*d/%d  loss", len(fmt.Sprint(steps)), k, steps), cancel: cancel}
}

func (c *cancelAt) Write(p []byte) (int, error) {
	if strings.HasPrefix(string(p), c.prefix) {
		c.cancel()
	}
	return c.lines.Write(p)
}

func loadCkpt(t *testing.T, out string, step int64) *model.Checkpoint {
	t.Helper()
	ck, err := model.LoadCheckpoint(model.CheckpointDir(CheckpointRoot(out), step))
	if err != nil {
		t.Fatal(err)
	}
	return ck
}

func sameCheckpoints(t *testing.T, what string, a, b *model.Checkpoint) {
	t.Helper()
	for name, pair := range map[string][2][]float32{"params": {a.Params, b.Params}, "exp_avg": {a.Opt.M, b.Opt.M}, "exp_avg_sq": {a.Opt.V, b.Opt.V}} {
		if i := firstBitDiff(pair[0], pair[1]); i >= 0 {
			t.Errorf("%s: %s differ first at %d: %v vs %v", what, name, i, pair[0][i], pair[1][i])
		}
	}
	if a.Opt.Step != b.Opt.Step || a.Trainer.Step != b.Trainer.Step {
		t.Errorf("%s: steps (adamw %d, trainer %d) vs (adamw %d, trainer %d)", what, a.Opt.Step, a.Trainer.Step, b.Opt.Step, b.Trainer.Step)
	}
	if math.Float64bits(a.Trainer.Loss) != math.Float64bits(b.Trainer.Loss) {
		t.Errorf("%s: last losses %v vs %v", what, a.Trainer.Loss, b.Trainer.Loss)
	}
}

// TestRunResumesBitIdentically trains 6 steps straight through in one run directory,
// and in another trains, is interrupted after step 3, and resumes: the final
// parameters and optimizer state must have the same bits.
func TestRunResumesBitIdentically(t *testing.T) {
	data := prepareData(t)
	for _, obj := range []Objective{CausalLM, MaskedLM, SFT} {
		t.Run(string(obj), func(t *testing.T) {
			ctx := context.Background()
			spec := tinySpec(data, filepath.Join(t.TempDir(), "a"))
			if obj == SFT {
				spec = sftSpec(prepareSFTData(t, 120), spec.Out)
			}
			spec.Objective, spec.Streams, spec.CheckpointInterval = obj, 2, 3
			resA, err := Run(ctx, spec, RunOptions{})
			if err != nil {
				t.Fatalf("run A: %v", err)
			}
			if want := model.CheckpointDir(CheckpointRoot(spec.Out), 6); resA.Step != 6 || resA.Checkpoint != want {
				t.Errorf("run A: step %d checkpoint %q, want 6 and %q", resA.Step, resA.Checkpoint, want)
			}

			// Run B stops after step 3 (checkpointing it on the way out) and resumes.
			specB := spec
			specB.Out, specB.CheckpointInterval = filepath.Join(t.TempDir(), "b"), 0
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			progress := newCancelAt(3, specB.Steps, cancel)
			res, err := Run(cctx, specB, RunOptions{Progress: progress})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted run B: error %v, want context.Canceled\n%s", err, progress.lines.String())
			}
			if want := model.CheckpointDir(CheckpointRoot(specB.Out), 3); res == nil || res.Checkpoint != want || res.Step != 3 {
				t.Fatalf("interrupted run B: result %+v, want step 3 and checkpoint %s", res, want)
			}
			if latest, err := model.LatestCheckpoint(CheckpointRoot(specB.Out)); err != nil || filepath.Base(latest) != "step-000003" {
				t.Fatalf("after the interruption the newest checkpoint is %q (%v), want step-000003", latest, err)
			}
			sameCheckpoints(t, "step 3 (interrupted B vs A)", loadCkpt(t, specB.Out, 3), loadCkpt(t, spec.Out, 3))

			resB, err := Run(ctx, specB, RunOptions{})
			if err != nil {
				t.Fatalf("resumed run B: %v", err)
			}
			if resB.Step != 6 {
				t.Errorf("resumed run B ended at step %d, want 6", resB.Step)
			}
			if math.Float64bits(resB.TrainLoss) != math.Float64bits(resA.TrainLoss) || math.Float64bits(resB.ValLoss) != math.Float64bits(resA.ValLoss) {
				t.Errorf("final losses: resumed (train %v, val %v), straight (train %v, val %v)", resB.TrainLoss, resB.ValLoss, resA.TrainLoss, resA.ValLoss)
			}
			sameCheckpoints(t, "step 6 (resumed B vs A)", loadCkpt(t, specB.Out, 6), loadCkpt(t, spec.Out, 6))

			var steps []float64
			for _, r := range readMetrics(t, specB.Out) {
				steps = append(steps, r["step"].(float64))
			}
			if fmt.Sprint(steps) != "[1 2 3 4 5 6]" {
				t.Errorf("run B's metrics.jsonl has steps %v, want 1..6 once each", steps)
			}
		})
	}
}

// TestRunResumeFromCopiedCheckpoint resumes a run directory that holds only another
// run's step-3 checkpoint and checks it ends where that run ended.
func TestRunResumeFromCopiedCheckpoint(t *testing.T) {
	ctx := context.Background()
	spec := tinySpec(prepareData(t), filepath.Join(t.TempDir(), "a"))
	spec.CheckpointInterval = 3
	if _, err := Run(ctx, spec, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	specB := spec
	specB.Out = filepath.Join(t.TempDir(), "b")
	src := model.CheckpointDir(CheckpointRoot(spec.Out), 3)
	dst := model.CheckpointDir(CheckpointRoot(specB.Out), 3)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Run(ctx, specB, RunOptions{}); err != nil {
		t.Fatalf("resume from the copied checkpoint: %v", err)
	}
	if recs := readMetrics(t, specB.Out); len(recs) != 3 || recs[0]["step"] != 4.0 {
		t.Errorf("resumed run logged %v, want steps 4 to 6", recs)
	}
	sameCheckpoints(t, "step 6", loadCkpt(t, specB.Out, 6), loadCkpt(t, spec.Out, 6))

}

// TestRunAgainAfterTheLastStep checks that running a finished job again is a no-op
// that reports the last checkpoint instead of failing to rewrite it.
func TestRunAgainAfterTheLastStep(t *testing.T) {
	ctx := context.Background()
	spec := tinySpec(prepareData(t), t.TempDir())
	spec.Steps = 2
	first, err := Run(ctx, spec, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	again, err := Run(ctx, spec, RunOptions{})
	if err != nil {
		t.Fatalf("running a finished job again: %v", err)
	}
	if again.Step != 2 || again.Checkpoint != first.Checkpoint {
		t.Errorf("second run: step %d checkpoint %q, want 2 and %q", again.Step, again.Checkpoint, first.Checkpoint)
	}
	if n := len(readMetrics(t, spec.Out)); n != 2 {
		t.Errorf("metrics.jsonl has %d records after the no-op rerun, want 2", n)
	}
}

// TestRunStartsBesideATornFirstCheckpoint checks that a run directory whose only
// checkpoint is the temporary directory of an interrupted first save starts afresh.
func TestRunStartsBesideATornFirstCheckpoint(t *testing.T) {
	spec := tinySpec(prepareData(t), t.TempDir())
	spec.Steps = 2
	torn := filepath.Join(CheckpointRoot(spec.Out), ".step-000001.tmp-42")
	if err := os.MkdirAll(torn, 0o755); err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), spec, RunOptions{})
	if err != nil {
		t.Fatalf("run beside a torn checkpoint: %v", err)
	}
	if res.Step != 2 {
		t.Errorf("run ended at step %d, want 2", res.Step)
	}
}

// TestRunMaskedStepWithoutTargets runs the masked objective at a rate so low that some
// steps mask nothing: such a step must not poison the run with a NaN loss.
func TestRunMaskedStepWithoutTargets(t *testing.T) {
	spec := tinySpec(prepareData(t), t.TempDir())
	spec.Objective, spec.MaskRate, spec.MicroBatch, spec.Steps, spec.EvalBatches = MaskedLM, 0.02, 1, 4, 0
	tr, _ := newTrainer(t, spec)
	empty := -1
	for step := int64(0); step < spec.Steps; step++ {
		if tr.GlobalTargets(step) == 0 {
			empty = int(step)
			break
		}
	}
	if empty < 0 {
		t.Fatal("the test needs a step that masks nothing; lower the mask rate")
	}
	res, err := Run(context.Background(), spec, RunOptions{})
	if err != nil {
		t.Fatalf("run with an empty masked step %d: %v", empty, err)
	}
	for _, r := range readMetrics(t, spec.Out) {
		if l, ok := r["loss"].(float64); !ok || math.IsNaN(l) {
			t.Errorf("metrics record %v has no finite loss", r)
		}
	}
	if res.Step != spec.Steps {
		t.Errorf("run ended at step %d, want %d", res.Step, spec.Steps)
	}
}

// TestRunCorruptShard flips one byte of a train shard: the run must fail with a
// checksum error that names the file.
func TestRunCorruptShard(t *testing.T) {
	data := prepareData(t)
	ds, err := shard.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	// With 4 streams over 4 shards, stream 0 reads shard 0 at step 0.
	file := ds.Manifest().Train[0].File
	path := filepath.Join(data, file)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-10] ^= 0x01
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	spec := tinySpec(data, t.TempDir())
	spec.Streams = 4
	_, err = Run(context.Background(), spec, RunOptions{})
	if !errors.Is(err, shard.ErrChecksum) {
		t.Fatalf("run on a corrupt shard: error %v, want shard.ErrChecksum", err)
	}
	if !strings.Contains(err.Error(), file) {
		t.Errorf("error %q does not name the shard %s", err, file)
	}
	if _, err := os.Stat(CheckpointRoot(spec.Out)); err == nil {
		t.Errorf("a failed first step wrote checkpoints")
	}
}

// TestRunLearns trains a tiny model for 60 steps and checks the loss falls well below
// that of the initialisation (ln 61 = 4.1 for the
// 61-id character vocabulary of the first 60 KB).
func TestRunLearns(t *testing.T) {
	spec := tinySpec(prepareData(t), t.TempDir())
	spec.SeqLen, spec.MicroBatch, spec.Steps = 32, 8, 60
	spec.LR, spec.MinLR, spec.WarmupSteps = 1e-2, 1e-3, 5
	spec.EvalBatches = 4
	res, err := Run(context.Background(), spec, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	recs := readMetrics(t, spec.Out)
	if len(recs) != 60 {
		t.Fatalf("metrics.jsonl has %d records, want 60", len(recs))
	}
	initial := recs[0]["loss"].(float64)
	var last float64
	for _, r := range recs[55:] {
		last += r["loss"].(float64) / 5
	}
	t.Logf("loss: first step %.3f, mean of the last 5 steps %.3f, final val %.3f", initial, last, res.ValLoss)
	if !(initial > 3.5 && initial < 5) {
		t.Errorf("first-step loss %.3f, want about ln(61) = 4.1", initial)
	}
	if !(last < initial-0.5) {
		t.Errorf("loss fell from %.3f to only %.3f in 60 steps", initial, last)
	}
	if !(res.ValLoss < initial-0.5) {
		t.Errorf("validation loss %.3f is not well below the initial %.3f", res.ValLoss, initial)
	}
	if v, ok := recs[59]["val_loss"].(float64); !ok || v != res.ValLoss {
		t.Errorf("the last metrics record's val_loss %v differs from the result's %v", recs[59]["val_loss"], res.ValLoss)
	}
}

// TestRunInitFrom starts a run from another run's checkpoint: its first step's loss is
// that of the checkpoint's weights, and a checkpoint of another shape is refused.
func TestRunInitFrom(t *testing.T) {
	ctx := context.Background()
	data := prepareData(t)
	spec := tinySpec(data, t.TempDir())
	spec.Steps = 3
	resA, err := Run(ctx, spec, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}

	specB := tinySpec(data, t.TempDir())
	specB.Steps, specB.InitFrom = 1, resA.Checkpoint
	if _, err := Run(ctx, specB, RunOptions{}); err != nil {
		t.Fatalf("init_from a checkpoint: %v", err)
	}
	tr, _ := newTrainer(t, specB)
	copy(tr.Model.Params.Slab, loadCkpt(t, spec.Out, 3).Params)
	sum, err := tr.Gradients(ctx, 0, tr.Spec.AllStreams(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := sum / float64(tr.GlobalTargets(0))
	if got := readMetrics(t, specB.Out)[0]["loss"].(float64); got != want {
		t.Errorf("first loss from init_from %v, want that of the checkpoint's weights %v", got, want)
	}

	specC := tinySpec(data, t.TempDir())
	specC.Model.Layers, specC.InitFrom = 1, resA.Checkpoint
	if _, err := Run(ctx, specC, RunOptions{}); !errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), "init_from") {
		t.Errorf("init_from a checkpoint of another shape: error %v, want ErrBadSpec naming init_from", err)
	}
}
