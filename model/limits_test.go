package model

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/tensor"
)

func TestParamCountMatchesLayout(t *testing.T) {
	for _, c := range []Config{
		hfTestConfig,
		{Layers: 4, Heads: 4, Embd: 128, MaxSeqLen: 64, VocabSize: 65},
		{Layers: 12, Heads: 12, Embd: 768, MaxSeqLen: 1024, VocabSize: 50257},
	} {
		n, ok := c.ParamCount()
		if !ok || n != int64(c.NumParams()) {
			t.Errorf("%+v: ParamCount %d (ok %v), layout has %d", c, n, ok, c.NumParams())
		}
	}
	// GPT-2 small is 124,439,808 parameters with the tied head.
	gpt2 := Config{Layers: 12, Heads: 12, Embd: 768, MaxSeqLen: 1024, VocabSize: 50257}
	if n, _ := gpt2.ParamCount(); n != 124439808 {
		t.Errorf("GPT-2 small: %d parameters, want 124439808", n)
	}
}

// allocatedBytes returns the bytes of every buffer a holds.
func allocatedBytes(a *activations) int64 {
	var n int64
	for _, b := range a.bufs {
		switch b := b.(type) {
		case []float32:
			n += 4 * int64(len(b))
		case []int32:
			n += 4 * int64(len(b))
		}
	}
	return n
}

func TestActivationBytesMatchesAllocation(t *testing.T) {
	c := hfTestConfig
	B, T := 3, 5
	a := newActivations(tensor.NewCPU(), c, B, T, false, true)
	floats := len(a.encoded) + len(a.lnf) + len(a.lnfMean) + len(a.lnfRstd) + len(a.logits) + len(a.losses) +
		len(a.inputs) + len(a.targets) + len(a.start) +
		len(a.grads.dres) + len(a.grads.dbuf) + len(a.grads.dfch) + len(a.grads.dfchG) + len(a.grads.dqkv)
	for l, la := range a.layers {
		floats += len(la.ln1) + len(la.ln1Mean) + len(la.ln1Rstd) + len(la.qkv) + len(la.atty) + len(la.lse) +
			len(la.res2) + len(la.ln2) + len(la.ln2Mean) + len(la.ln2Rstd) + len(la.fch) + len(la.fchGelu) + len(la.res3)
		if l == 0 {
			floats += len(la.proj) // shared by every layer
		}
	}
	got, ok := c.ActivationBytes(B, T)
	if !ok || got != int64(4*floats) || got != allocatedBytes(a) {
		t.Fatalf("ActivationBytes = %d (ok %v), newActivations allocates %d bytes (%d in its buffers)", got, ok, 4*floats, allocatedBytes(a))
	}
}

// TestFrozenActivationBytes: a frozen model's activations are what
// FrozenActivationBytes says, with and without logits, and whatever the number of
// layers; they are smaller than a trainable model's by at least the backward
// scratch and every layer's buffers but one's.
func TestFrozenActivationBytes(t *testing.T) {
	B, T := 3, 5
	for _, layers := range []int{1, 2, 4} {
		c := hfTestConfig
		c.Layers = layers
		for _, logits := range []bool{true, false} {
			a := newActivations(tensor.NewCPU(), c, B, T, true, logits)
			got, ok := c.FrozenActivationBytes(B, T, logits)
			if !ok || got != allocatedBytes(a) {
				t.Errorf("layers %d logits %v: FrozenActivationBytes = %d (ok %v), newActivations allocates %d bytes", layers, logits, got, ok, allocatedBytes(a))
			}
			if (a.logits != nil) != logits || a.grads.dres != nil {
				t.Errorf("layers %d logits %v: logits allocated %v, backward scratch %d floats", layers, logits, a.logits != nil, len(a.grads.dres))
			}
		}
		train, _ := c.ActivationBytes(B, T)
		frozen, _ := c.FrozenActivationBytes(B, T, true)
		// A token saves the backward scratch (13C), every layer's buffers but one's
		// ((L-1)(16C+4+H)), and in that one ln_2's output and statistics and res3,
		// which the frozen forward shares with ln_1's and the residual stream (2C+2).
		N, C := int64(B*T), int64(c.Embd)
		if saved := train - frozen; saved != 4*N*(13*C+int64(layers-1)*(16*C+4+int64(c.Heads))+2*C+2) {
			t.Errorf("layers %d: a frozen forward saves %d bytes", layers, saved)
		}
	}
}

