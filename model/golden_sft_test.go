package model

import (
	"testing"

	"github.com/ringtrain/ringtrain/tensor"
)

// TestGoldenSFT checks the masked SFT loss and every gradient against
// scripts/golden/gen_sft_golden.py: three example rows whose untrained targets
// (prompts, padding) are -1, computed as two micro-batches (rows 0-1, then row 2, as
// two streams would) whose backward passes are each scaled by 1/(trained targets of the
// whole batch), so the summed gradient is that of the global masked mean.
func TestGoldenSFT(t *testing.T) { onBackends(t, goldenSFT) }

func goldenSFT(t *testing.T, be tensor.Backend) {
	f := openGolden(t, "sft.safetensors")
	m := loadGoldenModelOn(t, be)
	inputs, targets, mask := goldenI32(t, f, "inputs"), goldenI32(t, f, "targets"), goldenI32(t, f, "mask")
	const rows = 3
	T := len(inputs) / rows
	masked := make([]int32, len(targets))
	global := 0
	for i, tg := range targets {
		masked[i] = -1
		if mask[i] == 1 {
			masked[i] = tg
			global++
		}
	}
	if global != 10 {
		t.Fatalf("%d trained targets, want 10", global)
	}
	m.ZeroGrad()
	var sum float64
	for _, mb := range []struct{ lo, hi int }{{0, 2}, {2, 3}} {
		s, n, err := m.Forward(inputs[mb.lo*T:mb.hi*T], masked[mb.lo*T:mb.hi*T], mb.hi-mb.lo, T, true)
		if err != nil {
			t.Fatal(err)
		}
		if n >= global {
			t.Fatalf("micro-batch rows %d-%d counts %d targets of %d: not a part", mb.lo, mb.hi, n, global)
		}
		sum += s
		if err := m.Backward(float32(1/float64(global)), nil); err != nil {
			t.Fatal(err)
		}
	}
	compare(t, "loss", []float32{float32(sum / float64(global))}, goldenF32(t, f, "loss"), 1e-6, 1e-6)
	compareGrads(t, m, goldenSlab(t, f, m.Config, "grad."))
}

// TestGoldenSFTPacked checks ForwardPacked against the packed case of
// scripts/golden/gen_sft_golden.py: two rows holding two and three examples (the last
// one padding), positions restarting per example and attention block-diagonal causal,
// computed one micro-batch per row, each backward scaled by 1/(trained targets of both
// rows); the loss and every gradient are compared. The script checks in float64 that
// the loss equals that of the same examples each alone in a padded row.
func TestGoldenSFTPacked(t *testing.T) { onBackends(t, goldenSFTPacked) }

func goldenSFTPacked(t *testing.T, be tensor.Backend) {
	f := openGolden(t, "sft_packed.safetensors")
	m := loadGoldenModelOn(t, be)
	inputs, targets, mask := goldenI32(t, f, "inputs"), goldenI32(t, f, "targets"), goldenI32(t, f, "mask")
	start := goldenI32(t, f, "start")
	const rows = 2
	T := len(inputs) / rows
	masked := make([]int32, len(targets))
	global, examples := 0, 0
	for i, tg := range targets {
		masked[i] = -1
		if mask[i] == 1 {
			masked[i] = tg
			global++
		}
		if int(start[i]) == i%T {
			examples++
		}
	}
	if examples != 5 {
		t.Fatalf("%d examples in the packed rows, want 5", examples)
	}
	m.ZeroGrad()
	var sum float64
	for r := range rows {
		s, n, err := m.ForwardPacked(inputs[r*T:(r+1)*T], masked[r*T:(r+1)*T], start[r*T:(r+1)*T], 1, T)
		if err != nil {
			t.Fatal(err)
		}
		if n >= global {
			t.Fatalf("row %d counts %d targets of %d: not a part", r, n, global)
		}
		sum += s
		if err := m.Backward(float32(1/float64(global)), nil); err != nil {
			t.Fatal(err)
		}
	}
	compare(t, "loss", []float32{float32(sum / float64(global))}, goldenF32(t, f, "loss"), 1e-6, 1e-6)
	compareGrads(t, m, goldenSlab(t, f, m.Config, "grad."))
}
