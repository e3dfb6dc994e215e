package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// benchCompute runs `bench <args>` with the compute benchmarks under a bench command of
// its own and returns what it wrote to stdout.
func benchCompute(t *testing.T, args ...string) string {
	t.Helper()
	root := &cobra.Command{Use: "ringtrain", SilenceUsage: true, SilenceErrors: true}
	bench := &cobra.Command{Use: "bench"}
	bench.AddCommand(benchComputeCmds(&globals{})...)
	root.AddCommand(bench)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"bench"}, args...))
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("bench %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	t.Logf("bench %s:\n%s", strings.Join(args, " "), out.String())
	return out.String()
}

func TestBenchGemm(t *testing.T) {
	out := benchCompute(t, "gemm", "--sets", "tiny", "--reps", "1", "--time", "1ms", "--threads", "2")
	for _, want := range []string{"peak (micro-kernel", "tiny.qkv.fwd", "tiny.lmhead.dw", "x gonum"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestBenchGemmOpenBLAS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Python")
	}
	const python, script = "/usr/bin/python3", "../../scripts/bench/openblas_gemm.py"
	if err := exec.Command(python, "-c", "import torch").Run(); err != nil {
		t.Skipf("no torch for %s: %v", python, err)
	}
	if _, err := os.Stat(script); err != nil {
		t.Fatal(err)
	}
	out := benchCompute(t, "gemm", "--sets", "tiny", "--reps", "1", "--time", "1ms", "--no-gonum", "--openblas", script)
	if !strings.Contains(out, "x openblas") || !strings.Contains(out, "OpenBLAS") {
		t.Errorf("output lacks the OpenBLAS column")
	}
}

func TestBenchTrain(t *testing.T) {
	out := benchCompute(t, "train", "--layers", "1", "--heads", "2", "--embd", "32", "--seq", "16",
		"--batch", "2", "--vocab", "20", "--warmup", "1", "--steps", "2", "--peak-time", "10ms")
	for _, want := range []string{"tokens/s", "ms/step", "MFU", "peak RSS", "allocations"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
