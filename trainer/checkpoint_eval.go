package trainer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"

	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/shard"
	"github.com/ringtrain/ringtrain/tensor"
)

// EvalOptions selects what EvaluateCheckpoint measures.
type EvalOptions struct {
	Data string // prepared dataset directory
	// Split is the split to evaluate: "val" (or "") or "train".
	Split      string
	SeqLen     int // T; 0 means the model's context
	MicroBatch int // b; 0 means 8
	// Batches is the number of batches to evaluate; 0 means all that fit, and also
	// the rows (for reward and dpo the pairs) after the last whole batch, so that
	// every row of the split counts.
	Batches int
	// Objective is the objective to measure; "" means the checkpoint's: the
	// objective of the job it was trained with, causal for one that records no job
	// (a Hugging Face directory).
	Objective Objective
	// Seed is the masking seed of the masked objective; 0 means the seed of the job
	// the checkpoint was trained with, so that the validation split is masked as the
	// run masked it.
	Seed uint64
	// Tokenizer reads a dataset that carries no tokenizer file, as Spec.Tokenizer.
	Tokenizer string
	// Notes receives a line saying which tokenizer reads a dataset that carries none;
	// nil for none.
	Notes io.Writer
	// Backend is what the model computes on; nil means the CPU.
	Backend tensor.Backend
}

// EvalReport is what EvaluateCheckpointReport measured.
type EvalReport struct {
	Loss       float64   // mean loss per target token
	Perplexity float64   // exp(Loss)
	Tokens     int64     // target tokens the mean is over: every position (causal), the masked ones (masked), the trained ones (sft)
	Accuracy   float64   // share of those targets the model ranks first
	Batches    int       // batches evaluated, a final partial one included
	Split      string    // "val" or "train"
	Objective  Objective // the objective measured
	SeqLen     int       // T of every batch
	MicroBatch int       // b of every batch
	Seed       uint64    // masking seed (masked objective)
	// Preference holds the pair measures of the reward and dpo objectives (Loss is
	// then per pair, Accuracy the pair accuracy and Tokens the pairs); nil otherwise.
	Preference *PrefEval
}

// EvaluateCheckpoint loads a checkpoint (ringtrain's or a Hugging Face GPT-2 directory)
// and returns its mean loss per target token on a split of the dataset (by default
// the validation split) and the number of batches evaluated. It is
// EvaluateCheckpointReport without the details.
func EvaluateCheckpoint(ctx context.Context, dir string, o EvalOptions) (loss float64, batches int, err error) {
	r, err := EvaluateCheckpointReport(ctx, dir, o)
	if err != nil {
		return 0, 0, err
	}
	return r.Loss, r.Batches, nil
}

