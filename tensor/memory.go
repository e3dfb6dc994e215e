package tensor

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"unsafe"
)

// Sentinel errors of backend selection and device memory.
var (
	// ErrBackend reports a backend that cannot be used: an unknown name, one this
	// binary was built without, or a device that cannot be opened. The message says
	// which and why.
	ErrBackend = errors.New("tensor: backend unavailable")
	// ErrBadBackend reports a backend choice that can never work in this binary: an
	// unknown name, a backend the binary was built without, a negative device. It
	// comes wrapped together with ErrBackend.
	ErrBadBackend = errors.New("tensor: no such backend")
	// ErrDevice reports a failure of a device call (out of memory, a failed launch);
	// the message names the call.
	ErrDevice = errors.New("tensor: device error")
)

// Memory is the memory half of a Backend: buffer handles and the moves between host
// and backend memory.
//
// A buffer is a []float32 (or []int32) whose memory belongs to the backend: host memory
// on the CPU, memory no host code may touch elsewhere (device memory on a GPU, pages
// kept unreadable by the guarded test backend). The slice header is the handle: callers
// slice it to make views (the typed views of a parameter slab, a layer's share of an
// activation slab) and pass it to ops, but only the backend reads or writes its
// elements.
//
// Upload and Download are queued in order with the ops: the host side of an Upload may
// be reused, and the host side of a Download read, only after an Event recorded after
// them has been waited for. Errors of queued work are sticky: Err returns the first one,
// and Wait returns it too.
type Memory interface {
	// Device names what the backend runs on, as the worker reports it: "cpu",
	// "cuda:0 NVIDIA H200".
	Device() string
	// Alloc returns a zeroed buffer of n float32s; AllocInt32 of n int32s.
	Alloc(n int) []float32
	AllocInt32(n int) []int32
	// Free releases a buffer returned by Alloc, AllocInt32 or Mirror (a whole one, not
	// a view); it may be called from any goroutine. Freeing a Mirror that shares its
	// host slice does nothing.
	Free(buf any)
	// HostShared reports whether buffers are host memory the host may read and write:
	// then Mirror returns its argument and Upload and Download between a slice and
	// itself do nothing.
	HostShared() bool
	// Mirror returns a buffer with host's contents: host itself where HostShared, a new
	// buffer (uploaded) otherwise.
	Mirror(host []float32) []float32
	// Zero sets a buffer's elements to 0.
	Zero(buf []float32)
	// Upload copies host src into buffer dst (same length); UploadInt32 likewise.
	Upload(dst, src []float32)
	UploadInt32(dst, src []int32)
	// Download copies buffer src into host dst (same length).
	Download(dst, src []float32)
	// Record returns an event that completes when everything queued before it has.
	Record() Event
	// Err returns the first error of queued work (wrapping ErrDevice), or nil.
	Err() error
}

// Event marks a point in a backend's queue.
type Event interface {
	// Wait blocks until the work queued before the event has finished, and returns the
	// backend's first error, if any.
	Wait() error
}

// Sync waits for everything queued on be so far and returns its first error.
func Sync(be Backend) error { return be.Record().Wait() }

// HostBuffer returns a host slice to Download dev into: dev itself when the backend's
// buffers are host memory (the Download is then a no-op), a new slice otherwise.
func HostBuffer(be Backend, dev []float32) []float32 {
	if be.HostShared() {
		return dev
	}
	return make([]float32, len(dev))
}

// HostBufferInt32 is HostBuffer for int32 buffers.
func HostBufferInt32(be Backend, dev []int32) []int32 {
	if be.HostShared() {
		return dev
	}
	return make([]int32, len(dev))
}

// SameMemory reports whether a and b are the same range of memory.
func SameMemory[T any](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || unsafe.SliceData(a) == unsafe.SliceData(b))
}

func checkLen(op string, dst, src int) {
	if dst != src {
		panic(fmt.Sprintf("tensor: %s of %d elements into %d", op, src, dst))
	}
}

// hostEvent is the event of a backend that runs synchronously.
type hostEvent struct{}

func (hostEvent) Wait() error { return nil }

