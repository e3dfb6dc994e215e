//go:build !cuda

package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestBackendFlags checks --backend on every command that builds a model: the default
// build refuses cuda as a usage error that says how to get it, and names the backends
// it has for an unknown one.
func TestBackendFlags(t *testing.T) {
	data := prepareData(t)
	missing := filepath.Join(t.TempDir(), "missing")
	for _, args := range [][]string{
		tinyTrain(data, t.TempDir()),
		{"eval", "--checkpoint", missing, "--data", data},
		{"generate", "--checkpoint", missing},
		{"bench", "train"},
		{"worker", "--coordinators", "127.0.0.1:1", "--id", "w0"},
		{"local", "--dir", t.TempDir(), "--steps", "1"},
	} {
		for _, c := range []struct {
			flags []string
			want  string
		}{
			{[]string{"--backend", "cuda"}, "built without CUDA support: build the GPU binary with `go build -tags cuda`"},
			{[]string{"--backend", "tpu"}, `unknown backend "tpu" (this binary has cpu)`},
			{[]string{"--gpu", "-1"}, "--gpu -1 must be >= 0"},
		} {
			a := append(append([]string{}, args...), c.flags...)
			_, stderr, code := execIn(t, a...)
			if code != 2 || !strings.Contains(stderr, c.want) {
				t.Errorf("ringtrain %s: exit %d, stderr %q; want 2 and %q", strings.Join(a, " "), code, stderr, c.want)
			}
		}
	}
}
