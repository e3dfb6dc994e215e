package trainer

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// TestCadence checks the steps at which a run logs, evaluates and checkpoints.
func TestCadence(t *testing.T) {
	for _, tc := range []struct {
		name                      string
		c                         Cadence
		log, evaluate, checkpoint string // the steps 1..c.Steps where each holds
	}{
		{name: "every step", c: Cadence{Steps: 4, LogInterval: 1, EvalInterval: 1, CheckpointInterval: 1, Val: true},
			log: "[1 2 3 4]", evaluate: "[1 2 3 4]", checkpoint: "[1 2 3]"},
		{name: "intervals dividing the run", c: Cadence{Steps: 12, LogInterval: 3, EvalInterval: 4, CheckpointInterval: 6, Val: true},
			log: "[3 6 9 12]", evaluate: "[4 8 12]", checkpoint: "[6]"},
		{name: "intervals not dividing the run", c: Cadence{Steps: 10, LogInterval: 4, EvalInterval: 3, CheckpointInterval: 4, Val: true},
			log: "[4 8 10]", evaluate: "[3 6 9 10]", checkpoint: "[4 8]"},
		{name: "zero intervals", c: Cadence{Steps: 5, LogInterval: 10, Val: true},
			log: "[5]", evaluate: "[5]", checkpoint: "[]"},
		{name: "no validation set", c: Cadence{Steps: 6, LogInterval: 2, EvalInterval: 2, CheckpointInterval: 2},
			log: "[2 4 6]", evaluate: "[]", checkpoint: "[2 4]"},
		{name: "intervals beyond the run", c: Cadence{Steps: 3, LogInterval: 5, EvalInterval: 5, CheckpointInterval: 5, Val: true},
			log: "[3]", evaluate: "[3]", checkpoint: "[]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps := func(rule func(int64) bool) string {
				var out []int64
				for s := int64(1); s <= tc.c.Steps; s++ {
					if rule(s) {
						out = append(out, s)
					}
				}
				return fmt.Sprint(out)
			}
			if got := steps(tc.c.Log); got != tc.log {
				t.Errorf("log steps %s, want %s", got, tc.log)
			}
			if got := steps(tc.c.Evaluate); got != tc.evaluate {
				t.Errorf("evaluation steps %s, want %s", got, tc.evaluate)
			}
			if got := steps(tc.c.Checkpoint); got != tc.checkpoint {
				t.Errorf("checkpoint steps %s, want %s", got, tc.checkpoint)
			}
		})
	}
}

// TestNewCadence checks that a cadence takes the job's intervals.
func TestNewCadence(t *testing.T) {
	spec := DefaultSpec()
	spec.Steps, spec.LogInterval, spec.EvalInterval, spec.CheckpointInterval = 600, 10, 250, 100
	want := Cadence{Steps: 600, LogInterval: 10, EvalInterval: 250, CheckpointInterval: 100, Val: true}
	if got := NewCadence(spec, true); got != want {
		t.Errorf("NewCadence: %+v, want %+v", got, want)
	}
}

// TestEvalsAdd checks the bookkeeping of evaluations: the best is the first to reach
// the lowest loss, and a NaN never is.
func TestEvalsAdd(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		name   string
		losses []float64 // evaluated at steps 10, 20, ...
		best   float64
		at     int64
		since  int
	}{
		{name: "none", since: 0},
		{name: "improving", losses: []float64{3, 2.5, 2}, best: 2, at: 30, since: 0},
		{name: "worse after the best", losses: []float64{3, 2, 2.5, 2.1}, best: 2, at: 20, since: 2},
		{name: "an equal loss is no improvement", losses: []float64{3, 2, 2}, best: 2, at: 20, since: 1},
		{name: "NaN first", losses: []float64{nan, 3}, best: 3, at: 20, since: 0},
		{name: "NaN after the best", losses: []float64{3, nan, nan}, best: 3, at: 10, since: 2},
		{name: "only NaN", losses: []float64{nan, nan}, at: 0, since: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e Evals
			for i, l := range tc.losses {
				e = e.Add(int64(10*(i+1)), l)
			}
			if e.N != len(tc.losses) || e.BestStep != tc.at || e.SinceBest != tc.since || (tc.at > 0 && e.Best != tc.best) {
				t.Errorf("after %v: %+v; want best %v at step %d, %d since", tc.losses, e, tc.best, tc.at, tc.since)
			}
			if n := len(tc.losses); n > 0 && math.Float64bits(e.Last) != math.Float64bits(tc.losses[n-1]) {
				t.Errorf("last %v, want %v", e.Last, tc.losses[n-1])
			}
		})
	}
}

