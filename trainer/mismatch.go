package trainer

import (
	"fmt"
	"strings"

	"github.com/ringtrain/ringtrain/model"
)

// ModelMismatchError reports a checkpoint whose model shape differs from the job's:
// the run directory's newest checkpoint when resuming, or init_from. It wraps
// ErrBadSpec. Its message names the differing fields in the job spec's terms
// (model.layers, ...); Fields lists them for callers that name them otherwise, as
// the command line does with its flags.
type ModelMismatchError struct {
	// Source is "checkpoint" (resuming from the run directory) or "init_from".
	Source     string
	Dir        string       // the checkpoint
	Checkpoint model.Config // the checkpoint's model
	Job        model.Config // the job's model, vocabulary and context filled in
}

// ModelField is one model field whose value differs between a checkpoint and the job.
type ModelField struct {
	Name            string // the job spec's key under model: layers, heads, embd, max_seq_len, vocab_size
	Checkpoint, Job int
}

// Fields returns the fields that differ, in the order of model.Config.
func (e *ModelMismatchError) Fields() []ModelField {
	c, j := e.Checkpoint, e.Job
	all := []ModelField{
		{"layers", c.Layers, j.Layers},
		{"heads", c.Heads, j.Heads},
		{"embd", c.Embd, j.Embd},
		{"max_seq_len", c.MaxSeqLen, j.MaxSeqLen},
		{"vocab_size", c.VocabSize, j.VocabSize},
	}
	var diff []ModelField
	for _, f := range all {
		if f.Checkpoint != f.Job {
			diff = append(diff, f)
		}
	}
	return diff
}

func (e *ModelMismatchError) Error() string {
	var parts []string
	for _, f := range e.Fields() {
		parts = append(parts, fmt.Sprintf("model.%s %d in the checkpoint, %d in the job", f.Name, f.Checkpoint, f.Job))
	}
	return fmt.Sprintf("%v: %s %s has another model shape: %s", ErrBadSpec, e.Source, e.Dir, strings.Join(parts, "; "))
}

func (e *ModelMismatchError) Unwrap() error { return ErrBadSpec }

// checkModel returns a ModelMismatchError when the checkpoint's model (from source
// dir) differs from the job's, else nil.
func checkModel(source, dir string, ck, job model.Config) error {
	if ck == job {
		return nil
	}
	return &ModelMismatchError{Source: source, Dir: dir, Checkpoint: ck, Job: job}
}
