package trainer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/metrics/tensorboard/tbtest"
)

// tbSeries reads a run's event files with the independent reader and returns each
// tag's points by step as TensorBoard shows them: a SessionLog START at step s drops
// the points recorded before it at s and after.
func tbSeries(t *testing.T, out string) (files []string, events []tbtest.Event, series map[string]map[int64]float32) {
	t.Helper()
	files, events, err := tbtest.ReadDir(TensorBoardDir(out))
	if err != nil {
		t.Fatalf("event files: %v", err)
	}
	series = map[string]map[int64]float32{}
	for _, e := range events {
		if e.SessionStatus == 1 {
			for _, pts := range series {
				for step := range pts {
					if step >= e.Step {
						delete(pts, step)
					}
				}
			}
		}
		for _, s := range e.Scalars {
			if series[s.Tag] == nil {
				series[s.Tag] = map[int64]float32{}
			}
			series[s.Tag][e.Step] = s.Value
		}
	}
	return files, events, series
}

// checkAgainstMetrics checks that every TensorBoard series holds exactly the values
// of its field in metrics.jsonl (the last record of each step, as a resumed run
// appends), as float32.
func checkAgainstMetrics(t *testing.T, out string, series map[string]map[int64]float32) {
	t.Helper()
	want := map[string]map[int64]float32{}
	for _, r := range readMetrics(t, out) {
		step := int64(r["step"].(float64))
		for _, s := range tensorBoardScalars {
			if v, ok := r[s.field].(float64); ok {
				if want[s.tag] == nil {
					want[s.tag] = map[int64]float32{}
				}
				want[s.tag][step] = float32(v)
			}
		}
	}
	for tag, pts := range want {
		for step, v := range pts {
			if got, ok := series[tag][step]; !ok || got != v {
				t.Errorf("%s at step %d: TensorBoard has %v (%v), metrics.jsonl %v", tag, step, got, ok, v)
			}
		}
	}
	for tag, pts := range series {
		if len(pts) != len(want[tag]) {
			t.Errorf("%s: %d points in TensorBoard, %d in metrics.jsonl", tag, len(pts), len(want[tag]))
		}
	}
}

