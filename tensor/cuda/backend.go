//go:build cuda

package cuda

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/ringtrain/ringtrain/tensor"
)

func init() {
	tensor.Register("cuda", func(gpu int) (tensor.Backend, error) {
		return Open(gpu, Options{TF32: os.Getenv("RINGTRAIN_CUDA_TF32") == "1", Profile: os.Getenv("RINGTRAIN_CUDA_PROFILE") == "1"})
	})
}

// Options configure Open.
type Options struct {
	// TF32 lets cuBLAS use TF32 tensor cores for matrix products (about 10 bits of
	// mantissa in the products); the default is strict fp32. RINGTRAIN_CUDA_TF32=1
	// sets it for --backend cuda.
	TF32 bool
	// Profile times every kernel, matrix product and transfer (tensor.Profiler), each
	// waited for; RINGTRAIN_CUDA_PROFILE=1 sets it for --backend cuda.
	Profile bool
}

// cuBLAS constants (cublas_api.h).
const (
	cublasOpN          = 0
	cublasOpT          = 1
	cublasDefaultMath  = 0
	cublasTF32TensorOp = 3
)

// poison is the address of the buffers handed out after the backend has failed: never
// read (every op is skipped once Err is set), and unmapped, so a stray host access
// faults at once.
const poison = 0x1000

// Backend is tensor.Backend on one CUDA device. Buffers are device memory; every driver
// call runs on the executor's locked thread; ops are queued on one stream in order.
// The first failure is kept (Err) and every later op is skipped.
type Backend struct {
	d       *driver
	ex      *executor
	libs    *Libraries
	name    string
	stream  uintptr
	blas    uintptr
	fns     map[string]uintptr
	tf32    bool
	mu      sync.Mutex
	err     error
	allocs  map[uintptr]bool           // base addresses of live device buffers
	mirrors map[uintptr]unsafe.Pointer // device buffer of Mirror -> the host memory it registered
	scratch []float32                  // device scratch of attention backward
	cols    []float32                  // device scratch of the column sums' first stage
	partial []float32                  // device scratch of the float64 partial sums (2 floats each)
	prof    map[string]*tensor.OpTime  // with Options.Profile: the time of each op; nil without
}

var (
	_ tensor.Backend  = (*Backend)(nil)
	_ tensor.Profiler = (*Backend)(nil)
)

// Open loads the CUDA libraries, creates a context on device gpu, a stream and a cuBLAS
// handle, and loads the kernels. A missing library lists where it looked; a machine
// without a usable GPU is an error wrapping tensor.ErrBackend with the driver's code.
func Open(gpu int, o Options) (*Backend, error) {
	libs, err := Discover()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", tensor.ErrBackend, err)
	}
	d, err := loadDriver(libs.Driver, libs.Cublas)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", tensor.ErrBackend, err)
	}
	b := &Backend{d: d, ex: newExecutor(), libs: libs, tf32: o.TF32, allocs: map[uintptr]bool{}, mirrors: map[uintptr]unsafe.Pointer{}}
	if o.Profile {
		b.prof = map[string]*tensor.OpTime{}
	}
	b.ex.Do(func() { err = b.init(gpu) })
	if err != nil {
		b.ex.Close()
		return nil, fmt.Errorf("cuda: device %d: %w", gpu, err)
	}
	return b, nil
}

// init runs on the executor's thread.
func (b *Backend) init(gpu int) error {
	d := b.d
	if err := d.check("cuInit", d.cuInit(0)); err != nil {
		return err
	}
	var n int32
	if err := d.check("cuDeviceGetCount", d.cuDeviceGetCount(&n)); err != nil {
		return err
	}
	if gpu >= int(n) {
		return fmt.Errorf("%w: --gpu %d but the driver sees %d device(s)", tensor.ErrBackend, gpu, n)
	}
	var dev int32
	if err := d.check("cuDeviceGet", d.cuDeviceGet(&dev, int32(gpu))); err != nil {
		return err
	}
	name := make([]byte, 256)
	if err := d.check("cuDeviceGetName", d.cuDeviceGetName(&name[0], int32(len(name)), dev)); err != nil {
		return err
	}
	b.name = fmt.Sprintf("cuda:%d %s", gpu, strings.TrimRight(string(name), "\x00"))
	var ctx uintptr
	if err := d.check("cuDevicePrimaryCtxRetain", d.cuDevicePrimaryCtxRetain(&ctx, dev)); err != nil {
		return err
	}
	if err := d.check("cuCtxSetCurrent", d.cuCtxSetCurrent(ctx)); err != nil {
		return err
	}
	if err := d.check("cuStreamCreate", d.cuStreamCreate(&b.stream, 1)); err != nil { // CU_STREAM_NON_BLOCKING
		return err
	}
	if err := checkBLAS("cublasCreate", d.cublasCreate(&b.blas)); err != nil {
		return err
	}
	if err := checkBLAS("cublasSetStream", d.cublasSetStream(b.blas, b.stream)); err != nil {
		return err
	}
	mode := int32(cublasDefaultMath)
	if b.tf32 {
		mode = cublasTF32TensorOp
	}
	if err := checkBLAS("cublasSetMathMode", d.cublasSetMathMode(b.blas, mode)); err != nil {
		return err
	}
	fns, err := loadModule(d, opsPTX)
	if err != nil {
		return err
	}
	b.fns = fns
	return nil
}

// timed runs f, a driver call that queues op on the stream, on the executor's thread.
// Profiling, it waits for the stream before and after f and adds the time between to
// op's; f returns the call's error.
func (b *Backend) timed(op string, f func() error) {
	b.ex.Do(func() {
		if b.prof == nil {
			b.setErr(f())
			return
		}
		b.setErr(b.d.check("cuStreamSynchronize", b.d.cuStreamSynchronize(b.stream)))
		start := time.Now()
		b.setErr(f())
		b.setErr(b.d.check("cuStreamSynchronize", b.d.cuStreamSynchronize(b.stream)))
		b.mu.Lock()
		t := b.prof[op]
		if t == nil {
			t = &tensor.OpTime{Op: op}
			b.prof[op] = t
		}
		t.Calls++
		t.Total += time.Since(start)
		b.mu.Unlock()
	})
}

// Profiling reports whether the backend times its ops (Options.Profile).
func (b *Backend) Profiling() bool { return b.prof != nil }

// ResetProfile forgets the times so far.
func (b *Backend) ResetProfile() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.prof != nil {
		clear(b.prof)
	}
}

// Profile returns the time of each op since the last reset, the longest first; nil
// unless profiling.
func (b *Backend) Profile() []tensor.OpTime {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []tensor.OpTime
	for _, t := range b.prof {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Total > out[j].Total })
	return out
}

// KernelResources is what the driver compiled one kernel to.
type KernelResources struct {
	Name               string
	Registers          int // per thread
	LocalBytes         int // per thread: local arrays and spilled registers
	MaxThreadsPerBlock int // the largest block it can be launched with
	StaticSharedBytes  int
}

// Kernels reports the resources of every kernel, in the order of their names.
func (b *Backend) Kernels() ([]KernelResources, error) {
	var out []KernelResources
	var err error
	b.ex.Do(func() {
		for _, name := range kernelNames {
			k := KernelResources{Name: name}
			for _, a := range []struct {
				attr int32 // CUfunction_attribute
				dst  *int
			}{{0, &k.MaxThreadsPerBlock}, {1, &k.StaticSharedBytes}, {3, &k.LocalBytes}, {4, &k.Registers}} {
				var v int32
				if err = b.d.check("cuFuncGetAttribute "+name, b.d.cuFuncGetAttribute(&v, a.attr, b.fns[name])); err != nil {
					return
				}
				*a.dst = int(v)
			}
			out = append(out, k)
		}
	})
	return out, err
}

// Libraries reports the libraries the backend loaded.
func (b *Backend) Libraries() Libraries { return *b.libs }

func (b *Backend) setErr(err error) {
	if err == nil {
		return
	}
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
}

func (b *Backend) failed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err != nil
}

// Err returns the first failure, wrapping tensor.ErrDevice (or tensor.ErrBackend).
func (b *Backend) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		return nil
	}
	if errors.Is(b.err, tensor.ErrDevice) || errors.Is(b.err, tensor.ErrBackend) {
		return b.err
	}
	return fmt.Errorf("%w: %w", tensor.ErrDevice, b.err)
}

// Device names the device: "cuda:0 NVIDIA H200".
func (b *Backend) Device() string { return b.name }

// HostShared is false: buffers are device memory.
func (b *Backend) HostShared() bool { return false }

func dp[T any](x []T) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(x))) }

