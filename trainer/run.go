package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"time"

	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/shard"
	"github.com/ringtrain/ringtrain/tensor"
	"github.com/ringtrain/ringtrain/tokenizer"
)

// RunOptions are the knobs of a single-process training run that are not part of the job.
type RunOptions struct {
	Logger *slog.Logger // structured logs; nil discards them
	// Progress receives one human-readable line per log interval, or a live bar
	// when it is a terminal (see package progress); nil for none.
	Progress io.Writer
	// NoResume refuses to resume: a run directory that holds checkpoints is an error
	// instead of a place to continue from.
	NoResume bool
	// NoTensorBoard turns off the TensorBoard event files under <out>/tb.
	NoTensorBoard bool
	// Backend is what the model computes on; nil means the CPU.
	Backend tensor.Backend
}

// Result summarises a finished run.
type Result struct {
	Step      int64   // last completed step, also when Run stops early
	StartStep int64   // the step Run started from: 0, or the resumed checkpoint's
	TrainLoss float64 // mean loss of the last step
	ValLoss   float64 // NaN if never evaluated
	// ValTokenAccuracy is the share of trained validation targets the model ranks
	// first at the last evaluation (NaN if never evaluated).
	ValTokenAccuracy float64
	Checkpoint       string // directory of the last checkpoint written or resumed from
	Elapsed          time.Duration
	TokensPerSec     float64
	// Stopped names the rule that ended the run before spec.Steps (max_time,
	// target_val_loss, patience); "" when it ran to the end or was cancelled.
	Stopped StopReason
}

// Prepared is a job bound to its data: the spec completed from the dataset, the
// tokenizer and the data loader. The single-process trainer and the workers build it
// the same way.
type Prepared struct {
	Spec      Spec
	Dataset   *shard.Dataset
	Tokenizer tokenizer.Tokenizer
	// TokenizerJSON is ringtrain's serialization of Tokenizer (tokenizer.Marshal),
	// what checkpoints carry.
	TokenizerJSON []byte
	// TokenizerNote says which tokenizer reads a dataset that carries none (llm.c
	// shards); "" when the dataset has its own. Callers show it to the user.
	TokenizerNote string
	// ObjectiveNote says that the objective was taken from the dataset (an SFT
	// dataset under the default causal objective); "" otherwise. Callers show it.
	ObjectiveNote string
	Loader        *shard.Loader
	Val           *shard.ValIterator // nil when eval_batches is 0 or there is no val split

	hfState
}

