package model

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// generation_config.json and config.json agree on the EOT id, in checkpoints and
// exports alike.
func TestGenerationConfig(t *testing.T) {
	ck := ckTest(t)
	dir := filepath.Join(t.TempDir(), "ck")
	ckSave(t, dir, ck)
	exp := filepath.Join(t.TempDir(), "exp")
	if err := ExportHF(exp, ck.Config, ck.Params, WithEOT(*ck.EOT), WithTokenizerJSON(ck.Tokenizer), WithHFTokenizer(ck.HFTokenizer)); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, exp} {
		var gen map[string]any
		b, err := os.ReadFile(filepath.Join(d, "generation_config.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &gen); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"bos_token_id": 10.0, "eos_token_id": 10.0, "max_length": float64(ck.Config.MaxSeqLen)}
		if len(gen) != len(want) {
			t.Errorf("%s: generation_config.json = %v, want %v", d, gen, want)
		}
		for k, v := range want {
			if gen[k] != v {
				t.Errorf("%s: generation_config.json %s = %v, want %v", d, k, gen[k], v)
			}
		}
	}
	for _, name := range []string{"config.json", "generation_config.json", "ringtrain_tokenizer.json", "tokenizer.json", "merges.txt"} {
		a, _ := os.ReadFile(filepath.Join(dir, name))
		b, _ := os.ReadFile(filepath.Join(exp, name))
		if len(a) == 0 || string(a) != string(b) {
			t.Errorf("%s differs between the checkpoint and the export", name)
		}
	}
}

// A checkpoint an older ringtrain wrote keeps ringtrain's tokenizer schema in
// tokenizer.json; it loads as the checkpoint's tokenizer.
func TestCheckpointLegacyTokenizerJSON(t *testing.T) {
	ck := ckTest(t)
	ck.Tokenizer, ck.HFTokenizer = nil, nil
	dir := filepath.Join(t.TempDir(), "old")
	ckSave(t, dir, ck)
	legacy := []byte(`{"kind":"byte","version":1,"vocab_size":258}` + "\n")
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), legacy, 0o644); err != nil {
		t.Fatal(err)
	}
	sums, err := os.OpenFile(filepath.Join(dir, "SHA256SUMS"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	sum, _ := fileSHA256(filepath.Join(dir, "tokenizer.json"))
	if _, err := sums.WriteString(hex.EncodeToString(sum) + "  tokenizer.json\n"); err != nil {
		t.Fatal(err)
	}
	sums.Close()
	got, err := LoadCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Tokenizer) != string(legacy) || got.HFTokenizer != nil {
		t.Fatalf("tokenizer %q, hugging face files %v; want the legacy tokenizer.json and none", got.Tokenizer, got.HFTokenizer)
	}
}

// A plain Hugging Face directory with only the library's tokenizer.json hands it over
// as both the tokenizer and a Hugging Face file.
func TestPlainHFTokenizerJSON(t *testing.T) {
	c := hfTestConfig
	dir := filepath.Join(t.TempDir(), "hub")
	hf := []byte(`{"version": "1.0", "model": {"type": "BPE"}}`)
	if err := ExportHF(dir, c, hfRandomSlab(c, 3), WithHFTokenizer(map[string][]byte{"tokenizer.json": hf})); err != nil {
		t.Fatal(err)
	}
	ck, err := LoadCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	if string(ck.Tokenizer) != string(hf) || string(ck.HFTokenizer["tokenizer.json"]) != string(hf) {
		t.Fatalf("tokenizer %q, hugging face files %v", ck.Tokenizer, ck.HFTokenizer)
	}
	if err := ExportHF(filepath.Join(t.TempDir(), "bad"), c, hfRandomSlab(c, 3), WithHFTokenizer(map[string][]byte{"../x.json": hf})); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), `"../x.json"`) {
		t.Fatalf("unknown tokenizer file name: err %v", err)
	}
}
