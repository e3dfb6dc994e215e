package model

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/safetensors"
)

var hfTestConfig = Config{Layers: 2, Heads: 2, Embd: 8, MaxSeqLen: 6, VocabSize: 11}

// hfRandomSlab returns a slab of normal values, with a few special bit patterns mixed
// in so that bit-exactness is really tested.
func hfRandomSlab(c Config, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	s := make([]float32, c.NumParams())
	for i := range s {
		s[i] = float32(rng.NormFloat64())
	}
	s[1] = float32(math.Copysign(0, -1))
	s[2] = math.Float32frombits(0x00400abc) // a subnormal with a payload (NaNs are refused on import)
	s[4] = math.MaxFloat32
	s[3] = math.SmallestNonzeroFloat32
	return s
}

func hfSameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d floats, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s[%d]: bits %#x, want %#x", what, i, math.Float32bits(got[i]), math.Float32bits(want[i]))
		}
	}
}

func TestHFExportImportRoundTrip(t *testing.T) {
	c := hfTestConfig
	params := hfRandomSlab(c, 1)
	keep := append([]float32(nil), params...)
	dir := filepath.Join(t.TempDir(), "export")
	if err := ExportHF(dir, c, params, WithEOT(10), WithTokenizerJSON([]byte(`{"t":1}`))); err != nil {
		t.Fatal(err)
	}
	hfSameBits(t, "params after export", params, keep)

	gotCfg, got, err := ImportHF(dir)
	if err != nil {
		t.Fatal(err)
	}
	if gotCfg != c {
		t.Fatalf("config %+v, want %+v", gotCfg, c)
	}
	hfSameBits(t, "imported params", got, params)

	// config.json carries what transformers needs.
	var cj map[string]any
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cj); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"model_type": "gpt2", "vocab_size": 11.0, "n_positions": 6.0, "n_ctx": 6.0, "n_embd": 8.0,
		"n_layer": 2.0, "n_head": 2.0, "n_inner": nil, "activation_function": "gelu_new",
		"layer_norm_epsilon": 1e-5, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
		"initializer_range": 0.02, "tie_word_embeddings": true, "bos_token_id": 10.0, "eos_token_id": 10.0,
	}
	for k, v := range want {
		if got, ok := cj[k]; !ok || got != v {
			t.Errorf("config.json %s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if a, _ := cj["architectures"].([]any); len(a) != 1 || a[0] != "GPT2LMHeadModel" {
		t.Errorf("architectures = %v", cj["architectures"])
	}
	if tok, err := os.ReadFile(filepath.Join(dir, "ringtrain_tokenizer.json")); err != nil || string(tok) != `{"t":1}` {
		t.Errorf("ringtrain_tokenizer.json = %q, %v", tok, err)
	}

	// model.safetensors is in Hugging Face layout.
	f, err := safetensors.ReadFile(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if m := f.Metadata(); len(m) != 1 || m["format"] != "pt" {
		t.Fatalf("metadata %v", m)
	}
	if n := len(f.Tensors()); n != len(c.Tensors()) {
		t.Fatalf("%d tensors, want %d (no lm_head.weight)", n, len(c.Tensors()))
	}
	for _, tn := range c.Tensors() {
		info, ok := f.Tensor("transformer." + tn.Name)
		if !ok {
			t.Fatalf("missing transformer.%s", tn.Name)
		}
		if !equalInts(info.Shape, hfShape(tn)) || info.DType != safetensors.F32 {
			t.Fatalf("%s: %s %v, want F32 %v", tn.Name, info.DType, info.Shape, hfShape(tn))
		}
	}
	// Conv1D layout: HF c_attn.weight[i][o] is the slab's (o, i).
	hfW, err := f.Float32("transformer.h.1.attn.c_attn.weight")
	if err != nil {
		t.Fatal(err)
	}
	p := ViewParams(c, params)
	C := c.Embd
	for i := 0; i < C; i++ {
		for o := 0; o < 3*C; o++ {
			if math.Float32bits(hfW[i*3*C+o]) != math.Float32bits(p.Blocks[1].QKVW[o*C+i]) {
				t.Fatalf("c_attn.weight[%d][%d] is not the slab's (%d,%d)", i, o, o, i)
			}
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestHFGoldenImportExport imports the PyTorch-written gpt2_tiny directory, exports it
// again and checks that both files come out byte for byte as PyTorch wrote them, and
// that a second import gives the same slab.
func TestHFGoldenImportExport(t *testing.T) {
	golden := filepath.Join("testdata", "golden", "gpt2_tiny")
	if _, err := os.Stat(filepath.Join(golden, "model.safetensors")); err != nil {
		t.Skipf("golden directory not present: %v", err)
	}
	c, params, err := ImportHF(golden)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Layers: 2, Heads: 4, Embd: 32, MaxSeqLen: 16, VocabSize: 53}
	if c != want {
		t.Fatalf("config %+v, want %+v", c, want)
	}
	out := filepath.Join(t.TempDir(), "out")
	if err := ExportHF(out, c, params, WithEOT(51)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"config.json", "model.safetensors"} {
		a, err := os.ReadFile(filepath.Join(golden, name))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s: export differs from the golden file", name)
		}
	}
	c2, again, err := ImportHF(out)
	if err != nil {
		t.Fatal(err)
	}
	if c2 != c {
		t.Fatalf("config %+v after re-import, want %+v", c2, c)
	}
	hfSameBits(t, "re-imported params", again, params)

	ck, err := LoadCheckpoint(golden)
	if err != nil {
		t.Fatal(err)
	}
	if ck.Opt != nil || ck.EOT == nil || *ck.EOT != 51 {
		t.Fatalf("golden as checkpoint: Opt %v, EOT %v", ck.Opt, ck.EOT)
	}
	hfSameBits(t, "golden via LoadCheckpoint", ck.Params, params)
}

// hfDir writes a Hugging Face directory with the given config.json object and tensors.
func hfDir(t *testing.T, cfg map[string]any, tensors []safetensors.Tensor) string {
	t.Helper()
	dir := t.TempDir()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if tensors != nil {
		hfWriteTensors(t, filepath.Join(dir, "model.safetensors"), tensors)
	}
	return dir
}

func hfWriteTensors(t *testing.T, path string, tensors []safetensors.Tensor) {
	t.Helper()
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	if err := safetensors.Write(bw, tensors, nil); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// hfConfigMap is config.json for c as ExportHF writes it, as a mutable map.
func hfConfigMap(t *testing.T, c Config) map[string]any {
	t.Helper()
	b, err := hfConfigJSON(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestHFImportVariants(t *testing.T) {
	c := hfTestConfig
	params := hfRandomSlab(c, 2)
	wte := params[:c.VocabSize*c.Embd]

	t.Run("no prefix, buffers, tied head", func(t *testing.T) {
		ts := hfTensors(c, params, "")
		mask := make([]byte, c.MaxSeqLen*c.MaxSeqLen)
		ts = append(ts,
			safetensors.Tensor{Name: "h.0.attn.bias", DType: safetensors.U8, Shape: []int{1, 1, c.MaxSeqLen, c.MaxSeqLen}, Data: mask},
			safetensors.Tensor{Name: "transformer.h.1.attn.masked_bias", DType: safetensors.F32, Shape: []int{}, Data: make([]byte, 4)},
			safetensors.FromFloat32("lm_head.weight", []int{c.VocabSize, c.Embd}, wte),
		)
		_, got, err := ImportHF(hfDir(t, hfConfigMap(t, c), ts))
		if err != nil {
			t.Fatal(err)
		}
		hfSameBits(t, "params", got, params)
	})

	t.Run("bf16 and f64", func(t *testing.T) {
		// Round params to bf16 so the conversion is exact, then store wte as BF16 and
		// wpe as F64.
		rounded := append([]float32(nil), params...)
		for i := range rounded {
			rounded[i] = math.Float32frombits(math.Float32bits(rounded[i]) &^ 0xffff)
		}
		ts := hfTensors(c, rounded, "transformer.")
		bf := make([]byte, 2*len(wte))
		for i := range wte {
			binary.LittleEndian.PutUint16(bf[2*i:], uint16(math.Float32bits(rounded[i])>>16))
		}
		ts[0] = safetensors.Tensor{Name: "transformer.wte.weight", DType: safetensors.BF16, Shape: []int{c.VocabSize, c.Embd}, Data: bf}
		wpe := rounded[len(wte) : len(wte)+c.MaxSeqLen*c.Embd]
		f64 := make([]byte, 8*len(wpe))
		for i, v := range wpe {
			binary.LittleEndian.PutUint64(f64[8*i:], math.Float64bits(float64(v)))
		}
		ts[1] = safetensors.Tensor{Name: "transformer.wpe.weight", DType: safetensors.F64, Shape: []int{c.MaxSeqLen, c.Embd}, Data: f64}
		_, got, err := ImportHF(hfDir(t, hfConfigMap(t, c), ts))
		if err != nil {
			t.Fatal(err)
		}
		for i := range got { // NaN payload bits do not survive bf16; compare values
			if got[i] != rounded[i] && !(math.IsNaN(float64(got[i])) && math.IsNaN(float64(rounded[i]))) {
				t.Fatalf("param %d = %v, want %v", i, got[i], rounded[i])
			}
		}
	})

	t.Run("minimal config", func(t *testing.T) {
		m := map[string]any{"n_layer": 2, "n_head": 2, "n_embd": 8, "n_positions": 6, "vocab_size": 11,
			"activation_function": "gelu_pytorch_tanh", "n_inner": 32}
		_, got, err := ImportHF(hfDir(t, m, hfTensors(c, params, "transformer.")))
		if err != nil {
			t.Fatal(err)
		}
		hfSameBits(t, "params", got, params)
	})
}

func TestHFImportRejects(t *testing.T) {
	c := hfTestConfig
	params := hfRandomSlab(c, 3)
	good := func() []safetensors.Tensor { return hfTensors(c, params, "transformer.") }
	with := func(key string, v any) map[string]any {
		m := hfConfigMap(t, c)
		if v == nil {
			delete(m, key)
		} else {
			m[key] = v
		}
		return m
	}
	other := append([]float32(nil), params[:c.VocabSize*c.Embd]...)
	other[5]++

	cases := []struct {
		name    string
		cfg     map[string]any
		tensors []safetensors.Tensor
		want    error
		msg     string
	}{
		{"activation", with("activation_function", "relu"), good(), ErrFormat, `activation_function = "relu"`},
		{"epsilon", with("layer_norm_epsilon", 1e-6), good(), ErrFormat, "layer_norm_epsilon = 0.000001"},
		{"n_inner", with("n_inner", 16), good(), ErrFormat, "n_inner = 16"},
		{"untied", with("tie_word_embeddings", false), good(), ErrFormat, "tie_word_embeddings"},
		{"model type", with("model_type", "bert"), good(), ErrFormat, `model_type = "bert"`},
		{"cross attention", with("add_cross_attention", true), good(), ErrFormat, "add_cross_attention"},
		{"missing n_embd", with("n_embd", nil), good(), ErrFormat, "missing n_embd"},
		{"string n_head", with("n_head", "2"), good(), ErrFormat, "n_head"},
		{"bad dims", with("n_head", 3), good(), ErrBadConfig, "config.json"},
		{"missing tensor", hfConfigMap(t, c), good()[1:], ErrFormat, `missing tensor "transformer.wte.weight"`},
		{"extra tensor", hfConfigMap(t, c),
			append(good(), safetensors.FromFloat32("transformer.h.2.ln_1.weight", []int{c.Embd}, make([]float32, c.Embd))),
			ErrFormat, `unexpected tensor "transformer.h.2.ln_1.weight"`},
		{"wrong shape", hfConfigMap(t, c), func() []safetensors.Tensor {
			ts := good()
			ts[4].Shape = []int{3 * c.Embd, c.Embd} // c_attn.weight given (out, in)
			return ts
		}(), ErrFormat, `"transformer.h.0.attn.c_attn.weight" has shape [24 8], config needs [8 24]`},
		{"duplicate", hfConfigMap(t, c),
			append(good(), safetensors.FromFloat32("ln_f.bias", []int{c.Embd}, make([]float32, c.Embd))),
			ErrFormat, `"ln_f.bias" duplicates "transformer.ln_f.bias"`},
		{"untied head", hfConfigMap(t, c),
			append(good(), safetensors.FromFloat32("lm_head.weight", []int{c.VocabSize, c.Embd}, other)),
			ErrFormat, "untied"},
		{"integer weights", hfConfigMap(t, c), func() []safetensors.Tensor {
			ts := good()
			ts[len(ts)-1] = safetensors.Tensor{Name: "transformer.ln_f.bias", DType: safetensors.I32, Shape: []int{c.Embd}, Data: make([]byte, 4*c.Embd)}
			return ts
		}(), safetensors.ErrDType, "ln_f.bias"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ImportHF(hfDir(t, tc.cfg, tc.tensors))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err %v\nwant %v containing %q", err, tc.want, tc.msg)
			}
		})
	}
}

func TestHFImportMissingWeights(t *testing.T) {
	c := hfTestConfig
	dir := hfDir(t, hfConfigMap(t, c), nil)
	if _, _, err := ImportHF(dir); !errors.Is(err, ErrFormat) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("no weights: err %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pytorch_model.bin"), []byte("PK"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ImportHF(dir); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "pytorch_model.bin") ||
		!strings.Contains(err.Error(), "safe_serialization") {
		t.Fatalf("pytorch_model.bin only: err %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ImportHF(dir); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "sharded") {
		t.Fatalf("sharded: err %v", err)
	}
	if _, _, err := ImportHF(filepath.Join(dir, "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing dir: err %v", err)
	}
}

func TestHFExportRefuses(t *testing.T) {
	c := hfTestConfig
	params := hfRandomSlab(c, 4)
	root := t.TempDir()
	dir := filepath.Join(root, "m")
	if err := ExportHF(dir, c, params); err != nil {
		t.Fatal(err)
	}
	if err := ExportHF(dir, c, params); !errors.Is(err, ErrExists) {
		t.Fatalf("second export: err %v, want ErrExists", err)
	}
	if err := ExportHF(filepath.Join(root, "short"), c, params[1:]); !errors.Is(err, ErrShape) {
		t.Fatalf("short slab: err %v, want ErrShape", err)
	}
	if err := ExportHF(filepath.Join(root, "eot"), c, params, WithEOT(c.VocabSize)); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("eot out of range: err %v, want ErrBadConfig", err)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "m" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("root holds %v, want only m (no temp dirs left)", names)
	}
}

func TestHFTranspose(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	for _, shape := range [][2]int{{1, 1}, {3, 7}, {33, 65}, {64, 32}, {100, 1}} {
		rows, cols := shape[0], shape[1]
		src := make([]float32, rows*cols)
		for i := range src {
			src[i] = rng.Float32()
		}
		dst := make([]float32, len(src))
		transpose(dst, src, rows, cols)
		for r := 0; r < rows; r++ {
			for c := 0; c < cols; c++ {
				if dst[c*rows+r] != src[r*cols+c] {
					t.Fatalf("%dx%d: (%d,%d) wrong", rows, cols, r, c)
				}
			}
		}
		back := make([]float32, len(src))
		transpose(back, dst, cols, rows)
		hfSameBits(t, "transpose twice", back, src)
	}
}
