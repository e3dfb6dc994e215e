package trainer

import (
	"fmt"
	"math"
	"time"
)

// Cadence decides at which steps a run logs, evaluates and checkpoints, and (Stop)
// whether it stops before its last step. It is a pure function of the job, so the
// single-process trainer and every rank of a cluster take the same decisions at the
// same steps. A step is named by the number of steps applied
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
//   - Stop: see Stop.
type Cadence struct {
	Steps              int64 // the run's last step
	LogInterval        int64 // at least 1 (Spec.Validate)
	EvalInterval       int64 // 0: evaluate at the last step only
	CheckpointInterval int64 // 0: checkpoint at the end only
	Val                bool  // the run has a validation set to evaluate

	// The stopping rules; the zero value of each turns it off.
	MaxTime       time.Duration // stop once the run has trained this long
	TargetValLoss float64       // stop once the validation loss is at most this
	Patience      int           // stop after this many evaluations without a better validation loss
}

// NewCadence returns the cadence of spec; val says whether the run has a validation
// set (Prepared.Val is not nil).
func NewCadence(spec Spec, val bool) Cadence {
	return Cadence{Steps: spec.Steps, LogInterval: spec.LogInterval, EvalInterval: spec.EvalInterval,
		CheckpointInterval: spec.CheckpointInterval, Val: val,
		MaxTime: time.Duration(spec.MaxTime), TargetValLoss: spec.TargetValLoss, Patience: spec.Patience}
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

// StopReason names the rule that ends a run before its last step; "" when none does.
type StopReason string

// The stopping rules, as Stop names them (the job spec's keys).
const (
	StopTarget   StopReason = "target_val_loss" // the validation loss reached the target
	StopPatience StopReason = "patience"        // Patience evaluations without a better validation loss
	StopMaxTime  StopReason = "max_time"        // the run has trained for MaxTime
)

// Evals is what the stopping rules know of a run's evaluations. The zero value is a
// run that has not evaluated; Add books each evaluation in step order.
type Evals struct {
	N         int     // evaluations so far
	Last      float64 // the newest validation loss
	Best      float64 // the lowest validation loss (a NaN is never the best)
	BestStep  int64   // the step of Best; 0 while there is none
	SinceBest int     // evaluations since Best: 0 when the newest is the best
}

// Add returns e with the validation loss vl measured after step booked. A loss
// improves on the best only when it is strictly lower, so the best is the first
// evaluation that reached it.
func (e Evals) Add(step int64, vl float64) Evals {
	e.N++
	e.Last = vl
	if !math.IsNaN(vl) && (e.BestStep == 0 || vl < e.Best) {
		e.Best, e.BestStep, e.SinceBest = vl, step, 0
	} else {
		e.SinceBest++
	}
	return e
}

// Stop says whether a run stops after step, before its last step, when it has
// trained for elapsed and evaluated as e records. The rules, the first that holds
// named:
//
//   - none at or after the last step: the run ends there anyway;
//   - target_val_loss: TargetValLoss > 0 and the newest validation loss is at most
//     TargetValLoss;
//   - patience: Patience > 0 and the last Patience evaluations (or more) found no
//     validation loss lower than the best before them;
//   - max_time: MaxTime > 0 and elapsed >= MaxTime.
//
// The caller stops after step when Stop says so: the single-process trainer at
// once, a cluster at the same step on every rank (rank 0 decides and tells the others
// in the next step's loss all-reduce, which no rank then applies). The decision
// depends on elapsed only through MaxTime, so with it unset a run stops at the same
// step whenever it is run.
func (c Cadence) Stop(step int64, elapsed time.Duration, e Evals) StopReason {
	switch {
	case step >= c.Steps:
		return ""
	case c.TargetValLoss > 0 && e.N > 0 && e.Last <= c.TargetValLoss:
		return StopTarget
	case c.Patience > 0 && e.SinceBest >= c.Patience:
		return StopPatience
	case c.MaxTime > 0 && elapsed >= c.MaxTime:
		return StopMaxTime
	}
	return ""
}

// StopLine is the line printed when a run stops early after step for reason r,
// having evaluated as e records, its step padded like the progress lines:
//
//	step 300/2000  stopping: val loss 1.9432 reached target_val_loss 2.0000
func (c Cadence) StopLine(step int64, r StopReason, e Evals) string {
	var why string
	switch r {
	case StopTarget:
		why = fmt.Sprintf("val loss %.4f reached target_val_loss %.4f", e.Last, c.TargetValLoss)
	case StopPatience:
		why = fmt.Sprintf("val loss has not improved for %d evaluations (patience %d); best %.4f at step %d",
			e.SinceBest, c.Patience, e.Best, e.BestStep)
	case StopMaxTime:
		why = fmt.Sprintf("trained for max_time %s", c.MaxTime)
	default:
		why = string(r)
	}
	return fmt.Sprintf("step %*d/%d  stopping: %s", digits(c.Steps), step, c.Steps, why)
}
