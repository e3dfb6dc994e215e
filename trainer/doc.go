// Package trainer turns a job spec into training: the spec itself (Spec, the YAML and
// flags a user writes), one step of optimisation over a model replica (Trainer), the
// learning-rate schedule, the step bookkeeping every loop shares (Cadence and
// Bookkeeper: when to log, evaluate, checkpoint and stop early, metrics.jsonl, the
// TensorBoard event files, the progress output and the validation line), checkpoint
// retention (Retain, PruneCheckpoints), evaluation, and the single-process loop (Run).
//
// # Who calls it
//
// `ringtrain train` calls Run. The worker builds the same Trainer over its share of
// the streams, all-reduces the gradient between Gradients and Apply, and keeps its
// books with the same Bookkeeper on rank 0, so a cluster and a single process print
// and record the same things. `ringtrain eval` calls EvaluateCheckpoint.
//
// # Usage
//
//	spec := trainer.DefaultSpec()
//	spec.Data, spec.Out = "data/", "run/"
//	res, err := trainer.Run(ctx, spec, trainer.RunOptions{Logger: log, Progress: os.Stdout})
//
// One step, as the worker runs it:
//
//	lossSum, err := tr.Gradients(ctx, tr.Step, myStreams, onRangeFinal) // each scaled by 1/GlobalTargets
//	// ... all-reduce Model.Grads.Slab and lossSum across the ring ...
//	gradNorm, lr, err := tr.Apply() // clip + AdamW, identical on every rank
//
// # Why the loss is scaled by a global count
//
// Each micro-batch's backward is scaled by 1/(number of target tokens in the GLOBAL
// batch, GlobalTargets), which every rank computes from the data alone. Summing the
// micro-batches' gradients (in one process by accumulation, across workers by the
// all-reduce) then gives exactly the gradient of the global mean loss, so the
// trajectory does not depend on how the streams are spread over workers.
//
// # Objectives
//
// causal predicts every next token; masked predicts masked positions with
// bidirectional attention, its count drawn from the masking generator alone; sft
// (supervised fine-tuning on an SFT dataset, docs/sft.md) predicts the answer tokens
// its mask trains, its count summed from the row counts the dataset stores (the data
// source is a TargetCounter). All three share the streams, the ring, the recovery and
// the checkpoints; an SFT run also records its chat template in every checkpoint and
// reports token accuracy (EvaluateFull), and ExactMatch scores greedy answers.
//
// reward and dpo train on preference pairs (preference.go); ppo (ppo.go) samples
// answers to an SFT dataset's prompts, scores them with a frozen reward model and
// makes several PPO updates a step, the sums it needs inside a step going over the
// ring through a Reducer the worker gives it (docs/preferences.md).
package trainer
