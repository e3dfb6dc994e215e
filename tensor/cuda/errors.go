//go:build cuda

package cuda

import (
	"fmt"

	"github.com/ringtrain/ringtrain/tensor"
)

// resultNames are the names of the CUresult codes the backend can meet (cuda.h); the
// driver's own cuGetErrorName is asked first for any other.
var resultNames = map[int32]string{
	0: "CUDA_SUCCESS", 1: "CUDA_ERROR_INVALID_VALUE", 2: "CUDA_ERROR_OUT_OF_MEMORY",
	3: "CUDA_ERROR_NOT_INITIALIZED", 4: "CUDA_ERROR_DEINITIALIZED", 34: "CUDA_ERROR_STUB_LIBRARY",
	46: "CUDA_ERROR_DEVICE_UNAVAILABLE", 100: "CUDA_ERROR_NO_DEVICE", 101: "CUDA_ERROR_INVALID_DEVICE",
	200: "CUDA_ERROR_INVALID_IMAGE", 201: "CUDA_ERROR_INVALID_CONTEXT", 209: "CUDA_ERROR_NO_BINARY_FOR_GPU",
	218: "CUDA_ERROR_INVALID_PTX", 222: "CUDA_ERROR_UNSUPPORTED_PTX_VERSION", 400: "CUDA_ERROR_INVALID_HANDLE",
	500: "CUDA_ERROR_NOT_FOUND", 600: "CUDA_ERROR_NOT_READY", 700: "CUDA_ERROR_ILLEGAL_ADDRESS",
	701: "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", 702: "CUDA_ERROR_LAUNCH_TIMEOUT", 719: "CUDA_ERROR_LAUNCH_FAILED",
	803: "CUDA_ERROR_SYSTEM_NOT_READY", 804: "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE", 999: "CUDA_ERROR_UNKNOWN",
}

// cublasNames are the names of cublasStatus_t codes.
var cublasNames = map[int32]string{
	0: "CUBLAS_STATUS_SUCCESS", 1: "CUBLAS_STATUS_NOT_INITIALIZED", 3: "CUBLAS_STATUS_ALLOC_FAILED",
	7: "CUBLAS_STATUS_INVALID_VALUE", 8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR",
	13: "CUBLAS_STATUS_EXECUTION_FAILED", 14: "CUBLAS_STATUS_INTERNAL_ERROR", 15: "CUBLAS_STATUS_NOT_SUPPORTED",
	16: "CUBLAS_STATUS_LICENSE_ERROR",
}

// Error is a failed driver or cuBLAS call: the call, its code and the code's name. It
// wraps tensor.ErrDevice, or tensor.ErrBackend when the device cannot be used at all
// (no device, no driver, a stub library).
type Error struct {
	Call string
	Code int32
	Name string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s (%d)", e.Call, e.Name, e.Code) }

// Unwrap classifies the error for errors.Is.
func (e *Error) Unwrap() error {
	switch e.Name {
	case "CUDA_ERROR_NO_DEVICE", "CUDA_ERROR_INVALID_DEVICE", "CUDA_ERROR_STUB_LIBRARY",
		"CUDA_ERROR_DEVICE_UNAVAILABLE", "CUDA_ERROR_NOT_INITIALIZED", "CUDA_ERROR_SYSTEM_NOT_READY",
		"CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE":
		return tensor.ErrBackend
	}
	return tensor.ErrDevice
}

// resultName names a CUresult: the driver's name when it has one (lookup may be nil),
// the table's otherwise, or CUDA_ERROR_<code>.
func resultName(code int32, lookup func(int32) (string, bool)) string {
	if lookup != nil {
		if n, ok := lookup(code); ok {
			return n
		}
	}
	if n, ok := resultNames[code]; ok {
		return n
	}
	return fmt.Sprintf("CUDA_ERROR_%d", code)
}

// check turns a CUresult into nil or an *Error naming call.
func check(call string, code int32, lookup func(int32) (string, bool)) error {
	if code == 0 {
		return nil
	}
	return &Error{Call: call, Code: code, Name: resultName(code, lookup)}
}

// checkBLAS turns a cublasStatus_t into nil or an *Error naming call.
func checkBLAS(call string, code int32) error {
	if code == 0 {
		return nil
	}
	n, ok := cublasNames[code]
	if !ok {
		n = fmt.Sprintf("CUBLAS_STATUS_%d", code)
	}
	return &Error{Call: call, Code: code, Name: n}
}