func (b *Backend) alloc(bytes int) uintptr {
	if b.failed() || bytes == 0 {
		return poison
	}
	var p uintptr
	b.ex.Do(func() {
		if err := b.d.check(fmt.Sprintf("cuMemAlloc of %d bytes", bytes), b.d.cuMemAlloc(&p, uintptr(bytes))); err != nil {
			b.setErr(err)
			p = 0
			return
		}
		b.setErr(b.d.check("cuMemsetD32Async", b.d.cuMemsetD32Async(p, 0, uintptr(bytes/4), b.stream)))
	})
	if p == 0 {
		return poison
	}
	b.mu.Lock()
	b.allocs[p] = true
	b.mu.Unlock()
	return p
}

// Alloc returns a zeroed device buffer of n float32s.
func (b *Backend) Alloc(n int) []float32 { return unsafe.Slice((*float32)(ptrAt(b.alloc(4*n))), n) }

// AllocInt32 returns a zeroed device buffer of n int32s.
func (b *Backend) AllocInt32(n int) []int32 { return unsafe.Slice((*int32)(ptrAt(b.alloc(4*n))), n) }

// Free releases a buffer of Alloc, AllocInt32 or Mirror; others are ignored.
func (b *Backend) Free(buf any) {
	var p uintptr
	switch x := buf.(type) {
	case []float32:
		p = dp(x)
	case []int32:
		p = dp(x)
	}
	b.mu.Lock()
	own := b.allocs[p]
	host, mirrored := b.mirrors[p]
	delete(b.allocs, p)
	delete(b.mirrors, p)
	b.mu.Unlock()
	if own {
		b.ex.Do(func() {
			if mirrored {
				// Unpinned before the host memory can be collected and its pages reused.
				_ = b.d.cuMemHostUnregister(host)
			}
			b.setErr(b.d.check("cuMemFree", b.d.cuMemFree(p)))
		})
	}
}

// Mirror pins host (page-locked, so transfers of the canonical slabs run by DMA) and
// returns a device copy of it. Free of the copy unpins host: host must stay reachable
// until then (the pages of collected memory can be given back to the system and
// mapped anew, while a pinned range still points the driver at the old ones).
func (b *Backend) Mirror(host []float32) []float32 {
	buf := b.Alloc(len(host))
	if len(host) > 0 && !b.failed() {
		var ok bool
		h := unsafe.Pointer(&host[0])
		b.ex.Do(func() { ok = b.d.cuMemHostRegister(h, uintptr(4*len(host)), 0) == 0 }) // best effort
		if ok {
			b.mu.Lock()
			b.mirrors[dp(buf)] = h
			b.mu.Unlock()
		}
	}
	b.Upload(buf, host)
	return buf
}

// Zero clears a device buffer.
func (b *Backend) Zero(buf []float32) {
	if len(buf) == 0 || b.failed() {
		return
	}
	b.timed("zero", func() error {
		return b.d.check("cuMemsetD32Async", b.d.cuMemsetD32Async(dp(buf), 0, uintptr(len(buf)), b.stream))
	})
}

func (b *Backend) upload(dst uintptr, src unsafe.Pointer, bytes int) {
	if bytes == 0 || b.failed() {
		return
	}
	b.timed("upload", func() error {
		return b.d.check("cuMemcpyHtoDAsync", b.d.cuMemcpyHtoDAsync(dst, src, uintptr(bytes), b.stream))
	})
}

func (b *Backend) download(dst unsafe.Pointer, src uintptr, bytes int) {
	if bytes == 0 || b.failed() {
		return
	}
	b.timed("download", func() error {
		return b.d.check("cuMemcpyDtoHAsync", b.d.cuMemcpyDtoHAsync(dst, src, uintptr(bytes), b.stream))
	})
}

func lenCheck(op string, a, b int) {
	if a != b {
		panic(fmt.Sprintf("cuda: %s of %d elements into %d", op, b, a))
	}
}

// Upload queues a copy of host src into device dst.
func (b *Backend) Upload(dst, src []float32) {
	lenCheck("upload", len(dst), len(src))
	if len(src) > 0 {
		b.upload(dp(dst), unsafe.Pointer(&src[0]), 4*len(src))
	}
}

