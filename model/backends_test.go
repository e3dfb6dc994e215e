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
