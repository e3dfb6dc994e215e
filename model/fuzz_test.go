package model

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/safetensors"
)

// FuzzParseHFConfig: a config.json of any bytes is refused with an error wrapping
// ErrFormat or ErrBadConfig, or gives a config within HardLimits whose own
// config.json parses back to it.
func FuzzParseHFConfig(f *testing.F) {
	for _, c := range []Config{hfTestConfig, {Layers: 12, Heads: 12, Embd: 768, MaxSeqLen: 1024, VocabSize: 50257}} {
		eot := c.VocabSize - 1
		b, err := hfConfigJSON(c, &eot)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"n_layer": 4, "n_head": 4, "n_embd": 1000000000, "n_positions": 64, "vocab_size": 65}`))
	f.Add([]byte(`{"n_layer": 4, "n_head": 4, "n_embd": 128, "n_positions": 64, "vocab_size": 65, "n_inner": 512, "eos_token_id": 64}`))
	f.Add([]byte(`{"n_layer": -1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, eot, err := parseHFConfig(b, "config.json")
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrBadConfig) {
				t.Fatalf("error %v wraps neither ErrFormat nor ErrBadConfig", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config %+v: %v", c, err)
		}
		if n, ok := c.ParamCount(); !ok || n > HardLimits.MaxParams || n != int64(c.NumParams()) {
			t.Fatalf("accepted config %+v has %d parameters (ok %v)", c, n, ok)
		}
		if eot != nil && (*eot < 0 || *eot >= c.VocabSize) {
			t.Fatalf("eos_token_id %d outside the vocabulary of %d", *eot, c.VocabSize)
		}
		out, err := hfConfigJSON(c, eot)
		if err != nil {
			t.Fatal(err)
		}
		back, backEOT, err := parseHFConfig(out, "config.json")
		if err != nil || back != c || (eot == nil) != (backEOT == nil) || (eot != nil && *eot != *backEOT) {
			t.Fatalf("round trip of %+v: %+v, %v", c, back, err)
		}
	})
}

// FuzzReadSums: a SHA256SUMS of any bytes is refused with ErrChecksum or lists plain
// file names, each once with a 32-byte digest, and writing them back in the file's
// own format reads back the same.
func FuzzReadSums(f *testing.F) {
	d := strings.Repeat("ab", 32)
	f.Add([]byte(d + "  model.safetensors\n" + d + " *config.json\n"))
	f.Add([]byte(d + "  ../escape\n"))
	f.Add([]byte(d + "  a\n" + d + "  a\n"))
	f.Add([]byte("zz  x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sums, err := parseSums(b, "SHA256SUMS")
		if err != nil {
			if !errors.Is(err, ErrChecksum) {
				t.Fatalf("error %v does not wrap ErrChecksum", err)
			}
			return
		}
		names := make([]string, 0, len(sums))
		for name, sum := range sums {
			if name == "" || name == "." || name == ".." || name == sumsFile || strings.ContainsAny(name, "/\\\n") || len(sum) != 32 {
				t.Fatalf("accepted entry %q (%d-byte digest)", name, len(sum))
			}
			names = append(names, name)
		}
		slices.Sort(names)
		var out bytes.Buffer
		for _, name := range names {
			fmt.Fprintf(&out, "%s  %s\n", hex.EncodeToString(sums[name]), name)
		}
		back, err := parseSums(out.Bytes(), "SHA256SUMS")
		if err != nil || len(back) != len(sums) {
			t.Fatalf("round trip: %d entries, %v", len(back), err)
		}
		for name, sum := range sums {
			if !bytes.Equal(back[name], sum) {
				t.Fatalf("round trip of %q: %x, want %x", name, back[name], sum)
			}
		}
	})
}