// UploadInt32 queues a copy of host src into device dst.
func (b *Backend) UploadInt32(dst, src []int32) {
	lenCheck("upload", len(dst), len(src))
	if len(src) > 0 {
		b.upload(dp(dst), unsafe.Pointer(&src[0]), 4*len(src))
	}
}

// Download queues a copy of device src into host dst; read dst after an Event's Wait.
func (b *Backend) Download(dst, src []float32) {
	lenCheck("download", len(dst), len(src))
	if len(src) > 0 {
		b.download(unsafe.Pointer(&dst[0]), dp(src), 4*len(src))
	}
}

// event is a recorded CUDA event.
type event struct {
	b  *Backend
	ev uintptr
}

// Wait blocks until the work before the event is done and returns the first error.
func (e event) Wait() error {
	if e.ev != 0 {
		e.b.ex.Do(func() {
			e.b.setErr(e.b.d.check("cuEventSynchronize", e.b.d.cuEventSynchronize(e.ev)))
			e.b.setErr(e.b.d.check("cuEventDestroy", e.b.d.cuEventDestroy(e.ev)))
		})
	}
	return e.b.Err()
}

// Record records an event on the stream.
func (b *Backend) Record() tensor.Event {
	e := event{b: b}
	if b.failed() {
		return e
	}
	b.ex.Do(func() {
		var ev uintptr
		if err := b.d.check("cuEventCreate", b.d.cuEventCreate(&ev, 2)); err != nil { // CU_EVENT_DISABLE_TIMING
			b.setErr(err)
			return
		}
		if err := b.d.check("cuEventRecord", b.d.cuEventRecord(ev, b.stream)); err != nil {
			b.setErr(err)
			return
		}
		e.ev = ev
	})
	return e
}

// launch queues kernel name on a grid of blocks of block threads. Arguments are
// uintptr (device pointers), int32, int64 or float32, matching the kernel's
// parameters; they are pinned while cuLaunchKernel reads them.
func (b *Backend) launch(name string, grid, block int, args ...any) {
	if b.failed() || grid == 0 {
		return
	}
	f, ok := b.fns[name]
	if !ok {
		b.setErr(fmt.Errorf("%w: kernel %s not loaded", tensor.ErrDevice, name))
		return
	}
	b.timed(name, func() error {
		var pin runtime.Pinner
		defer pin.Unpin()
		vals := make([]unsafe.Pointer, len(args))
		for i, a := range args {
			var p unsafe.Pointer
			switch v := a.(type) {
			case uintptr:
				x := v
				p = unsafe.Pointer(&x)
			case int32:
				x := v
				p = unsafe.Pointer(&x)
			case int64:
				x := v
				p = unsafe.Pointer(&x)
			case float32:
				x := v
				p = unsafe.Pointer(&x)
			default:
				panic(fmt.Sprintf("cuda: kernel %s: argument %d of type %T", name, i, a))
			}
			pin.Pin(p)
			vals[i] = p
		}
		pin.Pin(&vals[0])
		return b.d.check("cuLaunchKernel "+name,
			b.d.cuLaunchKernel(f, uint32(grid), 1, 1, uint32(block), 1, 1, 0, b.stream, unsafe.Pointer(&vals[0]), nil))
	})
}

const threads = 256

func blocks(n int) int { return (n + threads - 1) / threads }

// rowChunk is the kernels' ROWCHUNK: the rows a column sum's first stage adds per thread.
const rowChunk = 64

// chunks returns the number of row chunks of n rows.
func chunks(n int) int { return (n + rowChunk - 1) / rowChunk }

// elementwise launches a kernel with one thread per element.
func (b *Backend) elementwise(name string, n int, args ...any) {
	b.launch(name, blocks(n), threads, args...)
}

func i32(n int) int32 { return int32(n) }

// EncoderForward: out (B,T,C) = wte[inp] + wpe[t].
func (b *Backend) EncoderForward(out []float32, inp []int32, wte, wpe []float32, B, T, C int) {
	b.elementwise("encoder_forward", B*T*C, dp(out), dp(inp), dp(wte), dp(wpe), i32(B), i32(T), i32(C))
}

// EncoderBackward adds dout into dwte rows and dwpe.
func (b *Backend) EncoderBackward(dwte, dwpe, dout []float32, inp []int32, B, T, C int) {
	V := len(dwte) / max(C, 1)
	ranges := min(V, 64)
	b.elementwise("encoder_backward_wte", ranges*C, dp(dwte), dp(dout), dp(inp), i32(B*T), i32(C), i32(V), i32(ranges))
	b.elementwise("encoder_backward_wpe", T*C, dp(dwpe), dp(dout), i32(B), i32(T), i32(C))
}