// EvaluateCheckpointReport loads a checkpoint and measures it on a split of the
// dataset, with the objective it was trained with unless o says otherwise. It is
// what `ringtrain eval` runs; a training run evaluates its own model with
// Trainer.Evaluate, and with the run's batch shape, objective and seed this gives
// exactly the validation loss the run reported.
func EvaluateCheckpointReport(ctx context.Context, dir string, o EvalOptions) (*EvalReport, error) {
	split := shard.Split(o.Split)
	if split == "" {
		split = shard.SplitVal
	}
	if split != shard.SplitVal && split != shard.SplitTrain {
		return nil, fmt.Errorf("split %q: want %q or %q", o.Split, shard.SplitVal, shard.SplitTrain)
	}
	ck, err := model.LoadCheckpoint(dir)
	if err != nil {
		return nil, err
	}
	job, err := checkpointJob(dir, ck)
	if err != nil {
		return nil, err
	}
	spec := DefaultSpec()
	spec.Model, spec.Data = ck.Config, o.Data
	spec.SeqLen, spec.MicroBatch, spec.EvalBatches = o.SeqLen, o.MicroBatch, o.Batches
	spec.Tokenizer = o.Tokenizer
	spec.Objective, spec.Seed, spec.MaskRate = job.Objective, job.Seed, job.MaskRate
	spec.InitFrom, spec.Beta = job.InitFrom, job.Beta
	if spec.SeqLen == 0 {
		spec.SeqLen = ck.Config.MaxSeqLen
		// An SFT dataset's rows fix T.
		if ds, err := shard.Open(o.Data); err == nil && ds.Manifest().SFT != nil {
			spec.SeqLen = ds.Manifest().SFT.RowTokens - 1
		}
	}
	if spec.MicroBatch == 0 {
		spec.MicroBatch = 8
	}
	if spec.EvalBatches == 0 {
		spec.EvalBatches = 1 << 30
	}
	if o.Objective != "" {
		spec.Objective = o.Objective
	}
	if o.Seed != 0 {
		spec.Seed = o.Seed
	}
	if spec.Objective != DPO {
		spec.InitFrom, spec.Beta = "", 0
	} else if spec.InitFrom == "" {
		// A model not trained with dpo is its own reference: its margins are 0, and
		// PrefEval.PolicyAccuracy still ranks its answers.
		spec.InitFrom = dir
	}
	p, err := Prepare(ctx, spec)
	if err != nil {
		return nil, err
	}
	if p.TokenizerNote != "" && o.Notes != nil {
		fmt.Fprintln(o.Notes, p.TokenizerNote)
	}
	if same, err := sameTokenizer(ck.Tokenizer, p); err != nil || !same {
		return nil, fmt.Errorf("checkpoint %s and dataset %s use different tokenizers", dir, o.Data)
	}
	batches, err := p.Loader.Eval(split, spec.EvalBatches)
	if err != nil {
		return nil, fmt.Errorf("dataset %s: %s split: %w", o.Data, split, err)
	}
	if batches.Len() == 0 && batches.Tail() == 0 {
		return nil, fmt.Errorf("dataset %s: %s split has no batch of %d x %d tokens", o.Data, split, spec.MicroBatch, spec.SeqLen)
	}
	m, err := model.New(ck.Config, o.Backend)
	if err != nil {
		return nil, err
	}
	copy(m.Params.Slab, ck.Params)
	tr, err := New(p.Spec, m, nil, p.Loader, int32(p.Tokenizer.Mask()))
	if err != nil {
		return nil, err
	}
	if isPreference(p.Spec.Objective) {
		pe, err := tr.EvaluatePreference(ctx, batches)
		if err != nil {
			return nil, err
		}
		return &EvalReport{
			Loss: pe.Loss, Perplexity: math.Exp(pe.Loss), Tokens: pe.Pairs, Accuracy: pe.Accuracy, Batches: pe.Batches,
			Split: string(split), Objective: p.Spec.Objective, SeqLen: p.Spec.SeqLen, MicroBatch: p.Spec.MicroBatch, Seed: p.Spec.Seed,
			Preference: &pe,
		}, nil
	}
	ev, err := tr.EvaluateFull(ctx, batches)
	if err != nil {
		return nil, err
	}
	loss := ev.Loss
	n := batches.Len()
	if batches.Tail() > 0 {
		n++ // the rows after the last whole batch
	}
	return &EvalReport{
		Loss: loss, Perplexity: math.Exp(loss), Tokens: ev.Tokens, Accuracy: ev.Accuracy, Batches: n,
		Split: string(split), Objective: p.Spec.Objective, SeqLen: p.Spec.SeqLen, MicroBatch: p.Spec.MicroBatch, Seed: p.Spec.Seed,
	}, nil
}

// checkpointJob returns the objective, seed and mask rate of the job a checkpoint
// was trained with (its trainer_state.json's job), or the defaults (causal) for a
// checkpoint that records none, such as a Hugging Face directory.
func checkpointJob(dir string, ck *model.Checkpoint) (Spec, error) {
	def := DefaultSpec()
	if len(ck.Trainer.Job) == 0 {
		return def, nil
	}
	var job struct {
		Objective Objective `json:"objective"`
		Seed      *uint64   `json:"seed"`
		MaskRate  *float64  `json:"mask_rate"`
		InitFrom  string    `json:"init_from"`
		Beta      float64   `json:"beta"`
	}
	if err := json.Unmarshal(ck.Trainer.Job, &job); err != nil {
		return def, fmt.Errorf("checkpoint %s: trainer state: job: %w", dir, err)
	}
	if job.Objective != "" {
		def.Objective = ppoEvalObjective(job.Objective)
	}
	if job.Seed != nil {
		def.Seed = *job.Seed
	}
	if job.MaskRate != nil && *job.MaskRate > 0 {
		def.MaskRate = *job.MaskRate
	}
	def.InitFrom, def.Beta = job.InitFrom, job.Beta
	return def, nil
}
