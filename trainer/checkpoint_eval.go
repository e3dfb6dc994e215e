package trainer

import (
	"context"
	"fmt"
	"io"

	"github.com/ringtrain/ringtrain/model"
)

// EvalOptions selects what EvaluateCheckpoint measures.
type EvalOptions struct {
	Data       string    // prepared dataset directory
	SeqLen     int       // T; 0 means the model's context
	MicroBatch int       // b; 0 means 8
	Batches    int       // validation batches; 0 means all that fit
	Objective  Objective // "" means causal
	Seed       uint64    // masking seed of the masked objective
	// Tokenizer reads a dataset that carries no tokenizer file, as Spec.Tokenizer.
	Tokenizer string
	// Notes receives a line saying which tokenizer reads a dataset that carries none;
	// nil for none.
	Notes io.Writer
}

// EvaluateCheckpoint loads a checkpoint (ringtrain's or a Hugging Face GPT-2 directory)
// and returns its mean loss per target token on the dataset's validation split and the
// number of batches evaluated. It is what `ringtrain eval` runs; a training run
// evaluates its own model with Trainer.Evaluate.
func EvaluateCheckpoint(ctx context.Context, dir string, o EvalOptions) (loss float64, batches int, err error) {
	ck, err := model.LoadCheckpoint(dir)
	if err != nil {
		return 0, 0, err
	}
	spec := DefaultSpec()
	spec.Model, spec.Data, spec.Seed = ck.Config, o.Data, o.Seed
	spec.SeqLen, spec.MicroBatch, spec.EvalBatches = o.SeqLen, o.MicroBatch, o.Batches
	spec.Tokenizer = o.Tokenizer
	if spec.SeqLen == 0 {
		spec.SeqLen = ck.Config.MaxSeqLen
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
	p, err := Prepare(ctx, spec)
	if err != nil {
		return 0, 0, err
	}
	if p.TokenizerNote != "" && o.Notes != nil {
		fmt.Fprintln(o.Notes, p.TokenizerNote)
	}
	if same, err := sameTokenizer(ck.Tokenizer, p); err != nil || !same {
		return 0, 0, fmt.Errorf("checkpoint %s and dataset %s use different tokenizers", dir, o.Data)
	}
	if p.Val == nil || p.Val.Len() == 0 {
		return 0, 0, fmt.Errorf("dataset %s: validation split has no batch of %d x %d tokens", o.Data, spec.MicroBatch, spec.SeqLen)
	}
	m, err := model.New(ck.Config, nil)
	if err != nil {
		return 0, 0, err
	}
	copy(m.Params.Slab, ck.Params)
	tr, err := New(p.Spec, m, nil, p.Loader, int32(p.Tokenizer.Mask()))
	if err != nil {
		return 0, 0, err
	}
	loss, err = tr.Evaluate(ctx, p.Val)
	return loss, p.Val.Len(), err
}
