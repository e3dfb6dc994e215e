//go:build cuda

package model

import (
	"sync"

	"github.com/ringtrain/ringtrain/tensor"
	"github.com/ringtrain/ringtrain/tensor/cuda"
)

// With the cuda tag the backend-parametrised tests (the golden ones among them) also
// run on GPU 0, opened once; they skip, saying why, on a machine without one.
func init() {
	var (
		once sync.Once
		be   tensor.Backend
		err  error
	)
	testBackends = append(testBackends, testBackend{"cuda", func() (tensor.Backend, error) {
		once.Do(func() { be, err = cuda.Open(0, cuda.Options{}) })
		return be, err
	}})
}
