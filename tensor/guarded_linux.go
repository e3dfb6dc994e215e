//go:build linux

package tensor

import (
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Guarded is a test Backend that catches host code touching backend memory, as a GPU's
// device memory would: it runs the CPU kernels, but over buffers mapped with mmap and
// kept PROT_NONE outside its own calls. Each call makes every live buffer readable and
// writable, runs the CPU op, and locks them again; a stray read or write of a buffer
// elsewhere faults (a panic under debug.SetPanicOnFault, a crash otherwise), naming
// the code that did it in its stack trace.
//
// Its buffers are not host-shared: Mirror allocates and uploads, Upload and Download
// copy. Its results are the CPU's, bit for bit. It is for tests: every call changes the
// protection of every buffer, two system calls each.
type Guarded struct {
	mu      sync.Mutex
	cpu     CPU
	regions map[uintptr][]byte // base address -> mapping
	page    int
}

// NewGuarded returns an empty guarded backend.
func NewGuarded() *Guarded {
	return &Guarded{regions: map[uintptr][]byte{}, page: os.Getpagesize()}
}

var _ Backend = (*Guarded)(nil)

// Live returns the number of buffers allocated and not yet freed.
func (g *Guarded) Live() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.regions)
}

// enter opens every buffer; the returned function locks them again and releases g.
func (g *Guarded) enter() func() {
	g.mu.Lock()
	g.protect(unix.PROT_READ | unix.PROT_WRITE)
	return func() {
		g.protect(unix.PROT_NONE)
		g.mu.Unlock()
	}
}

func (g *Guarded) protect(prot int) {
	for _, r := range g.regions {
		if err := unix.Mprotect(r, prot); err != nil {
			panic(fmt.Sprintf("tensor: guarded: mprotect: %v", err))
		}
	}
}

