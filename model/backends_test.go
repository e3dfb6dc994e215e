package model

import (
	"testing"

	"github.com/ringtrain/ringtrain/tensor"
)

// testBackend is a backend the backend-parametrised tests run on.
type testBackend struct {
	name string
	open func() tensor.Backend
}

// testBackends are the backends onBackends runs a test on: the CPU here, and the
// guarded backend where the build has it (backends_linux_test.go).
var testBackends = []testBackend{{"cpu", func() tensor.Backend { return tensor.NewCPU() }}}

// onBackends runs f as a subtest on every test backend, each with a fresh backend.
func onBackends(t *testing.T, f func(t *testing.T, be tensor.Backend)) {
	t.Helper()
	for _, b := range testBackends {
		t.Run(b.name, func(t *testing.T) { f(t, b.open()) })
	}
}