// Device names the CPU backend.
func (CPU) Device() string { return "cpu" }

// Alloc returns make([]float32, n).
func (CPU) Alloc(n int) []float32 { return make([]float32, n) }

// AllocInt32 returns make([]int32, n).
func (CPU) AllocInt32(n int) []int32 { return make([]int32, n) }

// Free does nothing: the garbage collector frees host buffers.
func (CPU) Free(any) {}

// HostShared is true: CPU buffers are host memory.
func (CPU) HostShared() bool { return true }

// Mirror returns host itself.
func (CPU) Mirror(host []float32) []float32 { return host }

// Zero clears buf.
func (CPU) Zero(buf []float32) { clear(buf) }

// Upload copies src into dst unless they are the same memory.
func (CPU) Upload(dst, src []float32) {
	checkLen("upload", len(dst), len(src))
	if !SameMemory(dst, src) {
		copy(dst, src)
	}
}

// UploadInt32 copies src into dst unless they are the same memory.
func (CPU) UploadInt32(dst, src []int32) {
	checkLen("upload", len(dst), len(src))
	if !SameMemory(dst, src) {
		copy(dst, src)
	}
}

// Download copies src into dst unless they are the same memory.
func (CPU) Download(dst, src []float32) {
	checkLen("download", len(dst), len(src))
	if !SameMemory(dst, src) {
		copy(dst, src)
	}
}

// Record returns an event that has already completed: the CPU runs every op before
// returning from it.
func (CPU) Record() Event { return hostEvent{} }

// Err is always nil on the CPU.
func (CPU) Err() error { return nil }

// SumSquares is the function SumSquares.
func (CPU) SumSquares(x []float32, chunk int) float64 { return SumSquares(x, chunk) }

// Scale is the function Scale.
func (CPU) Scale(x []float32, c float32) { Scale(x, c) }

// AdamW is the function AdamW.
func (CPU) AdamW(p, g, m, v []float32, b1, b2, eps, stepSize, invSqrtBC2, decayFactor float32) {
	AdamW(p, g, m, v, b1, b2, eps, stepSize, invSqrtBC2, decayFactor)
}

// Opener opens a backend on device gpu (ignored by backends without devices).
type Opener func(gpu int) (Backend, error)

var (
	registryMu sync.Mutex
	registry   = map[string]Opener{
		"cpu": func(int) (Backend, error) { return NewCPU(), nil },
	}
	// builtWithout names backends this binary lacks, with how to get them.
	builtWithout = map[string]string{
		"cuda": "this binary was built without CUDA support: build the GPU binary with `go build -tags cuda` (see docs/gpu.md)",
	}
)

// Register makes a backend available to Open under name; packages built behind a tag
// (tensor/cuda) call it from init.
func Register(name string, open Opener) {
	registryMu.Lock()
	defer registryMu.Unlock()
	registry[name] = open
	delete(builtWithout, name)
}

// Backends lists the names Open accepts in this binary, sorted.
func Backends() []string {
	registryMu.Lock()
	defer registryMu.Unlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Open returns the backend called name ("cpu", "cuda") on device gpu. An unknown name,
// a backend this binary was built without, or a negative gpu is an error wrapping
// ErrBackend and ErrBadBackend; a device that fails to open wraps ErrBackend.
func Open(name string, gpu int) (Backend, error) {
	if gpu < 0 {
		return nil, fmt.Errorf("%w: %w: --gpu %d must be >= 0", ErrBackend, ErrBadBackend, gpu)
	}
	registryMu.Lock()
	open, ok := registry[name]
	why, without := builtWithout[name]
	registryMu.Unlock()
	switch {
	case ok:
		be, err := open(gpu)
		if err != nil {
			if errors.Is(err, ErrBackend) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %s: %w", ErrBackend, name, err)
		}
		return be, nil
	case without:
		return nil, fmt.Errorf("%w: %w: %s: %s", ErrBackend, ErrBadBackend, name, why)
	default:
		return nil, fmt.Errorf("%w: %w: unknown backend %q (this binary has %s)", ErrBackend, ErrBadBackend, name, strings.Join(Backends(), ", "))
	}
}
