//go:build !cuda

package tensor

import (
	"errors"
	"strings"
	"testing"
)

// TestOpenCUDAWithoutTag checks the default build's answer to --backend cuda.
func TestOpenCUDAWithoutTag(t *testing.T) {
	_, err := Open("cuda", 0)
	if !errors.Is(err, ErrBadBackend) || !strings.Contains(err.Error(), "-tags cuda") {
		t.Fatalf("Open(cuda) = %v, want ErrBackend saying how to build with CUDA", err)
	}
}
