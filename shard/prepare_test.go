package shard

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestPrepareSplitAndShards(t *testing.T) {
	in := t.TempDir()
	text := strings.Repeat("abcdefghij", 100) // 1000 bytes
	writeFile(t, filepath.Join(in, "doc.txt"), text)
	out := t.TempDir()
	tok := newByteTok()
	m, err := Prepare(t.Context(), PrepareOptions{
		Inputs: []string{in}, Tokenizer: tok, TokenizerJSON: tok.json(), OutDir: out, MinShards: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	// 1001 tokens (EOT + 1000 bytes); train is int(1001*0.9) = 900, as nanoGPT.
	if got := m.TrainTokens(); !slices.Equal(got, []int64{225, 225, 225, 225}) {
		t.Fatalf("train shards %v", got)
	}
	if got := m.ValTokens(); !slices.Equal(got, []int64{101}) {
		t.Fatalf("val shards %v", got)
	}
	if m.EOT != 256 || m.Tokenizer.VocabSize != 257 || m.Tokenizer.Name != "byte" || m.Tokenizer.SHA256 != SHA256Hex(tok.json()) {
		t.Fatalf("manifest tokenizer %+v eot %d", m.Tokenizer, m.EOT)
	}
	for _, s := range append(slices.Clone(m.Train), m.Val...) {
		if s.Format != FormatLLMC {
			t.Fatalf("format %s", s.Format)
		}
	}
	if m.Train[0].File != "corpus_train_000000.bin" || m.Val[0].File != "corpus_val_000000.bin" {
		t.Fatalf("names %s %s", m.Train[0].File, m.Val[0].File)
	}
	b, err := os.ReadFile(filepath.Join(out, TokenizerFile))
	if err != nil || string(b) != string(tok.json()) {
		t.Fatalf("tokenizer.json: %q %v", b, err)
	}
	ds, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	all := append(readSplit(t, ds, SplitTrain), readSplit(t, ds, SplitVal)...)
	if want := expectTokens(tok, text); !slices.Equal(all, want) {
		t.Fatalf("token stream differs: got %d tokens want %d", len(all), len(want))
	}
	if err := ds.CheckTokenizer(SHA256Hex(tok.json()), 257); err != nil {
		t.Fatal(err)
	}
	if ds.TokenizerPath() != filepath.Join(out, TokenizerFile) {
		t.Fatal(ds.TokenizerPath())
	}
	// no temporary files are left behind
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Fatalf("left %s", e.Name())
		}
	}
}

