package shard

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// prepared writes a small dataset with Prepare and returns its directory.
func prepared(t *testing.T, minShards int) (string, *byteTok) {
	t.Helper()
	in := filepath.Join(t.TempDir(), "in.txt")
	writeFile(t, in, strings.Repeat("the quick brown fox jumps over the lazy dog. ", 40))
	tok := newByteTok()
	out := t.TempDir()
	if _, err := Prepare(t.Context(), PrepareOptions{Inputs: []string{in}, Tokenizer: tok, TokenizerJSON: tok.json(), OutDir: out, MinShards: minShards}); err != nil {
		t.Fatal(err)
	}
	return out, tok
}

func TestOpenCorruptShards(t *testing.T) {
	ctx := t.Context()
	t.Run("checksum mismatch", func(t *testing.T) {
		dir, _ := prepared(t, 4)
		p := filepath.Join(dir, "corpus_train_000001.bin")
		b, _ := os.ReadFile(p)
		b[len(b)-1] ^= 1 // still a valid byte token: only the hash tells
		writeRaw(t, p, b)
		ds, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ds.LoadShard(ctx, SplitTrain, 1)
		wantErr(t, err, ErrChecksum, p)
		if _, err := ds.LoadShard(ctx, SplitTrain, 0); err != nil {
			t.Fatalf("intact shard: %v", err)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		dir, _ := prepared(t, 4)
		p := filepath.Join(dir, "corpus_val_000000.bin")
		b, _ := os.ReadFile(p)
		writeRaw(t, p, b[:len(b)-4])
		ds, _ := Open(dir)
		_, err := ds.LoadShard(ctx, SplitVal, 0)
		wantErr(t, err, ErrTruncated, p)
	})
	t.Run("wrong magic", func(t *testing.T) {
		dir, _ := prepared(t, 4)
		p := filepath.Join(dir, "corpus_train_000002.bin")
		b, _ := os.ReadFile(p)
		binary.LittleEndian.PutUint32(b, 20240521)
		writeRaw(t, p, b)
		ds, _ := Open(dir)
		_, err := ds.LoadShard(ctx, SplitTrain, 2)
		wantErr(t, err, ErrBadMagic, p)
	})
	t.Run("token >= vocab", func(t *testing.T) {
		// A manifest whose checksum matches a shard holding an id past the vocab.
		dir, _ := prepared(t, 4)
		m, err := ReadManifest(filepath.Join(dir, ManifestFile))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, m.Train[3].File)
		toks := make([]int32, m.Train[3].Tokens)
		toks[5] = 257
		sum, err := WriteShardFile(p, FormatLLMC, toks)
		if err != nil {
			t.Fatal(err)
		}
		m.Train[3].SHA256 = sum
		if err := WriteManifest(dir, m); err != nil {
			t.Fatal(err)
		}
		ds, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ds.LoadShard(ctx, SplitTrain, 3)
		wantErr(t, err, ErrBadToken, p, "257")
	})
	t.Run("token count differs from manifest", func(t *testing.T) {
		dir, _ := prepared(t, 4)
		m, _ := ReadManifest(filepath.Join(dir, ManifestFile))
		p := filepath.Join(dir, m.Train[0].File)
		sum, _ := WriteShardFile(p, FormatLLMC, []int32{1, 2, 3})
		m.Train[0].SHA256 = sum
		WriteManifest(dir, m)
		ds, _ := Open(dir)
		_, err := ds.LoadShard(ctx, SplitTrain, 0)
		wantErr(t, err, ErrBadManifest, p)
	})
}

func TestCheckTokenizer(t *testing.T) {
	dir, tok := prepared(t, 2)
	ds, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := ds.CheckTokenizer(SHA256Hex(tok.json()), tok.VocabSize()); err != nil {
		t.Fatal(err)
	}
	other := SHA256Hex([]byte("another tokenizer"))
	err = ds.CheckTokenizer(other, tok.VocabSize())
	wantErr(t, err, ErrTokenizerMismatch, dir, other, SHA256Hex(tok.json()))
	err = ds.CheckTokenizer(SHA256Hex(tok.json()), 50257)
	wantErr(t, err, ErrTokenizerMismatch, dir, "50257", "257")
}

