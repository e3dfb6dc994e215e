package trainer

import (
	"math"
	"testing"
)

func TestLearningRateWarmupAndCosine(t *testing.T) {
	const (
		lr, minLR     = 1e-3, 1e-4
		warmup, steps = int64(10), int64(91) // a decay of 80 steps
	)
	for step := int64(0); step < warmup; step++ {
		got := LearningRate(step, warmup, steps, lr, minLR)
		if want := lr * float64(step+1) / float64(warmup); got != want {
			t.Errorf("warmup step %d: lr %v, want %v", step, got, want)
		}
	}
	if got := LearningRate(warmup-1, warmup, steps, lr, minLR); got != lr {
		t.Errorf("last warmup step: lr %v, want the peak %v", got, lr)
	}
	if got := LearningRate(warmup, warmup, steps, lr, minLR); math.Abs(got-lr) > 1e-15 {
		t.Errorf("first step after warmup: lr %v, want the peak %v", got, lr)
	}
	if got := LearningRate(steps-1, warmup, steps, lr, minLR); got != minLR {
		t.Errorf("last step: lr %v, want exactly min_lr %v", got, minLR)
	}
	mid := warmup + (steps-1-warmup)/2
	if got, want := LearningRate(mid, warmup, steps, lr, minLR), (lr+minLR)/2; math.Abs(got-want) > 1e-6*lr {
		t.Errorf("half way through the decay (step %d): lr %v, want about %v", mid, got, want)
	}
	prev := math.Inf(1)
	for step := warmup - 1; step < steps+5; step++ {
		got := LearningRate(step, warmup, steps, lr, minLR)
		if got > prev {
			t.Errorf("step %d: lr %v rose from %v after warmup", step, got, prev)
		}
		if got < minLR || got > lr {
			t.Errorf("step %d: lr %v outside [min_lr, lr] = [%v, %v]", step, got, minLR, lr)
		}
		prev = got
	}
	if got := LearningRate(steps+5, warmup, steps, lr, minLR); got != minLR {
		t.Errorf("past the last step: lr %v, want min_lr %v", got, minLR)
	}
}

func TestLearningRateEdgeCases(t *testing.T) {
	const lr, minLR = 6e-4, 6e-5
	t.Run("no warmup", func(t *testing.T) {
		if got := LearningRate(0, 0, 50, lr, minLR); got != lr {
			t.Errorf("step 0: lr %v, want the peak %v", got, lr)
		}
		if got := LearningRate(49, 0, 50, lr, minLR); got != minLR {
			t.Errorf("step 49: lr %v, want min_lr %v", got, minLR)
		}
	})
	t.Run("one step", func(t *testing.T) {
		for _, warmup := range []int64{0, 1} {
			if got := LearningRate(0, warmup, 1, lr, minLR); got != lr {
				t.Errorf("warmup %d: lr %v, want the peak %v (no NaN from a zero-length decay)", warmup, got, lr)
			}
		}
	})
	t.Run("decay of one step", func(t *testing.T) {
		// warmup 3 of 5 steps: step 3 is the peak, step 4 the end of the decay.
		if got := LearningRate(3, 3, 5, lr, minLR); got != lr {
			t.Errorf("step 3: lr %v, want %v", got, lr)
		}
		if got := LearningRate(4, 3, 5, lr, minLR); got != minLR {
			t.Errorf("step 4: lr %v, want %v", got, minLR)
		}
	})
	t.Run("warmup longer than the run", func(t *testing.T) {
		for step := int64(0); step < 5; step++ {
			got := LearningRate(step, 10, 5, lr, minLR)
			if want := lr * float64(step+1) / 10; got != want {
				t.Errorf("step %d: lr %v, want %v", step, got, want)
			}
		}
	})
	t.Run("min_lr equals lr", func(t *testing.T) {
		for step := int64(0); step < 20; step++ {
			if got := LearningRate(step, 0, 20, lr, lr); got != lr {
				t.Errorf("step %d: lr %v, want constant %v", step, got, lr)
			}
		}
	})
}
