package main

import (
	"errors"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/ringtrain/ringtrain/tensor"
)

// backendFlags are --backend and --gpu: what a command's model computes on. The
// default build has the cpu backend only; `go build -tags cuda` adds cuda (see
// docs/gpu.md). RINGTRAIN_BACKEND and RINGTRAIN_GPU set them too.
type backendFlags struct {
	name string
	gpu  int
}

func (b *backendFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&b.name, "backend", "cpu", "compute backend: cpu, or cuda in a binary built with -tags cuda")
	fl.IntVar(&b.gpu, "gpu", 0, "GPU ordinal the cuda backend runs on")
}

// open opens the chosen backend. An unknown backend, one this binary lacks, or a
// negative --gpu is a usage error; a device that fails to open is an error that says
// why (a missing driver lists where it looked).
func (b *backendFlags) open() (tensor.Backend, error) {
	be, err := tensor.Open(b.name, b.gpu)
	if err != nil {
		if errors.Is(err, tensor.ErrBadBackend) {
			return nil, usageError(fmt.Errorf("--backend %s --gpu %d: %w", b.name, b.gpu, err))
		}
		return nil, fmt.Errorf("--backend %s --gpu %d: %w", b.name, b.gpu, err)
	}
	return be, nil
}
