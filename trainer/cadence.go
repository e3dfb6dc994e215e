package trainer

// Cadence decides at which steps a run logs, evaluates and checkpoints. It is a pure
// function of the job, so the single-process trainer and every rank of a cluster take
// the same decisions at the same steps. A step is named by the number of steps applied
// when it is done: the first step is 1, the last Steps.
//
// The rules:
//
//   - Log: tokens/s goes into metrics.jsonl at every multiple of LogInterval and at
//     the last step.
//   - Evaluate: a run with a validation set evaluates at every multiple of
//     EvalInterval (none when it is 0) and at the last step; a run without one never.
//   - Checkpoint: a checkpoint is written (and a cluster compares its replicas) at
//     every multiple of CheckpointInterval (none when it is 0) before the last step.
//     The last step is checkpointed when the run ends, not here.
type Cadence struct {
	Steps              int64 // the run's last step
	LogInterval        int64 // at least 1 (Spec.Validate)
	EvalInterval       int64 // 0: evaluate at the last step only
	CheckpointInterval int64 // 0: checkpoint at the end only
	Val                bool  // the run has a validation set to evaluate
}

// NewCadence returns the cadence of spec; val says whether the run has a validation
// set (Prepared.Val is not nil).
func NewCadence(spec Spec, val bool) Cadence {
	return Cadence{Steps: spec.Steps, LogInterval: spec.LogInterval, EvalInterval: spec.EvalInterval,
		CheckpointInterval: spec.CheckpointInterval, Val: val}
}

// Cadence returns the cadence of the prepared job.
func (p *Prepared) Cadence() Cadence { return NewCadence(p.Spec, p.Val != nil) }

// Log reports whether step's metrics record carries tokens/s.
func (c Cadence) Log(step int64) bool { return step%c.LogInterval == 0 || step == c.Steps }

// Evaluate reports whether the run evaluates after step.
func (c Cadence) Evaluate(step int64) bool {
	return c.Val && ((c.EvalInterval > 0 && step%c.EvalInterval == 0) || step == c.Steps)
}

// Checkpoint reports whether step is an interval checkpoint.
func (c Cadence) Checkpoint(step int64) bool {
	return c.CheckpointInterval > 0 && step%c.CheckpointInterval == 0 && step < c.Steps
}
