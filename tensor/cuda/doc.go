// Package cuda is the CUDA backend of package tensor: the op set of a GPT on an NVIDIA
// GPU, reached at run time without cgo. Everything but this comment is behind the
// build tag cuda, so the default build (a static binary) has none of it; `go build
// -tags cuda ./cmd/ringtrain` gives the GPU binary, whose `--backend cuda --gpu N`
// opens device N through Open (registered with tensor.Register as "cuda").
//
// # Layers
//
//   - lib.go finds and loads libcuda.so.1 (the driver API) and libcublas with
//     github.com/ebitengine/purego's Dlopen: RINGTRAIN_CUDA_LIB_DIR first, then the
//     sonames through the loader, then /usr/local/nvidia/lib64, /usr/local/cuda/lib64
//     and the nvidia/*/lib folders of Python's site-packages (pip's CUDA wheels). A
//     missing library is one error listing every place it looked.
//   - driver.go binds the driver and cuBLAS functions the backend calls; errors.go maps
//     CUresult and cublasStatus_t codes to their names.
//   - executor.go runs every driver call on one goroutine locked to its OS thread (a
//     CUDA context is current per thread); kernel arguments stay pinned (runtime.Pinner)
//     while a launch reads them.
//   - module.go loads the kernels: CUDA C sources in kernels/, the PTX generated from
//     them committed beside them and embedded (go:embed), loaded with
//     cuModuleLoadData. Each PTX records the sha256 of its source; a test fails when
//     they drift apart (scripts/gpu/gen_ptx.sh regenerates them).
//   - backend.go is the tensor.Backend: buffers are device memory (a []float32 whose
//     data pointer is a device address: sliced for views, never dereferenced on the
//     host), one stream, events for Download, matrix products through cuBLAS (strict
//     fp32 unless TF32 is asked for), the rest as kernels. Errors are sticky (Err).
//
// See docs/gpu.md for the design, how to build the GPU binary and image, and what is
// done and owed.
package cuda
