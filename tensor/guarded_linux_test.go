//go:build linux

package tensor

import (
	"runtime/debug"
	"testing"
)

var guardSink float32

// TestGuardedFaultsOnHostAccess checks the guard itself: a guarded buffer cannot be
// read from host code outside a backend call, and its contents survive the round trip.
func TestGuardedFaultsOnHostAccess(t *testing.T) {
	g := NewGuarded()
	buf := g.Alloc(5)
	g.Upload(buf, []float32{1, 2, 3, 4, 5})
	g.Scale(buf, 2)
	out := make([]float32, 5)
	g.Download(out, buf)
	if out[4] != 10 {
		t.Fatalf("round trip gave %v", out)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	read := func() (faulted bool) {
		defer func() { faulted = recover() != nil }()
		guardSink = buf[0]
		return false
	}
	if !read() {
		t.Fatal("reading a guarded buffer outside a backend call did not fault")
	}
	if n := g.Live(); n != 1 {
		t.Fatalf("%d live buffers, want 1", n)
	}
	g.Free(buf)
	if n := g.Live(); n != 0 {
		t.Fatalf("%d live buffers after Free, want 0", n)
	}
}

// TestGuardedMatchesCPU checks that guarded ops give the CPU's bits.
func TestGuardedMatchesCPU(t *testing.T) {
	g, c := NewGuarded(), NewCPU()
	x := make([]float32, 1000)
	for i := range x {
		x[i] = float32(i%17) - 8.5
	}
	gx := g.Mirror(x)
	if got, want := g.SumSquares(gx, 64), c.SumSquares(x, 64); got != want {
		t.Fatalf("SumSquares %v, CPU %v", got, want)
	}
	gy, y := g.Alloc(len(x)), make([]float32, len(x))
	g.GeluForward(gy, gx)
	c.GeluForward(y, x)
	out := make([]float32, len(x))
	g.Download(out, gy)
	for i := range y {
		if out[i] != y[i] {
			t.Fatalf("gelu[%d] = %v, CPU %v", i, out[i], y[i])
		}
	}
}
