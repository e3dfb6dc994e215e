package metrics

import (
	"fmt"
	"time"
)

// Phases of a training step: the values of the phase label of
// ringtrain_step_phase_seconds.
const (
	PhaseCompute   = "compute"
	PhaseAllReduce = "allreduce"
	PhaseOptimizer = "optimizer"
	PhaseWaiting   = "waiting"
)

// StepTimes splits the wall time of one training step on one worker into phases
// that add up to it, plus the time the ring was busy, which overlaps them.
type StepTimes struct {
	// Compute is forward and backward over the worker's micro-batches, without
	// reading their data.
	Compute time.Duration
	// AllReduce is the time blocked on the step's reductions (gradient buckets and
	// loss) after backward ended: what overlapping them with backward did not hide.
	AllReduce time.Duration
	// Optimizer is gradient clipping and the AdamW update.
	Optimizer time.Duration
	// Waiting is everything else between the end of the step before and the end of
	// this one: reading the micro-batches, the state sync at a new generation,
	// progress output, metrics and checkpoint bookkeeping.
	Waiting time.Duration
	// RingBusy is how long the ring was reducing this step's buffers, from the
	// first bucket's start to the loss's end less the gaps in between. It overlaps
	// Compute (and AllReduce) and is not part of Total.
	RingBusy time.Duration
}

// Total is the step's wall time: the sum of its phases.
func (t StepTimes) Total() time.Duration { return t.Compute + t.AllReduce + t.Optimizer + t.Waiting }

type phase struct {
	name string
	d    time.Duration
}

func (t StepTimes) phases() []phase {
	return []phase{{PhaseCompute, t.Compute}, {PhaseAllReduce, t.AllReduce}, {PhaseOptimizer, t.Optimizer}, {PhaseWaiting, t.Waiting}}
}

// Split is the sum of the StepTimes of several steps. The zero value is empty and
// ready to use; it is not safe for concurrent use.
type Split struct {
	Steps int64
	Sum   StepTimes
}

// Add counts one step.
func (s *Split) Add(t StepTimes) {
	s.Steps++
	s.Sum.Compute += t.Compute
	s.Sum.AllReduce += t.AllReduce
	s.Sum.Optimizer += t.Optimizer
	s.Sum.Waiting += t.Waiting
	s.Sum.RingBusy += t.RingBusy
}

// Mean is the average step.
func (s Split) Mean() StepTimes {
	if s.Steps == 0 {
		return StepTimes{}
	}
	n := time.Duration(s.Steps)
	return StepTimes{Compute: s.Sum.Compute / n, AllReduce: s.Sum.AllReduce / n, Optimizer: s.Sum.Optimizer / n,
		Waiting: s.Sum.Waiting / n, RingBusy: s.Sum.RingBusy / n}
}

// String is the one-line summary printed at the end of a run, per step on average:
//
//	step time 24.1 ms over 600 steps: compute 18.2 ms (76%), all-reduce 1.1 ms (5%; ring busy 3.0 ms), optimizer 1.5 ms (6%), waiting 3.3 ms (14%)
func (s Split) String() string {
	if s.Steps == 0 {
		return "step time: no steps"
	}
	m := s.Mean()
	total := m.Total()
	pct := func(d time.Duration) float64 {
		if total <= 0 {
			return 0
		}
		return 100 * float64(d) / float64(total)
	}
	return fmt.Sprintf("step time %s over %d steps: compute %s (%.0f%%), all-reduce %s (%.0f%%; ring busy %s), optimizer %s (%.0f%%), waiting %s (%.0f%%)",
		ms(total), s.Steps, ms(m.Compute), pct(m.Compute), ms(m.AllReduce), pct(m.AllReduce), ms(m.RingBusy),
		ms(m.Optimizer), pct(m.Optimizer), ms(m.Waiting), pct(m.Waiting))
}

// ms formats d in milliseconds with a precision that suits it.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	default:
		return fmt.Sprintf("%.2f ms", v)
	}
}