// LayerNormForward normalises each row of C.
func (b *Backend) LayerNormForward(out, mean, rstd, inp, w, bias []float32, N, C int) {
	b.launch("layernorm_forward", N, threads, dp(out), dp(mean), dp(rstd), dp(inp), dp(w), dp(bias), i32(N), i32(C))
}

// LayerNormBackward adds into dinp, dw and db.
func (b *Backend) LayerNormBackward(dinp, dw, db, dout, inp, w, mean, rstd []float32, N, C int) {
	b.launch("layernorm_backward_dinp", N, threads, dp(dinp), dp(dout), dp(inp), dp(w), dp(mean), dp(rstd), i32(N), i32(C))
	nc := chunks(N)
	part := b.scratchBuf(&b.cols, 2*nc*C)
	b.elementwise("layernorm_backward_dwdb", nc*C, dp(part), dp(dout), dp(inp), dp(mean), dp(rstd), i32(N), i32(C))
	b.elementwise("column_sums", C, dp(dw), dp(part), i32(nc), i32(C))
	b.elementwise("column_sums", C, dp(db), dp(part[nc*C:]), i32(nc), i32(C))
}

// sgemm runs cuBLAS's column-major C = alpha·op(A)·op(B) + beta·C for op.
func (b *Backend) sgemm(op string, ta, tb int32, m, n, k int, A uintptr, lda int, B uintptr, ldb int, beta float32, C uintptr, ldc int) {
	if b.failed() || m == 0 || n == 0 {
		return
	}
	alpha := float32(1)
	b.timed(op, func() error {
		return checkBLAS("cublasSgemm", b.d.cublasSgemm(b.blas, ta, tb, i32(m), i32(n), i32(k), &alpha, A, i32(lda), B, i32(ldb), &beta, C, i32(ldc)))
	})
}

// MatmulForward: out (N,OC) = inp (N,C) · wᵀ + bias.
func (b *Backend) MatmulForward(out, inp, w, bias []float32, N, C, OC int) {
	// Column-major: outᵀ (OC,N) = wᵀ... i.e. op(A)=T on w (C,OC), B = inp (C,N).
	b.sgemm("matmul_forward", cublasOpT, cublasOpN, OC, N, C, dp(w), C, dp(inp), C, 0, dp(out), OC)
	if bias != nil {
		b.elementwise("add_bias", N*OC, dp(out), dp(bias), i32(N), i32(OC))
	}
}

// MatmulBackward adds into dinp (N,C), dw (OC,C) and dbias (OC); nil ones are skipped.
func (b *Backend) MatmulBackward(dinp, dw, dbias, dout, inp, w []float32, N, C, OC int) {
	if dinp != nil {
		b.sgemm("matmul_backward_dinp", cublasOpN, cublasOpN, C, N, OC, dp(w), C, dp(dout), OC, 1, dp(dinp), C)
	}
	if dw != nil {
		b.sgemm("matmul_backward_dw", cublasOpN, cublasOpT, C, OC, N, dp(inp), C, dp(dout), OC, 1, dp(dw), C)
	}
	if dbias != nil {
		nc := chunks(N)
		part := b.scratchBuf(&b.cols, nc*OC)
		b.elementwise("bias_backward", nc*OC, dp(part), dp(dout), i32(N), i32(OC))
		b.elementwise("column_sums", OC, dp(dbias), dp(part), i32(nc), i32(OC))
	}
}

func (b *Backend) checkHeads(C, H int) bool {
	if H < 1 || C%H != 0 || C/H > 128 {
		b.setErr(fmt.Errorf("%w: attention with C=%d H=%d: the kernels take head sizes up to 128", tensor.ErrDevice, C, H))
		return false
	}
	return true
}

func bit(causal bool) int32 {
	if causal {
		return 1
	}
	return 0
}

// AttentionForward: one thread per query row.
func (b *Backend) AttentionForward(out, lse, qkv []float32, B, T, C, H int, causal bool) {
	b.attentionForward(out, lse, qkv, nil, B, T, C, H, causal)
}

