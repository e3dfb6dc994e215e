// A fake libcuda.so.1 and libcublas.so.13 for tensor/cuda's tests: every symbol the
// backend binds, answering from FAKE_CUDA_MODE: "nodevice" (cuInit fails with
// CUDA_ERROR_NO_DEVICE), "zero" (cuInit succeeds, no device), "oom" (one device,
// every cuMemAlloc fails with CUDA_ERROR_OUT_OF_MEMORY). Built by the tests with cc.
#include <stdlib.h>
#include <string.h>

static const char* mode(void) { const char* m = getenv("FAKE_CUDA_MODE"); return m ? m : "nodevice"; }

int cuGetErrorName(int code, const char** name) {
	switch (code) {
	case 2: *name = "CUDA_ERROR_OUT_OF_MEMORY"; return 0;
	case 100: *name = "CUDA_ERROR_NO_DEVICE"; return 0;
	}
	return 1;
}
int cuInit(unsigned f) { return strcmp(mode(), "nodevice") == 0 ? 100 : 0; }
int cuDriverGetVersion(int* v) { *v = 13000; return 0; }
int cuDeviceGetCount(int* n) { *n = strcmp(mode(), "zero") == 0 ? 0 : 1; return 0; }
int cuDeviceGet(int* d, int o) { *d = o; return 0; }
int cuDeviceGetName(char* name, int n, int d) { strncpy(name, "Fake GPU", n); return 0; }
int cuDevicePrimaryCtxRetain(void** c, int d) { *c = (void*)1; return 0; }
int cuCtxSetCurrent(void* c) { return 0; }
int cuMemAlloc_v2(void** p, size_t n) { return 2; }
int cuMemFree_v2(void* p) { return 0; }
int cuMemHostRegister_v2(void* p, size_t n, unsigned f) { return 0; }
int cuMemHostUnregister(void* p) { return 0; }
int cuMemcpyHtoDAsync_v2(void* d, const void* s, size_t n, void* st) { return 0; }
int cuMemcpyDtoHAsync_v2(void* d, const void* s, size_t n, void* st) { return 0; }
int cuMemsetD32Async(void* d, unsigned v, size_t n, void* st) { return 0; }
int cuStreamCreate(void** s, unsigned f) { *s = (void*)1; return 0; }
int cuStreamSynchronize(void* s) { return 0; }
int cuEventCreate(void** e, unsigned f) { *e = (void*)1; return 0; }
int cuEventRecord(void* e, void* s) { return 0; }
int cuEventSynchronize(void* e) { return 0; }
int cuEventDestroy_v2(void* e) { return 0; }
int cuModuleLoadData(void** m, const void* img) { *m = (void*)1; return 0; }
int cuModuleGetFunction(void** f, void* m, const char* name) { *f = (void*)1; return 0; }
int cuFuncGetAttribute(int* v, int attr, void* f) { *v = 0; return 0; }
int cuLaunchKernel(void* f, unsigned a, unsigned b, unsigned c, unsigned d, unsigned e, unsigned g, unsigned sh, void* st, void** p, void** x) { return 0; }

int cublasCreate_v2(void** h) { *h = (void*)1; return 0; }
int cublasSetStream_v2(void* h, void* s) { return 0; }
int cublasSetMathMode(void* h, int m) { return 0; }
int cublasSgemm_v2(void* h, int a, int b, int m, int n, int k, const float* al, const void* A, int lda, const void* B, int ldb, const float* be, void* C, int ldc) { return 0; }
