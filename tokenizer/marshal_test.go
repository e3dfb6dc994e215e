package tokenizer

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func allKinds(t *testing.T) []Tokenizer {
	t.Helper()
	char, err := NewChar(corpusPrefix(t, 50_000))
	if err != nil {
		t.Fatal(err)
	}
	return []Tokenizer{NewByte(), char, smallBPE(t), gpt2(t)}
}

func TestMarshalRoundTrip(t *testing.T) {
	sample := corpusPrefix(t, 5_000) + " \xff\xfe"
	for _, tok := range allKinds(t) {
		data, err := Marshal(tok)
		if err != nil {
			t.Fatalf("%s: %v", tok.Name(), err)
		}
		again, err := Marshal(tok)
		if err != nil || !bytes.Equal(data, again) {
			t.Fatalf("%s: Marshal is not stable", tok.Name())
		}
		back, err := Unmarshal(data)
		if err != nil {
			t.Fatalf("%s: Unmarshal: %v", tok.Name(), err)
		}
		redone, err := Marshal(back)
		if err != nil || !bytes.Equal(data, redone) {
			t.Fatalf("%s: Marshal(Unmarshal(data)) != data", tok.Name())
		}
		if back.Name() != tok.Name() || back.VocabSize() != tok.VocabSize() || back.EOT() != tok.EOT() || back.Mask() != tok.Mask() {
			t.Fatalf("%s: Unmarshal changed the vocabulary", tok.Name())
		}
		if !slices.Equal(back.Encode(sample), tok.Encode(sample)) {
			t.Fatalf("%s: Unmarshal changed the encoding", tok.Name())
		}
		h1, err1 := Hash(tok)
		h2, err2 := Hash(back)
		if err1 != nil || err2 != nil || h1 != h2 || len(h1) != 64 {
			t.Fatalf("%s: hashes %q %q (%v %v)", tok.Name(), h1, h2, err1, err2)
		}
	}
}

func TestMarshalGolden(t *testing.T) {
	char, err := NewChar("b&a\n")
	if err != nil {
		t.Fatal(err)
	}
	bpe, err := TrainBPE("aaabdaaabac", 261)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		tok  Tokenizer
		want string
	}{
		{NewByte(), `{"kind":"byte","version":1,"vocab_size":258}` + "\n"},
		{gpt2(t), `{"kind":"gpt2","version":1}` + "\n"},
		{char, `{"kind":"char","version":1,"vocab_size":6,"chars":"\n&ab"}` + "\n"},
		{bpe, `{"kind":"bpe","version":1,"vocab_size":261,"pattern":"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+","merges":[[97,97],[97,98],[256,257]]}` + "\n"},
	}
	for _, c := range cases {
		got, err := Marshal(c.tok)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("Marshal(%s) =\n%s\nwant\n%s", c.tok.Name(), got, c.want)
		}
	}
}

type otherTokenizer struct{ Byte }

func TestMarshalUnsupported(t *testing.T) {
	if _, err := Marshal(otherTokenizer{}); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("err = %v, want errors.ErrUnsupported", err)
	}
}

func TestUnmarshalCorrupt(t *testing.T) {
	pattern := strings.ReplaceAll(GPT2SplitPattern, `\`, `\\`)
	bpeHead := `{"kind":"bpe","version":1,"pattern":"` + pattern + `",`
	cases := map[string]string{
		"empty":              ``,
		"not json":           `hello`,
		"truncated":          `{"kind":"byte","version":1,"vocab_s`,
		"null":               `null`,
		"array":              `[1,2]`,
		"no version":         `{"kind":"byte","vocab_size":258}`,
		"future version":     `{"kind":"byte","version":2,"vocab_size":258}`,
		"unknown kind":       `{"kind":"wordpiece","version":1}`,
		"unknown field":      `{"kind":"byte","version":1,"vocab_size":258,"extra":1}`,
		"trailing data":      `{"kind":"byte","version":1,"vocab_size":258}{}`,
		"byte wrong size":    `{"kind":"byte","version":1,"vocab_size":300}`,
		"byte with merges":   `{"kind":"byte","version":1,"vocab_size":258,"merges":[[1,2]]}`,
		"gpt2 wrong size":    `{"kind":"gpt2","version":1,"vocab_size":5}`,
		"char missing chars": `{"kind":"char","version":1,"vocab_size":2}`,
		"char empty":         `{"kind":"char","version":1,"vocab_size":2,"chars":""}`,
		"char unsorted":      `{"kind":"char","version":1,"vocab_size":4,"chars":"ba"}`,
		"char duplicate":     `{"kind":"char","version":1,"vocab_size":4,"chars":"aa"}`,
		"char wrong size":    `{"kind":"char","version":1,"vocab_size":9,"chars":"ab"}`,
		"bpe wrong pattern":  `{"kind":"bpe","version":1,"vocab_size":259,"pattern":"\\w+","merges":[[1,2]]}`,
		"bpe no merges":      bpeHead + `"vocab_size":258}`,
		"bpe wrong size":     bpeHead + `"vocab_size":300,"merges":[[97,98]]}`,
		"bpe forward ref":    bpeHead + `"vocab_size":259,"merges":[[97,256]]}`,
		"bpe negative":       bpeHead + `"vocab_size":259,"merges":[[-1,97]]}`,
		"bpe triple":         bpeHead + `"vocab_size":259,"merges":[[97,98,99]]}`,
		"bpe single":         bpeHead + `"vocab_size":259,"merges":[[97]]}`,
		"bpe float":          bpeHead + `"vocab_size":259,"merges":[[97.5,98]]}`,
		"bpe huge id":        bpeHead + `"vocab_size":259,"merges":[[99999999999999999999,98]]}`,
		"bpe duplicate":      bpeHead + `"vocab_size":260,"merges":[[97,98],[97,98]]}`,
		"bpe too large":      bpeHead + `"vocab_size":99999999,"merges":[[97,98]]}`,
	}
	// Sanity: the bpe prefix itself forms a valid file.
	if _, err := Unmarshal([]byte(bpeHead + `"vocab_size":259,"merges":[[97,98]]}`)); err != nil {
		t.Fatalf("valid bpe file refused: %v", err)
	}
	for name, data := range cases {
		tok, err := Unmarshal([]byte(data))
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Unmarshal = %v, %v; want ErrCorrupt", name, tok, err)
		}
	}
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	for _, tok := range allKinds(t) {
		path := filepath.Join(dir, tok.Name()+".json")
		if err := Save(tok, path); err != nil {
			t.Fatal(err)
		}
		// Saving again replaces the file atomically.
		if err := Save(tok, path); err != nil {
			t.Fatal(err)
		}
		back, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := Hash(tok)
		got, _ := Hash(back)
		if got != want {
			t.Fatalf("%s: loaded tokenizer differs", tok.Name())
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 4 {
		t.Fatalf("directory holds %d entries, want 4 (no temporary files left)", len(entries))
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.json")
	if err := os.WriteFile(corrupt, []byte(`{"kind":"bpe","version":1,"merges":[[1`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(corrupt)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), corrupt) {
		t.Fatalf("Load(corrupt) err = %v, want ErrCorrupt naming the file", err)
	}
	missing := filepath.Join(dir, "missing.json")
	_, err = Load(missing)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("Load(missing) err = %v, want ErrNotExist naming the file", err)
	}
	noDir := filepath.Join(dir, "no", "such", "dir", "tok.json")
	if err := Save(NewByte(), noDir); err == nil || !strings.Contains(err.Error(), noDir) {
		t.Fatalf("Save into a missing directory: err = %v, want an error naming the path", err)
	}
}
