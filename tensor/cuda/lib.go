//go:build cuda

package cuda

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ebitengine/purego"
)

// LibDirEnv names the environment variable searched first for the CUDA libraries.
const LibDirEnv = "RINGTRAIN_CUDA_LIB_DIR"

// ErrLibrary reports a CUDA library that could not be found or loaded; the message
// lists every place that was tried.
var ErrLibrary = errors.New("cuda: library not found")

// The sonames tried, newest first.
var (
	driverSonames = []string{"libcuda.so.1"}
	cublasSonames = []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"}
)

// fixedDirs are the system folders searched after the loader.
var fixedDirs = []string{"/usr/local/nvidia/lib64", "/usr/local/cuda/lib64"}

// searchPath returns the candidates for a library with these sonames, in order: each
// soname in envDir (if set), each bare soname (the loader's own search: LD_LIBRARY_PATH,
// the ld.so cache), each soname in the fixed folders, then in every nvidia/*/lib
// folder of the site-packages folders given. A pure function of its arguments.
func searchPath(sonames []string, envDir string, sitePackages []string) []string {
	var out []string
	add := func(dir string) {
		for _, s := range sonames {
			if dir == "" {
				out = append(out, s)
			} else {
				out = append(out, filepath.Join(dir, s))
			}
		}
	}
	if envDir != "" {
		add(envDir)
	}
	add("")
	for _, d := range fixedDirs {
		add(d)
	}
	for _, sp := range sitePackages {
		libs, _ := filepath.Glob(filepath.Join(sp, "nvidia", "*", "lib"))
		sort.Strings(libs)
		for _, d := range libs {
			add(d)
		}
	}
	return out
}

// sitePackages lists Python's site-packages and dist-packages folders that exist: of
// the active virtual environment, of the environment of each python3 on PATH (a
// virtual environment's bin folder put on PATH without activating it), the user's,
// and the system's.
func sitePackages() []string {
	var globs []string
	if v := os.Getenv("VIRTUAL_ENV"); v != "" {
		globs = append(globs, filepath.Join(v, "lib", "python3*", "site-packages"))
	}
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if dir == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "python3")); err == nil {
			globs = append(globs, filepath.Join(filepath.Dir(dir), "lib", "python3*", "site-packages"))
		}
	}
	if h, err := os.UserHomeDir(); err == nil {
		globs = append(globs, filepath.Join(h, ".local", "lib", "python3*", "site-packages"))
	}
	globs = append(globs, "/usr/local/lib/python3*/site-packages", "/usr/local/lib/python3*/dist-packages",
		"/usr/lib/python3*/site-packages", "/usr/lib/python3/dist-packages", "/opt/conda/lib/python3*/site-packages")
	var out []string
	seen := map[string]bool{}
	for _, g := range globs {
		m, _ := filepath.Glob(g)
		sort.Strings(m)
		for _, d := range m {
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	return out
}

// dlopen loads one shared library; a variable so tests can watch the search.
var dlopen = func(path string) (uintptr, error) {
	return purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
}

// loadLibrary tries every candidate in turn and returns the first that loads, with its
// path. When none does, the error wraps ErrLibrary and lists each candidate with why it
// failed.
func loadLibrary(what string, candidates []string) (uintptr, string, error) {
	var tried []string
	for _, c := range candidates {
		h, err := dlopen(c)
		if err == nil {
			return h, c, nil
		}
		tried = append(tried, fmt.Sprintf("  %s: %s", c, strings.TrimPrefix(firstLine(err.Error()), c+": ")))
	}
	return 0, "", fmt.Errorf("%w: %s (set %s to the folder that holds it); looked in:\n%s",
		ErrLibrary, what, LibDirEnv, strings.Join(tried, "\n"))
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Libraries are the loaded CUDA libraries and where they came from.
type Libraries struct {
	Driver, Cublas         uintptr
	DriverPath, CublasPath string
}

// Discover loads libcuda.so.1 and libcublas through the search path (see the package
// documentation) and reports where it found them.
func Discover() (*Libraries, error) {
	env, sp := os.Getenv(LibDirEnv), sitePackages()
	var l Libraries
	var err error
	if l.Driver, l.DriverPath, err = loadLibrary("the CUDA driver (libcuda.so.1; is the NVIDIA driver installed?)", searchPath(driverSonames, env, sp)); err != nil {
		return nil, err
	}
	if l.Cublas, l.CublasPath, err = loadLibrary("cuBLAS (libcublas.so.13/12/11; pip install nvidia-cublas-cu12, or the CUDA toolkit)", searchPath(cublasSonames, env, sp)); err != nil {
		return nil, err
	}
	return &l, nil
}
