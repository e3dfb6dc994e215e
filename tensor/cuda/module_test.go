//go:build cuda

package cuda

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPTXMatchesSource fails when a kernel source and the PTX generated from it drift
// apart: every .ptx records its source's sha256 (scripts/gpu/gen_ptx.sh).
func TestPTXMatchesSource(t *testing.T) {
	ptxs, err := filepath.Glob("kernels/*.ptx")
	if err != nil || len(ptxs) == 0 {
		t.Fatalf("no PTX in kernels/ (%v)", err)
	}
	for _, p := range ptxs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		src, sum, err := ptxSource(string(b))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		cu, err := os.ReadFile(filepath.Join("kernels", src))
		if err != nil {
			t.Fatalf("%s names %s: %v", p, src, err)
		}
		h := sha256.Sum256(cu)
		if got := hex.EncodeToString(h[:]); got != sum {
			t.Errorf("%s was generated from a %s with sha256 %s; the source now has %s: run scripts/gpu/gen_ptx.sh", p, src, sum, got)
		}
	}
	if _, _, err := ptxSource("// hand-written\n.version 7.0"); err == nil {
		t.Error("a PTX without a header passed")
	}
}

// TestEmbeddedPTXHasEveryKernel checks that the embedded PTX is the file on disk and
// defines every kernel the backend launches.
func TestEmbeddedPTXHasEveryKernel(t *testing.T) {
	disk, err := os.ReadFile("kernels/ops.ptx")
	if err != nil {
		t.Fatal(err)
	}
	if string(disk) != opsPTX {
		t.Fatal("the embedded PTX is not kernels/ops.ptx")
	}
	for _, k := range kernelNames {
		if !strings.Contains(opsPTX, ".entry "+k+"(") {
			t.Errorf("kernel %s is not in ops.ptx", k)
		}
	}
}