// TestPrepareFileModes checks that every file Prepare writes is mode 0644, whatever
// the umask: workers of another uid must be able to read the dataset.
func TestPrepareFileModes(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	in := t.TempDir()
	writeFile(t, filepath.Join(in, "doc.txt"), strings.Repeat("abcdefghij", 100))
	out := t.TempDir()
	tok := newByteTok()
	m, err := Prepare(t.Context(), PrepareOptions{
		Inputs: []string{in}, Tokenizer: tok, TokenizerJSON: tok.json(), OutDir: out, MinShards: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	files := []string{ManifestFile, TokenizerFile}
	for _, s := range append(slices.Clone(m.Train), m.Val...) {
		files = append(files, s.File)
	}
	if len(files) != 5 {
		t.Fatalf("files %v, want the manifest, the tokenizer and 3 shards", files)
	}
	for _, f := range files {
		st, err := os.Stat(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != 0o644 {
			t.Errorf("%s: mode %v, want -rw-r--r--", f, got)
		}
	}
}

func TestPrepareShardTokensAndNoVal(t *testing.T) {
	in := filepath.Join(t.TempDir(), "a.txt")
	writeFile(t, in, strings.Repeat("x", 999))
	tok := newByteTok()
	m, err := Prepare(t.Context(), PrepareOptions{
		Inputs: []string{in}, Tokenizer: tok, TokenizerJSON: tok.json(), OutDir: t.TempDir(),
		MinShards: 2, ShardTokens: 300, ValFraction: NoValidation,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.TrainTokens(); !slices.Equal(got, []int64{250, 250, 250, 250}) || len(m.Val) != 0 {
		t.Fatalf("train %v val %v", got, m.ValTokens())
	}
}

func TestPrepareDocumentsAndOrder(t *testing.T) {
	in := t.TempDir()
	writeFile(t, filepath.Join(in, "b", "c.txt"), "CCC")
	writeFile(t, filepath.Join(in, "a.md"), "AA")
	writeFile(t, filepath.Join(in, "z.jsonl"), "{\"text\":\"one\",\"id\":1}\n\n  {\"text\": \"two\"}\r\n{\"text\":\"\"}\n{\"text\":\"three\"}")
	writeFile(t, filepath.Join(in, ".hidden.txt"), "HIDDEN")
	writeFile(t, filepath.Join(in, ".git", "x.txt"), "HIDDEN")
	writeFile(t, filepath.Join(in, "empty.txt"), "")
	extra := filepath.Join(t.TempDir(), "extra.txt")
	writeFile(t, extra, "EXTRA")
	out := filepath.Join(in, "prepared") // inside the input: must be skipped
	tok := newByteTok()
	opts := PrepareOptions{
		Inputs: []string{extra, in, extra}, Tokenizer: tok, TokenizerJSON: tok.json(), OutDir: out,
		MinShards: 1, ValFraction: NoValidation,
	}
	if _, err := Prepare(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	ds, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	want := expectTokens(tok, "EXTRA", "AA", "CCC", "one", "two", "three")
	if got := readSplit(t, ds, SplitTrain); !slices.Equal(got, want) {
		t.Fatalf("got %q want %q", tok.Decode(toInts(got)), tok.Decode(toInts(want)))
	}
	// Preparing again over the same inputs must not read its own output.
	opts.Overwrite = true
	if _, err := Prepare(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	if got := readSplit(t, ds, SplitTrain); !slices.Equal(got, want) {
		t.Fatal("second prepare read its own output")
	}
}

func toInts(v []int32) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}

func TestPrepareDeterministic(t *testing.T) {
	in := t.TempDir()
	var lines []string
	for i := range 3000 {
		lines = append(lines, `{"text":"document number `+strings.Repeat("y", i%37)+`"}`)
	}
	writeFile(t, filepath.Join(in, "docs.jsonl"), strings.Join(lines, "\n"))
	writeFile(t, filepath.Join(in, "more.txt"), strings.Repeat("more text ", 500))
	tok := newByteTok()
	var manifests [][]byte
	var shards [][]byte
	for _, workers := range []int{1, 7} {
		out := t.TempDir()
		if _, err := Prepare(t.Context(), PrepareOptions{Inputs: []string{in}, Tokenizer: tok, TokenizerJSON: tok.json(), OutDir: out, Workers: workers}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(out, ManifestFile))
		if err != nil {
			t.Fatal(err)
		}
		manifests = append(manifests, b)
		s, _ := os.ReadFile(filepath.Join(out, "corpus_train_000003.bin"))
		shards = append(shards, s)
	}
	if string(manifests[0]) != string(manifests[1]) || string(shards[0]) != string(shards[1]) {
		t.Fatal("output depends on the number of workers")
	}
}

func TestPrepareWideVocab(t *testing.T) {
	in := filepath.Join(t.TempDir(), "a.txt")
	writeFile(t, in, strings.Repeat("hello world ", 20))
	tok := newWideTok()
	out := t.TempDir()
	m, err := Prepare(t.Context(), PrepareOptions{Inputs: []string{in}, Tokenizer: tok, TokenizerJSON: tok.json(), OutDir: out, MinShards: 2})
	if err != nil {
		t.Fatal(err)
	}
	if m.Train[0].Format != FormatLLMC32 {
		t.Fatalf("format %s for vocab %d", m.Train[0].Format, tok.vocab)
	}
	ds, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	got := append(readSplit(t, ds, SplitTrain), readSplit(t, ds, SplitVal)...)
	if want := expectTokens(tok, strings.Repeat("hello world ", 20)); !slices.Equal(got, want) {
		t.Fatal("uint32 round trip differs")
	}
}

func TestPrepareErrors(t *testing.T) {
	in := t.TempDir()
	writeFile(t, filepath.Join(in, "ok.txt"), strings.Repeat("text ", 100))
	tok := newByteTok()
	base := func() PrepareOptions {
		return PrepareOptions{Inputs: []string{in}, Tokenizer: tok, TokenizerJSON: tok.json(), OutDir: t.TempDir()}
	}

	t.Run("bad jsonl line", func(t *testing.T) {
		o := base()
		p := filepath.Join(t.TempDir(), "bad.jsonl")
		writeFile(t, p, "{\"text\":\"a\"}\n{\"text\":\"b\"}\n{\"text\": oops}\n")
		o.Inputs = []string{p}
		_, err := Prepare(t.Context(), o)
		wantErr(t, err, ErrBadDocument, p+":3")
		if _, serr := os.Stat(filepath.Join(o.OutDir, ManifestFile)); serr == nil {
			t.Fatal("manifest written after an error")
		}
	})
	t.Run("jsonl without text", func(t *testing.T) {
		o := base()
		p := filepath.Join(t.TempDir(), "notext.jsonl")
		writeFile(t, p, "{\"text\":\"a\"}\n{\"body\":\"b\"}\n")
		o.Inputs = []string{p}
		_, err := Prepare(t.Context(), o)
		wantErr(t, err, ErrBadDocument, p+":2", "text")
	})
	t.Run("jsonl text not a string", func(t *testing.T) {
		o := base()
		p := filepath.Join(t.TempDir(), "num.jsonl")
		writeFile(t, p, "[1,2]\n")
		o.Inputs = []string{p}
		_, err := Prepare(t.Context(), o)
		wantErr(t, err, ErrBadDocument, p+":1")
	})
	t.Run("tokenizer returns bad id", func(t *testing.T) {
		o := base()
		o.Tokenizer = &byteTok{vocab: 257, eot: 256, bad: true}
		_, err := Prepare(t.Context(), o)
		wantErr(t, err, ErrBadToken, filepath.Join(in, "ok.txt"))
	})
	t.Run("too few tokens for shards", func(t *testing.T) {
		o := base()
		o.MinShards = 10000
		_, err := Prepare(t.Context(), o)
		wantErr(t, err, ErrTooFewTokens, "MinShards=10000")
	})
	t.Run("cancelled", func(t *testing.T) {
		o := base()
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := Prepare(ctx, o)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
		if _, serr := os.Stat(filepath.Join(o.OutDir, ManifestFile)); serr == nil {
			t.Fatal("manifest written after cancel")
		}
	})
	t.Run("options", func(t *testing.T) {
		for name, mod := range map[string]func(*PrepareOptions){
			"ValFraction":   func(o *PrepareOptions) { o.ValFraction = 1.5 },
			"Name":          func(o *PrepareOptions) { o.Name = "a/b" },
			"ShardTokens":   func(o *PrepareOptions) { o.ShardTokens = -1 },
			"MinShards":     func(o *PrepareOptions) { o.MinShards = -2 },
			"TokenizerJSON": func(o *PrepareOptions) { o.TokenizerJSON = nil },
			"Inputs":        func(o *PrepareOptions) { o.Inputs = nil },
		} {
			o := base()
			mod(&o)
			_, err := Prepare(t.Context(), o)
			wantErr(t, err, ErrBadOptions, name)
		}
	})
	t.Run("existing output", func(t *testing.T) {
		o := base()
		o.MinShards = 4
		if _, err := Prepare(t.Context(), o); err != nil {
			t.Fatal(err)
		}
		_, err := Prepare(t.Context(), o)
		wantErr(t, err, fs.ErrExist, o.OutDir)
		// Overwrite with fewer shards removes the stale ones.
		o.Overwrite, o.MinShards = true, 2
		if _, err := Prepare(t.Context(), o); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(o.OutDir, "corpus_train_000003.bin")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("stale shard left: %v", err)
		}
		ds, err := OpenWithOptions(o.OutDir, OpenOptions{})
		if err != nil || len(ds.Shards(SplitTrain)) != 2 {
			t.Fatalf("%v", err)
		}
		os.Remove(filepath.Join(o.OutDir, ManifestFile))
		ds, err = Open(o.OutDir) // the bare directory sees only the new shards
		if err != nil || len(ds.Shards(SplitTrain)) != 2 {
			t.Fatalf("%v", err)
		}
	})
}
