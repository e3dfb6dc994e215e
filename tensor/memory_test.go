package tensor

import (
	"errors"
	"strings"
	"testing"
)

// TestCPUMemorySharesHost checks that the CPU backend's memory ops copy nothing: a
// Mirror is the host slice itself, and moves between a slice and itself are no-ops
// while moves between different slices copy.
func TestCPUMemorySharesHost(t *testing.T) {
	be := NewCPU()
	host := []float32{1, 2, 3}
	if !be.HostShared() || !SameMemory(be.Mirror(host), host) {
		t.Fatal("CPU Mirror is not the host slice")
	}
	if dev := be.Alloc(3); !SameMemory(HostBuffer(be, dev), dev) {
		t.Fatal("CPU HostBuffer is not the buffer")
	}
	be.Upload(host, host)
	be.Download(host, host)
	if host[0] != 1 || host[2] != 3 {
		t.Fatalf("self upload changed %v", host)
	}
	dev := be.Alloc(3)
	be.Upload(dev, host)
	back := make([]float32, 3)
	be.Download(back, dev)
	if back[1] != 2 {
		t.Fatalf("round trip gave %v", back)
	}
	be.Zero(dev)
	if dev[1] != 0 {
		t.Fatalf("Zero left %v", dev)
	}
	if err := Sync(be); err != nil {
		t.Fatal(err)
	}
	if SameMemory(host[:2], host) || !SameMemory(host[:0], []float32{}) {
		t.Fatal("SameMemory compares lengths and addresses")
	}
}

func TestOpen(t *testing.T) {
	be, err := Open("cpu", 0)
	if err != nil || be.Device() != "cpu" {
		t.Fatalf("Open(cpu) = %v, %v", be, err)
	}
	for _, tc := range []struct {
		name string
		gpu  int
		want string
	}{
		{"tpu", 0, `unknown backend "tpu"`},
		{"cpu", -1, "--gpu -1"},
	} {
		_, err := Open(tc.name, tc.gpu)
		if !errors.Is(err, ErrBackend) || !errors.Is(err, ErrBadBackend) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q, %d) = %v, want ErrBackend naming %q", tc.name, tc.gpu, err, tc.want)
		}
	}
}