// TestRunWritesTensorBoard trains 6 steps, logging every second step and evaluating
// every third, and reads <out>/tb back with the independent reader: one file named
// as TensorBoard's writers name them, the file_version event first, a START at step
// 1, then one event per step with the loss, learning rate and gradient norm, the
// throughput on log steps and the validation loss on evaluation steps, each equal to
// metrics.jsonl's.
func TestRunWritesTensorBoard(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	spec := tinySpec(prepareData(t), out)
	spec.LogInterval, spec.EvalInterval = 2, 3
	if _, err := Run(context.Background(), spec, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	files, events, series := tbSeries(t, out)
	host, _ := os.Hostname()
	if len(files) != 1 || !strings.HasPrefix(files[0], "events.out.tfevents.") || !strings.HasSuffix(files[0], "."+host) {
		t.Fatalf("event files %v, want one events.out.tfevents.<seconds>.%s", files, host)
	}
	if len(events) != 2+6 {
		t.Fatalf("%d events, want the file_version, a START and 6 steps", len(events))
	}
	if events[0].FileVersion != "brain.Event:2" || events[0].WallTime <= 0 {
		t.Errorf("first event %+v, want file_version brain.Event:2 with a wall time", events[0])
	}
	if events[1].SessionStatus != 1 || events[1].Step != 1 || events[1].HasSummary {
		t.Errorf("second event %+v, want START at step 1", events[1])
	}
	for i, e := range events[2:] {
		step := int64(i + 1)
		var tags []string
		for _, s := range e.Scalars {
			tags = append(tags, s.Tag)
		}
		want := []string{"train/loss", "train/lr", "train/grad_norm"}
		if step%2 == 0 {
			want = append(want, "train/tokens_per_sec")
		}
		if step%3 == 0 {
			want = append(want, "val/loss")
		}
		if e.Step != step || !slices.Equal(tags, want) || e.WallTime < events[0].WallTime {
			t.Errorf("event of step %d: step %d, tags %v, wall time %v; want tags %v", step, e.Step, tags, e.WallTime, want)
		}
	}
	if lr := series["train/lr"]; lr[2] <= lr[1] || lr[6] >= lr[3] {
		t.Errorf("train/lr %v: want the warmup rising and the decay falling", lr)
	}
	checkAgainstMetrics(t, out, series)
}

// TestRunResumeAddsEventFile trains 6 steps with a checkpoint every 3, forgets the
// last checkpoint (as a crash after step 6's metrics but before its checkpoint
// would) and runs again: the resumed run adds a second file that restarts at step 4
// and records steps 4-6 again, with the same values (the resume is bit-identical),
// and the merged series have each step once.
func TestRunResumeAddsEventFile(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	spec := tinySpec(prepareData(t), out)
	spec.CheckpointInterval = 3
	if _, err := Run(context.Background(), spec, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	_, _, first := tbSeries(t, out)
	if err := os.RemoveAll(filepath.Join(CheckpointRoot(out), "step-000006")); err != nil {
		t.Fatal(err)
	}
	if res, err := Run(context.Background(), spec, RunOptions{}); err != nil || res.Step != 6 {
		t.Fatalf("resume: step %v, err %v", res, err)
	}
	files, events, merged := tbSeries(t, out)
	if len(files) != 2 {
		t.Fatalf("event files %v, want two", files)
	}
	second, err := tbtest.ReadFile(filepath.Join(TensorBoardDir(out), files[1]))
	if err != nil {
		t.Fatal(err)
	}
	var steps []int64
	for _, e := range second[2:] {
		steps = append(steps, e.Step)
	}
	if second[0].FileVersion != "brain.Event:2" || second[1].SessionStatus != 1 || second[1].Step != 4 || !slices.Equal(steps, []int64{4, 5, 6}) {
		t.Errorf("second file: %+v then steps %v; want file_version, START at 4, steps 4 5 6", second[:2], steps)
	}
	if len(events) != 8+5 {
		t.Errorf("%d events in all, want 8 + 5", len(events))
	}
	for tag, pts := range first {
		if tag == "train/tokens_per_sec" {
			continue // a rate: differs between runs
		}
		for step, v := range pts {
			if merged[tag][step] != v {
				t.Errorf("%s at step %d: %v after the resume, %v before", tag, step, merged[tag][step], v)
			}
		}
	}
	checkAgainstMetrics(t, out, merged)
}

// TestRunNoTensorBoard: with NoTensorBoard there is no <out>/tb.
func TestRunNoTensorBoard(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	spec := tinySpec(prepareData(t), out)
	spec.Steps = 2
	if _, err := Run(context.Background(), spec, RunOptions{NoTensorBoard: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(TensorBoardDir(out)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s: %v, want it absent", TensorBoardDir(out), err)
	}
	if len(readMetrics(t, out)) != 2 {
		t.Errorf("metrics.jsonl: want 2 records")
	}
}

// TestBookkeeperClusterTimes books steps as a cluster's rank 0 does, with the step's
// phase times in the record: they become time/ scalars. StartWindow (a new
// generation) starts a new file that restarts at the step after it.
func TestBookkeeperClusterTimes(t *testing.T) {
	spec := booksSpec(filepath.Join(t.TempDir(), "run"))
	books := NewBookkeeper(spec, NewCadence(spec, true), BookkeeperOptions{})
	write := func(step int64) {
		t.Helper()
		rec := books.Step(StepDone{Step: step, Loss: 3, LR: 1e-3, GradNorm: 0.5, Workers: 2})
		rec["generation"], rec["world_size"] = uint64(1), 2
		rec["step_s"], rec["compute_s"], rec["allreduce_s"] = 0.25, 0.125, 0.0625
		rec["allreduce_busy_s"], rec["optimizer_s"], rec["waiting_s"] = 0.1, 0.03125, 0.03125
		if err := books.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	books.StartWindow(0)
	write(1)
	write(2)
	books.StartWindow(1) // a new generation redoes step 2
	write(2)
	if err := books.Close(); err != nil {
		t.Fatal(err)
	}
	files, events, series := tbSeries(t, spec.Out)
	if len(files) != 2 {
		t.Fatalf("event files %v, want one per generation", files)
	}
	if len(events) != 4+3 || events[5].SessionStatus != 1 || events[5].Step != 2 {
		t.Fatalf("events %+v: want the second file to restart at step 2", events)
	}
	want := map[string]float32{"time/step_s": 0.25, "time/compute_s": 0.125, "time/allreduce_s": 0.0625,
		"time/allreduce_busy_s": 0.1, "time/optimizer_s": 0.03125, "time/waiting_s": 0.03125}
	for tag, v := range want {
		if got := series[tag]; len(got) != 2 || got[1] != v || got[2] != v {
			t.Errorf("%s: %v, want %v at steps 1 and 2", tag, got, v)
		}
	}
	if _, ok := series["world_size"]; ok {
		t.Errorf("world_size written as a scalar: only the listed fields are")
	}
	checkAgainstMetrics(t, spec.Out, series)
}

// TestBookkeeperTensorBoardError: an event folder that cannot be made is an error of
// Write that names it, after the record is in metrics.jsonl.
func TestBookkeeperTensorBoardError(t *testing.T) {
	spec := booksSpec(filepath.Join(t.TempDir(), "run"))
	if err := os.MkdirAll(spec.Out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(TensorBoardDir(spec.Out), []byte("not a folder"), 0o644); err != nil {
		t.Fatal(err)
	}
	books := NewBookkeeper(spec, NewCadence(spec, false), BookkeeperOptions{})
	defer books.Close()
	err := books.Write(books.Step(StepDone{Step: 1, Loss: 2}))
	if err == nil || !strings.Contains(err.Error(), "tensorboard: event folder") || !strings.Contains(err.Error(), TensorBoardDir(spec.Out)) {
		t.Errorf("Write: %v, want an event folder error naming %s", err, TensorBoardDir(spec.Out))
	}
	if n := len(readMetrics(t, spec.Out)); n != 1 {
		t.Errorf("metrics.jsonl has %d records, want 1", n)
	}
}