// Prepare opens the job's dataset and tokenizer, fills in the model's vocabulary size
// (from the tokenizer) and maximum sequence length (seq_len, when unset), validates the
// spec and builds the data loader. A dataset without a tokenizer file is read with
// spec.Tokenizer, by default GPT-2's (see resolveDatasetTokenizer), and its token ids
// are then checked against that tokenizer's vocabulary as they are read.
func Prepare(ctx context.Context, spec Spec) (*Prepared, error) {
	ds, err := shard.Open(spec.Data)
	if err != nil {
		return nil, fmt.Errorf("dataset %s: %w", spec.Data, err)
	}
	dt, err := resolveDatasetTokenizer(ds, spec.Tokenizer)
	if err != nil {
		return nil, err
	}
	tok, tokJSON := dt.tok, dt.json
	if ds.Manifest().Computed && ds.TokenizerPath() == "" {
		// Reopen so that the loader refuses ids the chosen tokenizer does not have.
		if ds, err = shard.OpenWithOptions(spec.Data, shard.OpenOptions{VocabSize: tok.VocabSize()}); err != nil {
			return nil, fmt.Errorf("dataset %s: %w", spec.Data, err)
		}
	}
	if spec.Model.VocabSize == 0 {
		spec.Model.VocabSize = tok.VocabSize()
	}
	if spec.Model.VocabSize < tok.VocabSize() {
		return nil, fmt.Errorf("%w: model.vocab_size=%d is smaller than the tokenizer's %d", ErrBadSpec, spec.Model.VocabSize, tok.VocabSize())
	}
	if spec.Model.MaxSeqLen == 0 {
		spec.Model.MaxSeqLen = spec.SeqLen
	}
	objectiveNote, err := resolveObjective(&spec, ds)
	if err != nil {
		return nil, err
	}
	sampler, err := newSampler(spec, ds.Manifest())
	if err != nil {
		return nil, fmt.Errorf("dataset %s: %w", spec.Data, err)
	}
	if spec, err = resolveEpochs(spec, sampler); err != nil {
		return nil, err
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	loader, err := shard.NewLoader(ds, sampler, shard.LoaderOptions{})
	if err != nil {
		return nil, err
	}
	if spec.Objective == SFT {
		// Load and verify the row counts now, so that a bad sidecar fails the job
		// before its first step.
		if _, err := loader.TrainedTargets(ctx, 0); err != nil {
			return nil, fmt.Errorf("dataset %s: %w", spec.Data, err)
		}
	}
	p := &Prepared{Spec: spec, Dataset: ds, Tokenizer: tok, TokenizerJSON: tokJSON, TokenizerNote: dt.note, ObjectiveNote: objectiveNote, Loader: loader}
	if spec.EvalBatches > 0 && len(ds.Manifest().ValTokens()) > 0 {
		val, err := loader.Val(spec.EvalBatches)
		if err != nil {
			return nil, fmt.Errorf("dataset %s: validation split: %w", spec.Data, err)
		}
		p.Val = val
	}
	if p.Val == nil {
		switch {
		case spec.TargetValLoss > 0:
			return nil, fmt.Errorf("%w: target_val_loss=%v needs a validation split, and dataset %s has none", ErrBadSpec, spec.TargetValLoss, spec.Data)
		case spec.Patience > 0:
			return nil, fmt.Errorf("%w: patience=%v needs a validation split, and dataset %s has none", ErrBadSpec, spec.Patience, spec.Data)
		}
	}
	return p, nil
}

// CheckpointRoot is the directory under a run directory that holds its checkpoints.
func CheckpointRoot(out string) string { return filepath.Join(out, "ckpt") }

// Run trains spec in this process: it resumes from the newest checkpoint in the run
// directory (unless opts.NoResume), or starts from spec.InitFrom, or from a fresh
// initialisation; announces the run (RunInfo: the banner to opts.Progress, warnings
// also to the log); logs and evaluates at the spec's intervals; writes checkpoints, a
// JSONL metrics file and TensorBoard event files (unless opts.NoTensorBoard); and
// returns when the last step is done, when a stopping rule holds (Cadence.Stop:
// max_time, target_val_loss, patience; Result.Stopped names it), or when ctx is
// cancelled. In the last two cases it writes a checkpoint of the last completed step
// first. With keep_checkpoints set, each checkpoint written is followed by deleting
// the ones Retain lets go. A run directory already at (or past) spec.Steps is left
// alone: Run returns at once with Result.Step == Result.StartStep, announcing nothing.
func Run(ctx context.Context, spec Spec, opts RunOptions) (*Result, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p, err := Prepare(ctx, spec)
	if err != nil {
		return nil, err
	}
	spec = p.Spec
	for _, n := range []struct{ key, note string }{{"tokenizer", p.TokenizerNote}, {"objective", p.ObjectiveNote}} {
		if n.note != "" {
			log.Info(n.key, "note", n.note)
			if opts.Progress != nil {
				fmt.Fprintln(opts.Progress, n.note)
			}
		}
	}
	m, err := model.New(spec.Model, opts.Backend)
	if err != nil {
		return nil, err
	}
	opt := model.NewAdamW(spec.Model)
	tr, err := New(spec, m, opt, p.Loader, int32(p.Tokenizer.Mask()))
	if err != nil {
		return nil, err
	}
	resumed, err := initState(tr, spec, p, opts, log)
	if err != nil {
		return nil, err
	}
	// A resumed step already has its checkpoint: never write it again.
	res := &Result{Step: tr.Step, StartStep: tr.Step, ValLoss: math.NaN(), ValTokenAccuracy: math.NaN(), Checkpoint: resumed}
	if tr.Step >= spec.Steps {
		log.Info("nothing to do: the run is already at its last step", "step", tr.Step, "steps", spec.Steps, "checkpoint", resumed)
		return res, nil
	}
	Describe(p, tr.Step, resumed).Announce(opts.Progress, log)
	streams := spec.AllStreams()
	start, startStep, startTokens := time.Now(), tr.Step, tr.TokensSeen()
	books := NewBookkeeper(spec, p.Cadence(), BookkeeperOptions{Progress: opts.Progress, Start: start, StartStep: startStep, StartTokens: startTokens, Logger: log,
		NoTensorBoard: opts.NoTensorBoard})
	defer books.Close()
	if err := books.Open(); err != nil {
		return nil, err
	}
	lastSaved := tr.Step
	evalStep, evalLoss := int64(-1), math.NaN() // the newest evaluation, recorded in the checkpoint of its step
	save := func() error {
		if tr.Step == lastSaved || tr.Step == 0 {
			return nil
		}
		vl := math.NaN()
		if evalStep == tr.Step {
			vl = evalLoss
		}
		dir, err := saveCheckpoint(tr, p, res.TrainLoss, vl)
		if err != nil {
			return err
		}
		lastSaved, res.Checkpoint = tr.Step, dir
		log.Info("checkpoint written", "step", tr.Step, "dir", dir)
		// The new checkpoint is durable: the ones retention lets go can be deleted.
		deleted, err := PruneCheckpoints(ctx, CheckpointRoot(spec.Out), spec.KeepCheckpoints, tr.Step)
		for _, d := range deleted {
			log.Info("checkpoint deleted", "dir", d, "keep_checkpoints", spec.KeepCheckpoints)
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("deleting old checkpoints", "err", err)
		}
		return nil
	}
	for tr.Step < spec.Steps {
		if ctx.Err() != nil {
			log.Info("stopping", "step", tr.Step, "reason", ctx.Err())
			if err := save(); err != nil {
				return res, err
			}
			return res, ctx.Err()
		}
		step := tr.Step
		lossSum, err := tr.StepGradients(ctx, step, streams)
		if err != nil {
			if ctx.Err() != nil {
				tr.Rollback() // a ppo step's inner updates are undone
				continue      // stop at the top of the loop, checkpointing the last full step
			}
			return res, err
		}
		norm, lr, err := tr.Apply()
		if err != nil {
			return res, err
		}
		res.Step, res.TrainLoss = tr.Step, tr.MeanLoss(step, lossSum)
		rec := books.Step(StepDone{Step: tr.Step, Tokens: tr.TokensSeen(), Loss: res.TrainLoss, LR: lr, GradNorm: norm})
		tr.Pref.Record(rec)
		if spec.Objective == PPO {
			tr.PPO.Record(rec)
		}
		if books.Cadence().Evaluate(tr.Step) {
			// An evaluation cut short by ctx is left out: the run stops at the top
			// of the loop.
			ev, err := tr.EvaluateFull(ctx, p.Val)
			if err != nil && ctx.Err() == nil {
				return res, err
			}
			if err == nil {
				vl := ev.Loss
				res.ValLoss, res.ValTokenAccuracy, evalStep, evalLoss = vl, ev.Accuracy, tr.Step, vl
				books.Evaluated(rec, tr.Step, vl)
				if spec.Objective == SFT {
					books.EvaluatedAccuracy(rec, tr.Step, ev.Accuracy)
					log.Info(EvalLogMessage, "step", tr.Step, "val_loss", vl, "val_token_acc", ev.Accuracy)
				} else {
					log.Info(EvalLogMessage, "step", tr.Step, "val_loss", vl)
				}
			}
		}
		if err := books.Write(rec); err != nil {
			return res, err
		}
		if books.Cadence().Checkpoint(tr.Step) {
			if err := save(); err != nil {
				return res, err
			}
		}
		if r := books.Stop(tr.Step); r != "" {
			res.Stopped = r
			books.Stopped(tr.Step, r)
			log.Info("stopping early", "step", tr.Step, "rule", string(r))
			break
		}
	}
	if err := save(); err != nil {
		return res, err
	}
	if err := books.Close(); err != nil {
		return res, err
	}
	res.Step = tr.Step
	res.Elapsed = time.Since(start)
	if s := res.Elapsed.Seconds(); s > 0 {
		res.TokensPerSec = float64(tr.TokensSeen()-startTokens) / s
	}
	return res, nil
}

// initState loads the newest checkpoint of the run directory, or spec.InitFrom, or
// draws a fresh initialisation. It returns the checkpoint resumed from, if any.
func initState(tr *Trainer, spec Spec, p *Prepared, opts RunOptions, log *slog.Logger) (resumed string, err error) {
	dir, err := model.LatestCheckpoint(CheckpointRoot(spec.Out))
	if err == nil && opts.NoResume {
		return "", fmt.Errorf("run directory %s already holds checkpoint %s: remove it or choose another --out to start afresh", spec.Out, dir)
	}
	if !opts.NoResume {
		switch {
		case err == nil:
			ck, err := model.LoadCheckpoint(dir)
			if err != nil {
				return "", fmt.Errorf("resume: %w", err)
			}
			if err := resumeFrom(tr, ck, p, dir); err != nil {
				return "", err
			}
			log.Info("resumed", "dir", dir, "step", tr.Step)
			return dir, nil
		case !errors.Is(err, model.ErrNoCheckpoint):
			return "", fmt.Errorf("resume: %w", err)
		}
	}
	if err := InitWeights(tr, p); err != nil {
		return "", err
	}
	if spec.InitFrom != "" {
		log.Info("initialised from checkpoint", "dir", spec.InitFrom)
	}
	return "", nil
}

func resumeFrom(tr *Trainer, ck *model.Checkpoint, p *Prepared, dir string) error {
	if err := checkModel("checkpoint", dir, ck.Config, tr.Spec.Model); err != nil {
		return err
	}
	if ck.Opt == nil {
		return fmt.Errorf("resume: checkpoint %s has no optimizer state", dir)
	}
	if same, err := sameTokenizer(ck.Tokenizer, p); err != nil || !same {
		return fmt.Errorf("resume: checkpoint %s was trained with a different tokenizer than dataset %s", dir, tr.Spec.Data)
	}
	copy(tr.Model.Params.Slab, ck.Params)
	copy(tr.Opt.M, ck.Opt.M)
	copy(tr.Opt.V, ck.Opt.V)
	tr.Opt.Step = ck.Opt.Step
	tr.Step = ck.Trainer.Step
	if tr.Spec.Objective == PPO {
		// A ppo step's tokens depend on its answers: the count is trained state.
		if ck.Trainer.TokensSeen < 0 {
			return fmt.Errorf("resume: checkpoint %s records tokens_seen %d: must be >= 0", dir, ck.Trainer.TokensSeen)
		}
		tr.PPOTokens = ck.Trainer.TokensSeen
	}
	if b := ck.Trainer.PPOBeta; b != nil && tr.Spec.Objective == PPO && tr.Spec.PPO != nil && tr.Spec.PPO.TargetKL > 0 {
		// The adaptive KL coefficient is trained state; a fixed one is the job's beta.
		if !(*b > 0) || math.IsInf(*b, 0) {
			return fmt.Errorf("resume: checkpoint %s records ppo_beta %v: must be a finite number > 0", dir, *b)
		}
		tr.PPOBeta = *b
	}
	return nil
}

func saveCheckpoint(tr *Trainer, p *Prepared, loss, valLoss float64) (string, error) {
	job, err := json.Marshal(tr.Spec)
	if err != nil {
		return "", err
	}
	dir := model.CheckpointDir(CheckpointRoot(tr.Spec.Out), tr.Step)
	eot := p.Tokenizer.EOT()
	ck := &model.Checkpoint{
		Config: tr.Spec.Model,
		Params: tr.Model.Params.Slab,
		Opt:    tr.Opt,
		Trainer: model.TrainerState{
			Step: tr.Step, Seed: tr.Spec.Seed, TokensSeen: tr.TokensSeen(),
			Loss: loss, Job: job,
		},
		Tokenizer:   p.TokenizerJSON,
		HFTokenizer: p.hfTokenizerFiles(),
		EOT:         &eot,
	}
	if sft := p.Dataset.Manifest().SFT; sft != nil && (tr.Spec.Objective == SFT || tr.Spec.Objective == PPO || isPreference(tr.Spec.Objective)) {
		// Generation (an sft, dpo or ppo policy) and scoring (a reward model) render
		// prompts with the template the model was tuned with.
		ck.Trainer.ChatTemplate = sft.Template
	}
	if !math.IsNaN(valLoss) {
		ck.Trainer.ValLoss = &valLoss
	}
	if tr.Spec.Objective == PPO {
		beta := tr.PPOBeta
		ck.Trainer.PPOBeta = &beta
	}
	if err := model.SaveCheckpoint(dir, ck); err != nil {
		return "", err
	}
	return dir, nil
}
