package shard

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// byteTok is a fake tokenizer: every byte is its own id, plus an EOT id. With
// offset > 0 byte b is id offset+b, for vocabularies wider than uint16.
type byteTok struct {
	vocab  int
	eot    int
	offset int
	bad    bool // Encode returns an id == vocab, to test validation
}

func newByteTok() *byteTok { return &byteTok{vocab: 257, eot: 256} }

// newWideTok has 70000 ids, so shards are uint32.
func newWideTok() *byteTok { return &byteTok{vocab: 70000, eot: 69999, offset: 65536} }

func (b *byteTok) Name() string   { return "byte" }
func (b *byteTok) VocabSize() int { return b.vocab }
func (b *byteTok) EOT() int       { return b.eot }
func (b *byteTok) Mask() int      { return -1 }
func (b *byteTok) Encode(text string) []int {
	ids := make([]int, len(text))
	for i := 0; i < len(text); i++ {
		ids[i] = b.offset + int(text[i])
	}
	if b.bad && len(ids) > 0 {
		ids[len(ids)-1] = b.vocab
	}
	return ids
}
func (b *byteTok) Decode(ids []int) string {
	out := make([]byte, 0, len(ids))
	for _, id := range ids {
		if id != b.eot {
			out = append(out, byte(id-b.offset))
		}
	}
	return string(out)
}

func (b *byteTok) json() []byte {
	out, _ := json.Marshal(map[string]any{"kind": "byte", "vocab": b.vocab, "offset": b.offset})
	return out
}

// expectTokens is EOT before each document, as Prepare writes.
func expectTokens(tok *byteTok, docs ...string) []int32 {
	var out []int32
	for _, d := range docs {
		out = append(out, int32(tok.eot))
		for _, id := range tok.Encode(d) {
			out = append(out, int32(id))
		}
	}
	return out
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// wantErr checks that err is sentinel and that its message names every string in
// names (file paths, usually).
func wantErr(t *testing.T, err, sentinel error, names ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", sentinel)
	}
	if !errors.Is(err, sentinel) {
		t.Fatalf("got error %q, want one wrapping %q", err, sentinel)
	}
	for _, n := range names {
		if !strings.Contains(err.Error(), n) {
			t.Fatalf("error %q does not name %q", err, n)
		}
	}
	t.Logf("got expected error: %v", err)
}

// readSplit reads a whole split of a dataset as one sequence.
func readSplit(t *testing.T, ds *Dataset, split Split) []int32 {
	t.Helper()
	var out []int32
	for i := range ds.Shards(split) {
		tok, err := ds.LoadShard(t.Context(), split, i)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tok.Int32()...)
	}
	return out
}