func TestCheckLimits(t *testing.T) {
	small := Config{Layers: 4, Heads: 4, Embd: 128, MaxSeqLen: 64, VocabSize: 65}
	lim := Limits{MaxParams: 1 << 20, MaxActivationBytes: 1 << 26}
	cases := []struct {
		name string
		c    Config
		B, T int
		want string // "" = accepted
	}{
		{"small", small, 12, 64, ""},
		{"no activation check", small, 0, 0, ""},
		{"too many params", Config{Layers: 8, Heads: 4, Embd: 512, MaxSeqLen: 64, VocabSize: 65}, 1, 1, "parameters exceed the limit of 1048576"},
		{"embd 1e6", Config{Layers: 1, Heads: 1, Embd: 1e6, MaxSeqLen: 64, VocabSize: 65}, 1, 1, "exceed the limit"},
		{"embd 1e9 overflows", Config{Layers: 1, Heads: 1, Embd: 1e9, MaxSeqLen: 64, VocabSize: 65}, 1, 1, "parameter count overflows"},
		{"too many layers", Config{Layers: MaxLayers + 1, Heads: 1, Embd: 1, MaxSeqLen: 1, VocabSize: 2}, 1, 1, "layers=4097 exceeds 4096"},
		{"activations over", small, 1024, 64, "over the limit of 67108864"},
		{"overflowing activations", small, 1 << 40, 1 << 20, "overflow"},
		{"negative", Config{Layers: 1, Heads: 1, Embd: -4, MaxSeqLen: 1, VocabSize: 2}, 1, 1, "overflows"},
	}
	for _, tc := range cases {
		err := tc.c.CheckLimits(lim, tc.B, tc.T)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (!errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: err %v, want ErrBadConfig containing %q", tc.name, err, tc.want)
		}
	}
}

// A config beyond the hard limits is an error from New, not a makeslice panic.
func TestNewRefusesHugeConfig(t *testing.T) {
	for _, c := range []Config{
		{Layers: 4, Heads: 4, Embd: 1e9, MaxSeqLen: 64, VocabSize: 65},
		{Layers: 1 << 30, Heads: 1, Embd: 1, MaxSeqLen: 1, VocabSize: 2},
		{Layers: 1, Heads: 1, Embd: 1 << 31, MaxSeqLen: 1 << 31, VocabSize: 1 << 31},
	} {
		if _, err := New(c, nil); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%+v: err %v, want ErrBadConfig", c, err)
		}
	}
}

// A config.json that claims a model far larger than its weights file is refused from
// the file's header, before the claimed slab is allocated.
func TestImportRefusesConfigLargerThanWeights(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hf")
	if err := ExportHF(dir, hfTestConfig, hfRandomSlab(hfTestConfig, 1)); err != nil {
		t.Fatal(err)
	}
	// 48 layers of 4096: about 9.7e9 parameters within HardLimits would be 39 GB.
	big := `{"n_layer": 48, "n_head": 32, "n_embd": 4096, "n_positions": 1024, "vocab_size": 50257}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(big), 0o644); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, _, err := ImportHF(dir)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "config needs") {
		t.Fatalf("err %v, want a shape mismatch", err)
	}
	grew := after.TotalAlloc - before.TotalAlloc
	t.Logf("refusing a config of %d claimed parameters allocated %d bytes", mustCount(t, big), grew)
	if grew > 64<<20 {
		t.Fatalf("refusing the config allocated %d bytes", grew)
	}
}

func TestImportRefusesNonFiniteWeights(t *testing.T) {
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(-1))} {
		dir := filepath.Join(t.TempDir(), "hf")
		params := hfRandomSlab(hfTestConfig, 1)
		ln := hfTestConfig.Tensors()[len(hfTestConfig.Tensors())-1] // ln_f.bias
		params[ln.Offset+1] = bad
		if err := ExportHF(dir, hfTestConfig, params); err != nil {
			t.Fatal(err)
		}
		_, _, err := ImportHF(dir)
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), `"transformer.ln_f.bias"`) || !strings.Contains(err.Error(), "element 1") {
			t.Fatalf("%v in ln_f.bias: err %v, want ErrFormat naming the tensor", bad, err)
		}
	}
}

func mustCount(t *testing.T, configJSON string) int64 {
	t.Helper()
	c, _, err := parseHFConfig([]byte(configJSON), "config.json")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := c.ParamCount()
	return n
}