// AttentionForwardRanges: causal attention where query t sees the keys from start[b·T+t].
// start is a device buffer (AllocInt32, UploadInt32); nil is AttentionForward.
func (b *Backend) AttentionForwardRanges(out, lse, qkv []float32, start []int32, B, T, C, H int) {
	b.attentionForward(out, lse, qkv, start, B, T, C, H, true)
}

func (b *Backend) attentionForward(out, lse, qkv []float32, start []int32, B, T, C, H int, causal bool) {
	if !b.checkHeads(C, H) {
		return
	}
	if C == 64*H && (dp(qkv)|dp(out))%16 == 0 {
		b.elementwise("attention_forward_64", 2*B*H*T, dp(out), dp(lse), dp(qkv), dp(start), i32(B), i32(T), i32(C), i32(H), bit(causal))
		return
	}
	b.elementwise("attention_forward", B*H*T, dp(out), dp(lse), dp(qkv), dp(start), i32(B), i32(T), i32(C), i32(H), bit(causal))
}

// AttentionBackwardRanges adds into dqkv; start as in AttentionForwardRanges.
func (b *Backend) AttentionBackwardRanges(dqkv, dout, qkv, out, lse []float32, start []int32, B, T, C, H int) {
	b.attentionBackward(dqkv, dout, qkv, out, lse, start, B, T, C, H, true)
}

// scratchBuf returns a device scratch buffer of at least n floats.
func (b *Backend) scratchBuf(buf *[]float32, n int) []float32 {
	if len(*buf) < n {
		if *buf != nil {
			_ = b.Record().Wait() // the queued kernels are done with the old one
			b.Free(*buf)
		}
		*buf = b.Alloc(n)
	}
	return (*buf)[:n]
}

// AttentionBackward adds into dqkv.
func (b *Backend) AttentionBackward(dqkv, dout, qkv, out, lse []float32, B, T, C, H int, causal bool) {
	b.attentionBackward(dqkv, dout, qkv, out, lse, nil, B, T, C, H, causal)
}

func (b *Backend) attentionBackward(dqkv, dout, qkv, out, lse []float32, start []int32, B, T, C, H int, causal bool) {
	if !b.checkHeads(C, H) {
		return
	}
	D := b.scratchBuf(&b.scratch, B*H*T)
	n := B * H * T
	b.elementwise("attention_backward_d", n, dp(D), dp(dout), dp(out), i32(B), i32(T), i32(C), i32(H))
	b.elementwise("attention_backward_dq", n, dp(dqkv), dp(dout), dp(qkv), dp(lse), dp(D), dp(start), i32(B), i32(T), i32(C), i32(H), bit(causal))
	b.elementwise("attention_backward_dk", n, dp(dqkv), dp(dout), dp(qkv), dp(lse), dp(D), dp(start), i32(B), i32(T), i32(C), i32(H), bit(causal))
	if C == 64*H && (dp(qkv)|dp(dout))%16 == 0 {
		// two threads a row (see attention_backward_dv_64)
		b.elementwise("attention_backward_dv_64", 2*n, dp(dqkv), dp(dout), dp(qkv), dp(lse), dp(start), i32(B), i32(T), i32(C), i32(H), bit(causal))
		return
	}
	b.elementwise("attention_backward_dv", n, dp(dqkv), dp(dout), dp(qkv), dp(lse), dp(start), i32(B), i32(T), i32(C), i32(H), bit(causal))
}

// AttentionDecodeForward appends the keys and values to the cache and attends over it.
func (b *Backend) AttentionDecodeForward(out, kcache, vcache, qkv []float32, T, pos0, C, H int) {
	if !b.checkHeads(C, H) {
		return
	}
	b.elementwise("kv_append", T*C, dp(kcache), dp(vcache), dp(qkv), i32(T), i32(pos0), i32(C))
	b.elementwise("attention_decode", T*H, dp(out), dp(kcache), dp(vcache), dp(qkv), i32(T), i32(pos0), i32(C), i32(H))
}

// GeluForward: out = gelu_tanh(inp).
func (b *Backend) GeluForward(out, inp []float32) {
	b.elementwise("gelu_forward", len(out), dp(out), dp(inp), int64(len(out)))
}

// GeluBackward adds into dinp.
func (b *Backend) GeluBackward(dinp, inp, dout []float32) {
	b.elementwise("gelu_backward", len(dinp), dp(dinp), dp(inp), dp(dout), int64(len(dinp)))
}