func TestBadManifest(t *testing.T) {
	dir, _ := prepared(t, 2)
	mp := filepath.Join(dir, ManifestFile)
	orig, _ := os.ReadFile(mp)
	for name, edit := range map[string]func(m map[string]any){
		"version": func(m map[string]any) { m["version"] = 2 },
		"vocab":   func(m map[string]any) { m["tokenizer"].(map[string]any)["vocab_size"] = 0 },
		"eot":     func(m map[string]any) { m["eot"] = 999 },
		"escape":  func(m map[string]any) { shard0(m)["file"] = "../x.bin" },
		"sha":     func(m map[string]any) { shard0(m)["sha256"] = "abc" },
		"format":  func(m map[string]any) { shard0(m)["format"] = "parquet" },
		"dup": func(m map[string]any) {
			tr := m["train_shards"].([]any)
			tr[1].(map[string]any)["file"] = tr[0].(map[string]any)["file"]
		},
	} {
		var m map[string]any
		json.Unmarshal(orig, &m)
		edit(m)
		b, _ := json.Marshal(m)
		writeRaw(t, mp, b)
		_, err := Open(dir)
		t.Run(name, func(t *testing.T) { wantErr(t, err, ErrBadManifest, mp) })
	}
	writeRaw(t, mp, []byte("{not json"))
	_, err := Open(dir)
	wantErr(t, err, ErrBadManifest, mp)
}

func shard0(m map[string]any) map[string]any {
	return m["train_shards"].([]any)[0].(map[string]any)
}

func TestOpenBareLLMCDir(t *testing.T) {
	dir := t.TempDir()
	want := map[string][]int32{
		"fineweb_train_000001.bin": {1, 2, 3, 4},
		"fineweb_train_000002.bin": {5, 6},
		"fineweb_val_000000.bin":   {7, 8, 9},
	}
	for name, toks := range want {
		format := FormatLLMC
		if name == "fineweb_train_000002.bin" {
			format = FormatLLMC32
		}
		if _, err := WriteShardFile(filepath.Join(dir, name), format, toks); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, "README.md"), "not a shard")
	ds, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := ds.Manifest()
	if !m.Computed || m.EOT != -1 || m.Tokenizer.SHA256 != "" || ds.TokenizerPath() != "" {
		t.Fatalf("computed manifest %+v", m)
	}
	if !slices.Equal(m.TrainTokens(), []int64{4, 2}) || !slices.Equal(m.ValTokens(), []int64{3}) {
		t.Fatalf("tokens %v %v", m.TrainTokens(), m.ValTokens())
	}
	if m.Train[1].Format != FormatLLMC32 {
		t.Fatalf("format %s", m.Train[1].Format)
	}
	if got := append(readSplit(t, ds, SplitTrain), readSplit(t, ds, SplitVal)...); !slices.Equal(got, []int32{1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Fatalf("got %v", got)
	}
	// Nothing known to compare: passes.
	if err := ds.CheckTokenizer("ab", 5); err != nil {
		t.Fatal(err)
	}
	// With a tokenizer.json its hash is compared.
	writeFile(t, filepath.Join(dir, TokenizerFile), "{}")
	ds, _ = OpenWithOptions(dir, OpenOptions{VocabSize: 8})
	wantErr(t, ds.CheckTokenizer(SHA256Hex([]byte("[]")), 0), ErrTokenizerMismatch, dir)
	_, err = ds.LoadShard(t.Context(), SplitVal, 0)
	wantErr(t, err, ErrBadToken, "fineweb_val_000000.bin")

	// An llm.c-named file must have an llm.c header.
	writeRaw(t, filepath.Join(dir, "fineweb_train_000003.bin"), make([]byte, 2048))
	_, err = Open(dir)
	wantErr(t, err, ErrBadMagic, "fineweb_train_000003.bin")
	os.Remove(filepath.Join(dir, "fineweb_train_000003.bin"))
	b, _ := os.ReadFile(filepath.Join(dir, "fineweb_val_000000.bin"))
	writeRaw(t, filepath.Join(dir, "fineweb_val_000000.bin"), b[:len(b)-1])
	_, err = Open(dir)
	wantErr(t, err, ErrTruncated, "fineweb_val_000000.bin")
}

func TestOpenBareNanoGPTDir(t *testing.T) {
	dir := t.TempDir()
	writeRaw(t, filepath.Join(dir, "train.bin"), encode(t, FormatNanoGPT, []int32{10, 20, 30, 40, 50}))
	writeRaw(t, filepath.Join(dir, "val.bin"), encode(t, FormatNanoGPT, []int32{60, 70}))
	ds, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ds.Shards(SplitTrain)[0].Format != FormatNanoGPT {
		t.Fatal(ds.Shards(SplitTrain))
	}
	if got := readSplit(t, ds, SplitTrain); !slices.Equal(got, []int32{10, 20, 30, 40, 50}) {
		t.Fatal(got)
	}
	if got := readSplit(t, ds, SplitVal); !slices.Equal(got, []int32{60, 70}) {
		t.Fatal(got)
	}
	writeRaw(t, filepath.Join(dir, "val.bin"), []byte{1, 2, 3})
	_, err = Open(dir)
	wantErr(t, err, ErrTruncated, filepath.Join(dir, "val.bin"))
	_, err = Open(t.TempDir())
	wantErr(t, err, ErrNoShards)
	_, err = OpenWithOptions(dir, OpenOptions{Format: "bogus"})
	wantErr(t, err, ErrBadOptions)
}
