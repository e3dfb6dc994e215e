package trainer

import (
	"fmt"

	"github.com/ringtrain/ringtrain/model"
)

// SaveCheckpoint writes tr's state (weights, optimizer, step, the loss of the last
// step, and valLoss, the validation loss measured at tr.Step, unless it is NaN) and
// p's tokenizer to the checkpoint directory of tr.Step under the run directory,
// atomically, and returns that directory. It is the writer trainer.Run uses;
// distributed workers call it from the rank that writes checkpoints.
func SaveCheckpoint(tr *Trainer, p *Prepared, loss, valLoss float64) (string, error) {
	return saveCheckpoint(tr, p, loss, valLoss)
}

// RestoreCheckpoint loads the checkpoint in dir into tr: weights, optimizer state and
// step. The checkpoint must have the job's model shape (a ModelMismatchError
// otherwise), optimizer state and (when it records one) the dataset's tokenizer.
func RestoreCheckpoint(tr *Trainer, p *Prepared, dir string) error {
	ck, err := model.LoadCheckpoint(dir)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return resumeFrom(tr, ck, p, dir)
}

// RestoreCommitted restores tr from the checkpoint in dir as RestoreCheckpoint does,
// after checking that dir is the checkpoint committed with digest (model.VerifyDigest):
// files that differ from the committed ones are an error wrapping model.ErrChecksum
// that names the file, never weights trained on silently.
func RestoreCommitted(tr *Trainer, p *Prepared, dir, digest string) error {
	if err := model.VerifyDigest(dir, digest); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return RestoreCheckpoint(tr, p, dir)
}

// InitWeights gives tr its starting weights for a run without a checkpoint to resume:
// the weights of spec.InitFrom when set, else a fresh initialisation from the job
// seed. The optimizer state and step are left as they are (zero for a new Trainer).
// A checkpoint that records a tokenizer must have the dataset's (p's): fine-tuning on
// ids of another vocabulary would train garbage.
func InitWeights(tr *Trainer, p *Prepared) error {
	spec := tr.Spec
	if spec.InitFrom == "" {
		tr.Model.InitWeights(spec.Seed)
		return nil
	}
	ck, err := model.LoadCheckpoint(spec.InitFrom)
	if err != nil {
		return fmt.Errorf("init_from: %w", err)
	}
	// A reward model may start from a language model: the transformer's weights are
	// the language model's, the score head is drawn fresh.
	newHead := spec.Model.NumLabels == 1 && ck.Config.NumLabels == 0
	ckShape := ck.Config
	if newHead {
		ckShape.NumLabels = 1
	}
	// A PPO policy starts from a language model: its value head is new (initValueHead).
	newValue := spec.Model.ValueHead && !ck.Config.ValueHead
	ckShape.ValueHead = ckShape.ValueHead || newValue
	if err := checkModel("init_from", spec.InitFrom, ckShape, spec.Model); err != nil {
		return err
	}
	if same, err := sameTokenizer(ck.Tokenizer, p); err != nil || !same {
		return fmt.Errorf("%w: init_from %s was trained with a different tokenizer than dataset %s (prepare the dataset with --tokenizer %s)",
			ErrBadSpec, spec.InitFrom, spec.Data, spec.InitFrom)
	}
	copy(tr.Model.Params.Slab, ck.Params)
	if newHead {
		tr.Model.InitScore(spec.Seed)
	}
	if newValue {
		return initValueHead(tr)
	}
	return nil
}
