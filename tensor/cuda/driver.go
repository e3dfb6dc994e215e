//go:build cuda

package cuda

import (
	"fmt"
	"unsafe"

	"github.com/ebitengine/purego"
)

// driver holds the driver API and cuBLAS functions the backend calls, bound with
// purego. Every call runs on the executor's thread (see executor.go).
type driver struct {
	cuInit                   func(flags uint32) int32
	cuDriverGetVersion       func(v *int32) int32
	cuDeviceGetCount         func(n *int32) int32
	cuDeviceGet              func(dev *int32, ordinal int32) int32
	cuDeviceGetName          func(name *byte, n int32, dev int32) int32
	cuDevicePrimaryCtxRetain func(ctx *uintptr, dev int32) int32
	cuCtxSetCurrent          func(ctx uintptr) int32
	cuGetErrorName           func(code int32, name *uintptr) int32
	cuMemAlloc               func(p *uintptr, bytes uintptr) int32
	cuMemFree                func(p uintptr) int32
	cuMemHostRegister        func(p unsafe.Pointer, bytes uintptr, flags uint32) int32
	cuMemHostUnregister      func(p unsafe.Pointer) int32
	cuMemcpyHtoDAsync        func(dst uintptr, src unsafe.Pointer, bytes uintptr, stream uintptr) int32
	cuMemcpyDtoHAsync        func(dst unsafe.Pointer, src uintptr, bytes uintptr, stream uintptr) int32
	cuMemsetD32Async         func(dst uintptr, v uint32, n uintptr, stream uintptr) int32
	cuStreamCreate           func(s *uintptr, flags uint32) int32
	cuStreamSynchronize      func(s uintptr) int32
	cuEventCreate            func(e *uintptr, flags uint32) int32
	cuEventRecord            func(e uintptr, s uintptr) int32
	cuEventSynchronize       func(e uintptr) int32
	cuEventDestroy           func(e uintptr) int32
	cuModuleLoadData         func(m *uintptr, image unsafe.Pointer) int32
	cuModuleGetFunction      func(f *uintptr, m uintptr, name *byte) int32
	cuFuncGetAttribute       func(v *int32, attr int32, f uintptr) int32
	cuLaunchKernel           func(f uintptr, gx, gy, gz, bx, by, bz, shmem uint32, stream uintptr, params unsafe.Pointer, extra unsafe.Pointer) int32

	cublasCreate      func(h *uintptr) int32
	cublasSetStream   func(h uintptr, s uintptr) int32
	cublasSetMathMode func(h uintptr, mode int32) int32
	cublasSgemm       func(h uintptr, ta, tb int32, m, n, k int32, alpha *float32, a uintptr, lda int32, b uintptr, ldb int32, beta *float32, c uintptr, ldc int32) int32
}

// symbol is one function to bind: its name in the library and where it goes.
type symbol struct {
	lib  uintptr
	name string
	fn   any
}

// bind resolves every symbol, or names the first one missing (an old driver).
func bind(syms []symbol) error {
	for _, s := range syms {
		if _, err := purego.Dlsym(s.lib, s.name); err != nil {
			return fmt.Errorf("%w: symbol %s missing (driver or cuBLAS too old?): %v", ErrLibrary, s.name, err)
		}
		purego.RegisterLibFunc(s.fn, s.lib, s.name)
	}
	return nil
}

// loadDriver binds the driver API of libcuda (and, when cublas is not 0, cuBLAS).
func loadDriver(cuda, cublas uintptr) (*driver, error) {
	d := &driver{}
	syms := []symbol{
		{cuda, "cuInit", &d.cuInit},
		{cuda, "cuDriverGetVersion", &d.cuDriverGetVersion},
		{cuda, "cuGetErrorName", &d.cuGetErrorName},
		{cuda, "cuDeviceGetCount", &d.cuDeviceGetCount},
		{cuda, "cuDeviceGet", &d.cuDeviceGet},
		{cuda, "cuDeviceGetName", &d.cuDeviceGetName},
		{cuda, "cuDevicePrimaryCtxRetain", &d.cuDevicePrimaryCtxRetain},
		{cuda, "cuCtxSetCurrent", &d.cuCtxSetCurrent},
		{cuda, "cuMemAlloc_v2", &d.cuMemAlloc},
		{cuda, "cuMemFree_v2", &d.cuMemFree},
		{cuda, "cuMemHostRegister_v2", &d.cuMemHostRegister},
		{cuda, "cuMemHostUnregister", &d.cuMemHostUnregister},
		{cuda, "cuMemcpyHtoDAsync_v2", &d.cuMemcpyHtoDAsync},
		{cuda, "cuMemcpyDtoHAsync_v2", &d.cuMemcpyDtoHAsync},
		{cuda, "cuMemsetD32Async", &d.cuMemsetD32Async},
		{cuda, "cuStreamCreate", &d.cuStreamCreate},
		{cuda, "cuStreamSynchronize", &d.cuStreamSynchronize},
		{cuda, "cuEventCreate", &d.cuEventCreate},
		{cuda, "cuEventRecord", &d.cuEventRecord},
		{cuda, "cuEventSynchronize", &d.cuEventSynchronize},
		{cuda, "cuEventDestroy_v2", &d.cuEventDestroy},
		{cuda, "cuModuleLoadData", &d.cuModuleLoadData},
		{cuda, "cuModuleGetFunction", &d.cuModuleGetFunction},
		{cuda, "cuFuncGetAttribute", &d.cuFuncGetAttribute},
		{cuda, "cuLaunchKernel", &d.cuLaunchKernel},
	}
	if cublas != 0 {
		syms = append(syms,
			symbol{cublas, "cublasCreate_v2", &d.cublasCreate},
			symbol{cublas, "cublasSetStream_v2", &d.cublasSetStream},
			symbol{cublas, "cublasSetMathMode", &d.cublasSetMathMode},
			symbol{cublas, "cublasSgemm_v2", &d.cublasSgemm},
		)
	}
	if err := bind(syms); err != nil {
		return nil, err
	}
	return d, nil
}

// errorName asks the driver for a CUresult's name.
func (d *driver) errorName(code int32) (string, bool) {
	var p uintptr
	if d.cuGetErrorName == nil || d.cuGetErrorName(code, &p) != 0 || p == 0 {
		return "", false
	}
	return cString(p), true
}

// check turns a CUresult of call into an error, named by the driver.
func (d *driver) check(call string, code int32) error { return check(call, code, d.errorName) }

// cString copies the NUL-terminated C string at p (memory owned by the library).
func cString(p uintptr) string {
	var b []byte
	for i := uintptr(0); i < 256; i++ {
		c := *(*byte)(ptrAt(p + i))
		if c == 0 {
			break
		}
		b = append(b, c)
	}
	return string(b)
}

// ptrAt turns an address outside the Go heap (memory of a C library, device memory)
// into a pointer. The garbage collector ignores pointers outside its heap.
func ptrAt(p uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }
