//go:build cuda

package cuda

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/tensor"
)

func TestSearchPath(t *testing.T) {
	site := t.TempDir()
	for _, d := range []string{"nvidia/cublas/lib", "nvidia/cuda_runtime/lib", "nvidia/notalib"} {
		if err := os.MkdirAll(filepath.Join(site, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	got := searchPath([]string{"libcublas.so.13", "libcublas.so.12"}, "/opt/env", []string{site})
	want := []string{
		"/opt/env/libcublas.so.13", "/opt/env/libcublas.so.12",
		"libcublas.so.13", "libcublas.so.12",
		"/usr/local/nvidia/lib64/libcublas.so.13", "/usr/local/nvidia/lib64/libcublas.so.12",
		"/usr/local/cuda/lib64/libcublas.so.13", "/usr/local/cuda/lib64/libcublas.so.12",
		filepath.Join(site, "nvidia/cublas/lib/libcublas.so.13"), filepath.Join(site, "nvidia/cublas/lib/libcublas.so.12"),
		filepath.Join(site, "nvidia/cuda_runtime/lib/libcublas.so.13"), filepath.Join(site, "nvidia/cuda_runtime/lib/libcublas.so.12"),
	}
	if !slices.Equal(got, want) {
		t.Fatalf("search path\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := searchPath([]string{"libcuda.so.1"}, "", nil); got[0] != "libcuda.so.1" {
		t.Fatalf("without %s the loader comes first: %v", LibDirEnv, got)
	}
}

func TestLoadLibraryListsWhereItLooked(t *testing.T) {
	old := dlopen
	defer func() { dlopen = old }()
	var tried []string
	dlopen = func(p string) (uintptr, error) {
		tried = append(tried, p)
		return 0, errors.New(p + ": cannot open shared object file")
	}
	cands := []string{"/a/libcuda.so.1", "libcuda.so.1"}
	_, _, err := loadLibrary("the CUDA driver", cands)
	if !errors.Is(err, ErrLibrary) || !slices.Equal(tried, cands) {
		t.Fatalf("err %v after trying %v", err, tried)
	}
	for _, c := range cands {
		if !strings.Contains(err.Error(), "  "+c+": cannot open shared object file") {
			t.Errorf("error does not list %s once with its reason:\n%v", c, err)
		}
	}
}

// fakeDriver builds testdata/fake_driver.c as libcuda.so.1 and libcublas.so.13 in a
// temporary folder and points RINGTRAIN_CUDA_LIB_DIR at it.
func fakeDriver(t *testing.T, mode string) {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler (cc) to build the fake CUDA driver")
	}
	dir := t.TempDir()
	lib := filepath.Join(dir, "libcuda.so.1")
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-o", lib, "testdata/fake_driver.c").CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
	if err := os.Link(lib, filepath.Join(dir, "libcublas.so.13")); err != nil {
		t.Fatal(err)
	}
	t.Setenv(LibDirEnv, dir)
	t.Setenv("FAKE_CUDA_MODE", mode)
}

// TestOpenFakeDriver opens the backend on a fake driver: discovery finds it through
// RINGTRAIN_CUDA_LIB_DIR, and each failure comes back as one error with the call and
// the code's name (the driver's own, or the table's).
func TestOpenFakeDriver(t *testing.T) {
	for _, tc := range []struct {
		mode, want string
		sentinel   error
	}{
		{"nodevice", "cuInit: CUDA_ERROR_NO_DEVICE (100)", tensor.ErrBackend},
		{"zero", "--gpu 0 but the driver sees 0 device(s)", tensor.ErrBackend},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			fakeDriver(t, tc.mode)
			_, err := Open(0, Options{})
			if !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v; want %v naming %q", err, tc.sentinel, tc.want)
			}
		})
	}
	t.Run("oom", func(t *testing.T) {
		fakeDriver(t, "oom")
		b, err := Open(0, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		if b.Device() != "cuda:0 Fake GPU" {
			t.Errorf("device %q", b.Device())
		}
		buf := b.Alloc(1 << 20)
		b.Zero(buf) // skipped: the backend has failed
		err = b.Err()
		if !errors.Is(err, tensor.ErrDevice) || !strings.Contains(err.Error(), "cuMemAlloc of 4194304 bytes: CUDA_ERROR_OUT_OF_MEMORY (2)") {
			t.Fatalf("Err after a failed Alloc: %v", err)
		}
		if err := b.Record().Wait(); err == nil {
			t.Fatal("Wait on a failed backend returned nil")
		}
	})
}

func TestErrorNames(t *testing.T) {
	driver := func(code int32) (string, bool) {
		if code == 7 {
			return "CUDA_ERROR_FROM_DRIVER", true
		}
		return "", false
	}
	for _, tc := range []struct {
		code     int32
		want     string
		sentinel error
	}{
		{7, "x: CUDA_ERROR_FROM_DRIVER (7)", tensor.ErrDevice},
		{100, "x: CUDA_ERROR_NO_DEVICE (100)", tensor.ErrBackend},
		{34, "x: CUDA_ERROR_STUB_LIBRARY (34)", tensor.ErrBackend},
		{700, "x: CUDA_ERROR_ILLEGAL_ADDRESS (700)", tensor.ErrDevice},
		{12345, "x: CUDA_ERROR_12345 (12345)", tensor.ErrDevice},
	} {
		err := check("x", tc.code, driver)
		if err == nil || err.Error() != tc.want || !errors.Is(err, tc.sentinel) {
			t.Errorf("code %d: %v, want %q wrapping %v", tc.code, err, tc.want, tc.sentinel)
		}
	}
	if check("x", 0, driver) != nil || checkBLAS("x", 0) != nil {
		t.Error("success is not an error")
	}
	if err := checkBLAS("cublasSgemm", 13); err == nil || err.Error() != "cublasSgemm: CUBLAS_STATUS_EXECUTION_FAILED (13)" {
		t.Errorf("cuBLAS status 13: %v", err)
	}
}

// TestDiscover reports where this machine's CUDA libraries are, or skips with the
// list of places searched (scripts/gpu/check.sh prints it).
func TestDiscover(t *testing.T) {
	l, err := Discover()
	if err != nil {
		if !errors.Is(err, ErrLibrary) {
			t.Fatalf("Discover: %v, want an error wrapping ErrLibrary", err)
		}
		t.Skipf("no CUDA libraries here: %v", err)
	}
	t.Logf("driver %s", l.DriverPath)
	t.Logf("cublas %s", l.CublasPath)
}

// TestSitePackagesOfPythonOnPath checks that the site-packages of a virtual environment
// whose bin folder is on PATH, not activated, are searched (where a GPU image's python3
// keeps pip's CUDA wheels).
func TestSitePackagesOfPythonOnPath(t *testing.T) {
	env := t.TempDir()
	site := filepath.Join(env, "lib", "python3.12", "site-packages")
	if err := os.MkdirAll(site, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(env, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(env, "bin", "python3"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VIRTUAL_ENV", "")
	t.Setenv("PATH", filepath.Join(env, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"))
	if got := sitePackages(); !slices.Contains(got, site) {
		t.Fatalf("site-packages %v do not hold %s", got, site)
	}
}