// ResidualForward: out = a + b.
func (b *Backend) ResidualForward(out, x, y []float32) {
	b.elementwise("residual_forward", len(out), dp(out), dp(x), dp(y), int64(len(out)))
}

// Accumulate: dst += src.
func (b *Backend) Accumulate(dst, src []float32) {
	b.elementwise("accumulate", len(dst), dp(dst), dp(src), int64(len(dst)))
}

// Scale: x *= c.
func (b *Backend) Scale(x []float32, c float32) {
	b.elementwise("scale", len(x), dp(x), c, int64(len(x)))
}

// sumF64 returns Σ x in float64 on the device (a fixed order), waiting for it.
func (b *Backend) sumF64(x []float32) float64 {
	out := b.scratchBuf(&b.partial, 2)
	b.launch("sum_f64", 1, threads, dp(out), dp(x), i32(len(x)))
	var host [1]float64
	b.download(unsafe.Pointer(&host[0]), dp(out), 8)
	if b.Record().Wait() != nil {
		return math.NaN()
	}
	return host[0]
}

// SoftmaxCrossEntropy turns logits into probabilities, writes the losses and returns
// their sum; it waits for the device.
func (b *Backend) SoftmaxCrossEntropy(losses, logits []float32, targets []int32, N, V int) float64 {
	b.launch("softmax_xent_forward", N, threads, dp(losses), dp(logits), dp(targets), i32(N), i32(V))
	return b.sumF64(losses[:N])
}

// CrossEntropyBackward turns probabilities into dlogits in place.
func (b *Backend) CrossEntropyBackward(probs []float32, targets []int32, scale float32, N, V int) {
	b.elementwise("xent_backward", N*V, dp(probs), dp(targets), scale, i32(N), i32(V))
}

// SumSquares sums x² per fixed chunk on the device and adds the chunks' sums here in
// order, as tensor.SumSquares does; it waits for the device.
func (b *Backend) SumSquares(x []float32, chunk int) float64 {
	if chunk < 1 {
		panic("cuda: SumSquares chunk < 1")
	}
	nc := (len(x) + chunk - 1) / chunk
	if nc == 0 {
		return 0
	}
	part := b.scratchBuf(&b.partial, 2*nc)
	b.launch("sum_squares", (nc+threads/8-1)/(threads/8), threads, dp(part), dp(x), int64(len(x)), int64(chunk))
	host := make([]float64, nc)
	b.download(unsafe.Pointer(&host[0]), dp(part), 8*nc)
	if b.Record().Wait() != nil {
		return math.NaN()
	}
	s := 0.0
	for _, v := range host {
		s += v
	}
	return s
}

// AdamW applies one AdamW step element-wise.
func (b *Backend) AdamW(p, g, m, v []float32, b1, b2, eps, stepSize, invSqrtBC2, decayFactor float32) {
	b.elementwise("adamw", len(p), dp(p), dp(g), dp(m), dp(v), int64(len(p)), b1, b2, eps, stepSize, invSqrtBC2, decayFactor)
}

// MeasurePeak times float32 matrix products of 8192×8192 matrices of non-zero values
// through cuBLAS, in the backend's math mode, for about d after one untimed, and
// returns their GFLOP/s (two FLOPs per multiply-add): the peak an MFU is stated
// against. It returns 0 when the device fails.
func (b *Backend) MeasurePeak(d time.Duration) float64 {
	const n = 8192
	host := make([]float32, n*n)
	for i := range host {
		host[i] = float32(i%13-6) / 64
	}
	x, y, z := b.Alloc(n*n), b.Alloc(n*n), b.Alloc(n*n)
	defer func() { b.Free(x); b.Free(y); b.Free(z) }()
	b.Upload(x, host)
	b.Upload(y, host)
	product := func() error {
		b.sgemm("peak", cublasOpN, cublasOpN, n, n, n, dp(x), n, dp(y), n, 0, dp(z), n)
		return b.Record().Wait()
	}
	if product() != nil {
		return 0
	}
	start, calls := time.Now(), 0
	for calls < 3 || time.Since(start) < d {
		if product() != nil {
			return 0
		}
		calls++
	}
	return 2 * n * n * n * float64(calls) / time.Since(start).Seconds() / 1e9
}

// Close releases the executor's thread. Buffers still live are lost with the process.
func (b *Backend) Close() { b.ex.Close() }