func (g *Guarded) mapBytes(n int) unsafe.Pointer {
	size := (n + g.page - 1) / g.page * g.page
	b, err := unix.Mmap(-1, 0, size, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		panic(fmt.Sprintf("tensor: guarded: mmap of %d bytes: %v", size, err))
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	g.mu.Lock()
	g.regions[uintptr(p)] = b
	g.mu.Unlock()
	return p
}

// Device names the guarded backend.
func (g *Guarded) Device() string { return "cpu-guarded" }

// Alloc maps a zeroed buffer of n float32s, unreadable until the next call.
func (g *Guarded) Alloc(n int) []float32 {
	if n == 0 {
		return []float32{}
	}
	return unsafe.Slice((*float32)(g.mapBytes(4*n)), n)
}

// AllocInt32 maps a zeroed buffer of n int32s.
func (g *Guarded) AllocInt32(n int) []int32 {
	if n == 0 {
		return []int32{}
	}
	return unsafe.Slice((*int32)(g.mapBytes(4*n)), n)
}

// Free unmaps a buffer of Alloc, AllocInt32 or Mirror; anything else is ignored.
func (g *Guarded) Free(buf any) {
	var p uintptr
	switch b := buf.(type) {
	case []float32:
		p = uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	case []int32:
		p = uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	default:
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if r, ok := g.regions[p]; ok {
		delete(g.regions, p)
		if err := unix.Munmap(r); err != nil {
			panic(fmt.Sprintf("tensor: guarded: munmap: %v", err))
		}
	}
}

// HostShared is false: the host may not touch guarded buffers.
func (g *Guarded) HostShared() bool { return false }

// Mirror allocates a buffer and uploads host into it.
func (g *Guarded) Mirror(host []float32) []float32 {
	b := g.Alloc(len(host))
	g.Upload(b, host)
	return b
}

// Zero clears buf.
func (g *Guarded) Zero(buf []float32) { defer g.enter()(); g.cpu.Zero(buf) }

// Upload copies host src into dst.
func (g *Guarded) Upload(dst, src []float32) {
	checkLen("upload", len(dst), len(src))
	defer g.enter()()
	copy(dst, src)
}

// UploadInt32 copies host src into dst.
func (g *Guarded) UploadInt32(dst, src []int32) {
	checkLen("upload", len(dst), len(src))
	defer g.enter()()
	copy(dst, src)
}

// Download copies src into host dst.
func (g *Guarded) Download(dst, src []float32) {
	checkLen("download", len(dst), len(src))
	defer g.enter()()
	copy(dst, src)
}

// Record returns a completed event: every call finishes before it returns.
func (g *Guarded) Record() Event { return hostEvent{} }

// Err is always nil.
func (g *Guarded) Err() error { return nil }

// EncoderForward is CPU.EncoderForward over guarded buffers.
func (g *Guarded) EncoderForward(out []float32, inp []int32, wte, wpe []float32, B, T, C int) {
	defer g.enter()()
	g.cpu.EncoderForward(out, inp, wte, wpe, B, T, C)
}

// EncoderBackward is CPU.EncoderBackward over guarded buffers.
func (g *Guarded) EncoderBackward(dwte, dwpe, dout []float32, inp []int32, B, T, C int) {
	defer g.enter()()
	g.cpu.EncoderBackward(dwte, dwpe, dout, inp, B, T, C)
}

// LayerNormForward is CPU.LayerNormForward over guarded buffers.
func (g *Guarded) LayerNormForward(out, mean, rstd, inp, w, b []float32, N, C int) {
	defer g.enter()()
	g.cpu.LayerNormForward(out, mean, rstd, inp, w, b, N, C)
}

// LayerNormBackward is CPU.LayerNormBackward over guarded buffers.
func (g *Guarded) LayerNormBackward(dinp, dw, db, dout, inp, w, mean, rstd []float32, N, C int) {
	defer g.enter()()
	g.cpu.LayerNormBackward(dinp, dw, db, dout, inp, w, mean, rstd, N, C)
}

// MatmulForward is CPU.MatmulForward over guarded buffers.
func (g *Guarded) MatmulForward(out, inp, w, bias []float32, N, C, OC int) {
	defer g.enter()()
	g.cpu.MatmulForward(out, inp, w, bias, N, C, OC)
}

// MatmulBackward is CPU.MatmulBackward over guarded buffers.
func (g *Guarded) MatmulBackward(dinp, dw, dbias, dout, inp, w []float32, N, C, OC int) {
	defer g.enter()()
	g.cpu.MatmulBackward(dinp, dw, dbias, dout, inp, w, N, C, OC)
}

// AttentionForward is CPU.AttentionForward over guarded buffers.
func (g *Guarded) AttentionForward(out, lse, qkv []float32, B, T, C, H int, causal bool) {
	defer g.enter()()
	g.cpu.AttentionForward(out, lse, qkv, B, T, C, H, causal)
}

// AttentionBackward is CPU.AttentionBackward over guarded buffers.
func (g *Guarded) AttentionBackward(dqkv, dout, qkv, out, lse []float32, B, T, C, H int, causal bool) {
	defer g.enter()()
	g.cpu.AttentionBackward(dqkv, dout, qkv, out, lse, B, T, C, H, causal)
}

// AttentionForwardRanges is CPU.AttentionForwardRanges over guarded buffers.
func (g *Guarded) AttentionForwardRanges(out, lse, qkv []float32, start []int32, B, T, C, H int) {
	defer g.enter()()
	g.cpu.AttentionForwardRanges(out, lse, qkv, start, B, T, C, H)
}

// AttentionBackwardRanges is CPU.AttentionBackwardRanges over guarded buffers.
func (g *Guarded) AttentionBackwardRanges(dqkv, dout, qkv, out, lse []float32, start []int32, B, T, C, H int) {
	defer g.enter()()
	g.cpu.AttentionBackwardRanges(dqkv, dout, qkv, out, lse, start, B, T, C, H)
}

// AttentionDecodeForward is CPU.AttentionDecodeForward over guarded buffers.
func (g *Guarded) AttentionDecodeForward(out, kcache, vcache, qkv []float32, T, pos0, C, H int) {
	defer g.enter()()
	g.cpu.AttentionDecodeForward(out, kcache, vcache, qkv, T, pos0, C, H)
}

// GeluForward is CPU.GeluForward over guarded buffers.
func (g *Guarded) GeluForward(out, inp []float32) { defer g.enter()(); g.cpu.GeluForward(out, inp) }

// GeluBackward is CPU.GeluBackward over guarded buffers.
func (g *Guarded) GeluBackward(dinp, inp, dout []float32) {
	defer g.enter()()
	g.cpu.GeluBackward(dinp, inp, dout)
}

// ResidualForward is CPU.ResidualForward over guarded buffers.
func (g *Guarded) ResidualForward(out, a, b []float32) {
	defer g.enter()()
	g.cpu.ResidualForward(out, a, b)
}

// Accumulate is CPU.Accumulate over guarded buffers.
func (g *Guarded) Accumulate(dst, src []float32) { defer g.enter()(); g.cpu.Accumulate(dst, src) }

// SoftmaxCrossEntropy is CPU.SoftmaxCrossEntropy over guarded buffers.
func (g *Guarded) SoftmaxCrossEntropy(losses, logits []float32, targets []int32, N, V int) float64 {
	defer g.enter()()
	return g.cpu.SoftmaxCrossEntropy(losses, logits, targets, N, V)
}

// CrossEntropyBackward is CPU.CrossEntropyBackward over guarded buffers.
func (g *Guarded) CrossEntropyBackward(probs []float32, targets []int32, scale float32, N, V int) {
	defer g.enter()()
	g.cpu.CrossEntropyBackward(probs, targets, scale, N, V)
}

// SumSquares is CPU.SumSquares over a guarded buffer.
func (g *Guarded) SumSquares(x []float32, chunk int) float64 {
	defer g.enter()()
	return g.cpu.SumSquares(x, chunk)
}

// Scale is CPU.Scale over a guarded buffer.
func (g *Guarded) Scale(x []float32, c float32) { defer g.enter()(); g.cpu.Scale(x, c) }

// AdamW is CPU.AdamW over guarded buffers.
func (g *Guarded) AdamW(p, gr, m, v []float32, b1, b2, eps, stepSize, invSqrtBC2, decayFactor float32) {
	defer g.enter()()
	g.cpu.AdamW(p, gr, m, v, b1, b2, eps, stepSize, invSqrtBC2, decayFactor)
}