// FuzzLoadCheckpoint: a Hugging Face directory whose config.json and
// model.safetensors hold any bytes loads as a model of the config's shape with
// finite weights, or is refused with an error, never a panic; the weights are read
// only once the file's header has matched the config.
func FuzzLoadCheckpoint(f *testing.F) {
	dir := f.TempDir()
	src := filepath.Join(dir, "src")
	if err := ExportHF(src, hfTestConfig, hfRandomSlab(hfTestConfig, 3)); err != nil {
		f.Fatal(err)
	}
	cfgJSON, err := os.ReadFile(filepath.Join(src, hfConfigFile))
	if err != nil {
		f.Fatal(err)
	}
	weights, err := os.ReadFile(filepath.Join(src, hfWeightsFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(cfgJSON, weights)
	f.Add(bytes.Replace(cfgJSON, []byte(`"n_embd": 8`), []byte(`"n_embd": 1000000`), 1), weights)
	f.Add(cfgJSON, weights[:len(weights)/2])
	f.Add([]byte(`{}`), []byte{8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '})
	f.Fuzz(func(t *testing.T, cfg, st []byte) {
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, hfConfigFile), cfg, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, hfWeightsFile), st, 0o644); err != nil {
			t.Fatal(err)
		}
		ck, err := LoadCheckpoint(d)
		if err != nil {
			return
		}
		if err := ck.Config.Validate(); err != nil {
			t.Fatalf("loaded config %+v: %v", ck.Config, err)
		}
		if len(ck.Params) != ck.Config.NumParams() {
			t.Fatalf("%d parameters for config %+v", len(ck.Params), ck.Config)
		}
		if i := nonFinite(ck.Params); i >= 0 {
			t.Fatalf("loaded weight %d is %v", i, ck.Params[i])
		}
		// 4 bytes per weight at most as many as the file holds (f16/bf16 halve it).
		if int64(len(ck.Params)) > int64(len(st)) {
			t.Fatalf("%d weights from a %d-byte file", len(ck.Params), len(st))
		}
	})
}

// FuzzConfig: any five dimensions are refused by Validate with ErrBadConfig or give
// a config whose counted size matches its layout; a small one builds a model that
// runs a forward pass. Nothing panics, whatever the dimensions.
func FuzzConfig(f *testing.F) {
	f.Add(2, 2, 8, 6, 11, 1, 3)
	f.Add(4, 4, 1_000_000_000, 64, 65, 1, 1)
	f.Add(1<<30, 1, 1, 1, 2, 1, 1)
	f.Add(1, 1, 1<<31, 1<<31, 1<<31, 1, 1)
	f.Add(-1, 0, -8, 0, 1, 0, 0)
	f.Fuzz(func(t *testing.T, layers, heads, embd, maxT, vocab, B, T int) {
		c := Config{Layers: layers, Heads: heads, Embd: embd, MaxSeqLen: maxT, VocabSize: vocab}
		if err := c.Validate(); err != nil {
			if !errors.Is(err, ErrBadConfig) {
				t.Fatalf("error %v does not wrap ErrBadConfig", err)
			}
			if _, err := New(c, nil); err == nil {
				t.Fatalf("New accepted %+v, which Validate refuses", c)
			}
			return
		}
		n, ok := c.ParamCount()
		if !ok || n > HardLimits.MaxParams {
			t.Fatalf("valid config %+v: %d parameters (ok %v)", c, n, ok)
		}
		if n > 1<<16 || c.Layers > 8 {
			return // too large to build in a fuzz run
		}
		if n != int64(c.NumParams()) {
			t.Fatalf("ParamCount %d, layout %d", n, c.NumParams())
		}
		m, err := New(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		B, T = 1+abs(B)%2, 1+abs(T)%c.MaxSeqLen
		if a, ok := c.ActivationBytes(B, T); !ok || a > 1<<24 {
			return
		}
		in := make([]int32, B*T)
		for i := range in {
			in[i] = int32(i % c.VocabSize)
		}
		if _, _, err := m.Forward(in, in, B, T, true); err != nil {
			t.Fatalf("forward of %+v with B=%d T=%d: %v", c, B, T, err)
		}
	})
}

func abs(x int) int {
	if x < 0 {
		if x == -x { // the most negative int
			return 0
		}
		return -x
	}
	return x
}

// FuzzReadSlabs is FuzzLoadCheckpoint without the file system: the weights of any
// bytes are read for a config.json of any bytes (the test config when that one is
// refused). An accepted file fills a slab of the config's size with finite weights
// from no more bytes than the file has.
func FuzzReadSlabs(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "hf")
	if err := ExportHF(dir, hfTestConfig, hfRandomSlab(hfTestConfig, 5)); err != nil {
		f.Fatal(err)
	}
	cfgJSON, err := os.ReadFile(filepath.Join(dir, hfConfigFile))
	if err != nil {
		f.Fatal(err)
	}
	weights, err := os.ReadFile(filepath.Join(dir, hfWeightsFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(cfgJSON, weights)
	f.Add(bytes.Replace(cfgJSON, []byte(`"vocab_size": 11`), []byte(`"vocab_size": 1000000000`), 1), weights)
	f.Add([]byte(`{}`), weights[:100])
	f.Fuzz(func(t *testing.T, cfgBytes, st []byte) {
		c, _, err := parseHFConfig(cfgBytes, "config.json")
		if err != nil {
			c = hfTestConfig
		}
		sf, err := safetensors.Read(bytes.NewReader(st), int64(len(st)))
		if err != nil {
			return
		}
		var slab []float32
		if err := readSlabs(sf, "model.safetensors", c, []slabGroup{{slab: &slab}}); err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		if len(slab) != c.NumParams() || int64(len(slab)) > int64(len(st)) {
			t.Fatalf("%d weights for config %+v from %d bytes", len(slab), c, len(st))
		}
		if i := nonFinite(slab); i >= 0 {
			t.Fatalf("weight %d is %v", i, slab[i])
		}
	})
}