// TestCadenceStop checks the stopping rules: which holds after a step, in order,
// never at the last step, each off at its zero value.
func TestCadenceStop(t *testing.T) {
	evals := func(losses ...float64) Evals {
		var e Evals
		for i, l := range losses {
			e = e.Add(int64(i+1), l)
		}
		return e
	}
	c := Cadence{Steps: 100, LogInterval: 1, EvalInterval: 1, Val: true}
	with := func(edit func(*Cadence)) Cadence { cc := c; edit(&cc); return cc }
	target := with(func(c *Cadence) { c.TargetValLoss = 2 })
	patience := with(func(c *Cadence) { c.Patience = 2 })
	maxTime := with(func(c *Cadence) { c.MaxTime = time.Minute })
	all := with(func(c *Cadence) { c.TargetValLoss, c.Patience, c.MaxTime = 2, 2, time.Minute })
	for _, tc := range []struct {
		name    string
		c       Cadence
		step    int64
		elapsed time.Duration
		e       Evals
		want    StopReason
	}{
		{"no rules", c, 50, time.Hour, evals(3, 4, 5, 6), ""},
		{"target not reached", target, 50, 0, evals(3, 2.5, 2.01), ""},
		{"target reached exactly", target, 50, 0, evals(3, 2), StopTarget},
		{"target passed", target, 50, 0, evals(3, 1.5), StopTarget},
		{"target reached, then lost", target, 50, 0, evals(1.5, 2.5), ""},
		{"target without evaluations", target, 50, 0, Evals{}, ""},
		{"target and a NaN", target, 50, 0, evals(math.NaN()), ""},
		{"patience: improving", patience, 50, 0, evals(3, 2.9, 2.8, 2.7), ""},
		{"patience: one bad evaluation", patience, 50, 0, evals(3, 2.9, 3), ""},
		{"patience: two bad evaluations", patience, 50, 0, evals(3, 2.9, 3, 2.95), StopPatience},
		{"patience: equal is not better", patience, 50, 0, evals(3, 2.9, 2.9, 2.9), StopPatience},
		{"patience: NaN is not better", patience, 50, 0, evals(3, math.NaN(), math.NaN()), StopPatience},
		{"max time not reached", maxTime, 50, time.Minute - 1, Evals{}, ""},
		{"max time reached", maxTime, 50, time.Minute, Evals{}, StopMaxTime},
		{"never at the last step", all, 100, time.Hour, evals(1), ""},
		{"never after the last step", all, 101, time.Hour, evals(1), ""},
		{"target before max time", all, 50, time.Hour, evals(1), StopTarget},
		{"patience before max time", all, 50, time.Hour, evals(3, 4, 5), StopPatience},
		{"max time with no other rule holding", all, 50, time.Hour, evals(3, 2.5), StopMaxTime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.Stop(tc.step, tc.elapsed, tc.e); got != tc.want {
				t.Errorf("Stop(step %d, %s, %+v) = %q, want %q", tc.step, tc.elapsed, tc.e, got, tc.want)
			}
		})
	}
}

// TestStopLine checks the line printed when a run stops early.
func TestStopLine(t *testing.T) {
	c := Cadence{Steps: 2000, TargetValLoss: 2, Patience: 3, MaxTime: 90 * time.Minute}
	var reached, stalled Evals
	for i, l := range []float64{2.5, 1.9432} {
		reached = reached.Add(int64(250*(i+1)), l)
	}
	for i, l := range []float64{2.5, 2.0432, 2.1, 2.2, 2.3} {
		stalled = stalled.Add(int64(250*(i+1)), l)
	}
	for _, tc := range []struct {
		r    StopReason
		e    Evals
		want string
	}{
		{StopTarget, reached, "step  500/2000  stopping: val loss 1.9432 reached target_val_loss 2.0000"},
		{StopPatience, stalled, "step  500/2000  stopping: val loss has not improved for 3 evaluations (patience 3); best 2.0432 at step 500"},
		{StopMaxTime, Evals{}, "step  500/2000  stopping: trained for max_time 1h30m0s"},
	} {
		if got := c.StopLine(500, tc.r, tc.e); got != tc.want {
			t.Errorf("StopLine(%s) = %q, want %q", tc.r, got, tc.want)
		}
	}
}

// TestNewCadenceStoppingRules checks that a cadence takes the job's stopping rules.
func TestNewCadenceStoppingRules(t *testing.T) {
	spec := DefaultSpec()
	spec.MaxTime, spec.TargetValLoss, spec.Patience = Duration(time.Hour), 1.5, 4
	c := NewCadence(spec, true)
	if c.MaxTime != time.Hour || c.TargetValLoss != 1.5 || c.Patience != 4 {
		t.Errorf("NewCadence: %+v, want max time 1h, target 1.5, patience 4", c)
	}
}
