package trainer

import (
	"fmt"
	"testing"
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
