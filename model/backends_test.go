package model

import (
	"testing"

	"github.com/ringtrain/ringtrain/tensor"
)

// testBackend is a backend the backend-parametrised tests run on; open fails where the
// machine lacks it (no GPU), and the subtest skips saying why.
type testBackend struct {
	name string
	open func() (tensor.Backend, error)
}

// testBackends are the backends onBackends runs a test on: the CPU here, and the
// guarded backend where the build has it (backends_linux_test.go), and the cuda
// backend in a build with the cuda tag (backends_cuda_test.go).
var testBackends = []testBackend{{"cpu", func() (tensor.Backend, error) { return tensor.NewCPU(), nil }}}

// onBackends runs f as a subtest on every test backend, each with a fresh backend.
func onBackends(t *testing.T, f func(t *testing.T, be tensor.Backend)) {
	t.Helper()
	for _, b := range testBackends {
		t.Run(b.name, func(t *testing.T) {
			be, err := b.open()
			if err != nil {
				t.Skipf("backend %s unavailable: %v", b.name, err)
			}
			f(t, be)
		})
	}
}

// TestCPUModelCopiesNothing checks that on the CPU the backend's weights and gradients
// are Params.Slab and Grads.Slab themselves, and that the logits and losses handed out
// are the activation buffers: a model on the CPU copies nothing it did not copy before
// the op set became device-aware.
func TestCPUModelCopiesNothing(t *testing.T) {
	m := loadGoldenModel(t)
	if !tensor.SameMemory(m.dev.Slab, m.Params.Slab) || !tensor.SameMemory(m.dgrads.Slab, m.Grads.Slab) {
		t.Fatal("the CPU model's weights or gradients are copies of the host slabs")
	}
	in := make([]int32, 2*4)
	if _, _, err := m.Forward(in, in, 2, 4, true); err != nil {
		t.Fatal(err)
	}
	if !tensor.SameMemory(m.Logits(), m.acts.logits) || !tensor.SameMemory(m.Losses(), m.acts.losses) {
		t.Fatal("the CPU model copies its logits or losses to hand them out")
	}
}
