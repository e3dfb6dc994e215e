package shard

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sftRows writes n prompt/completion rows "q<i>:" -> "a<i>" (the byte tokenizer makes
// them 3-5 + 2-4 tokens) and returns the file.
func sftRows(t *testing.T, dir string, n int, extra ...string) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "{\"prompt\":\"q%d:\",\"completion\":\"a%d\"}\n\n", i, i)
	}
	for _, e := range extra {
		b.WriteString(e + "\n")
	}
	p := filepath.Join(dir, "rows.jsonl")
	writeFile(t, p, b.String())
	return p
}

func prepareSFT(t *testing.T, o SFTOptions) (*Manifest, string) {
	t.Helper()
	tok := newByteTok()
	o.Tokenizer, o.TokenizerJSON = tok, tok.json()
	if o.OutDir == "" {
		o.OutDir = t.TempDir()
	}
	m, err := PrepareSFT(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	return m, o.OutDir
}

// TestPrepareSFTRowsAndMasks checks the layout of an SFT dataset: one example per row,
// padded with EOT, the mask training the completion and its EOT only, the row counts,
// the validation rule and the round-robin shards; and that the loader's targets are -1
// exactly where the mask does not train.
func TestPrepareSFTRowsAndMasks(t *testing.T) {
	in := t.TempDir()
	const T = 10
	m, out := prepareSFT(t, SFTOptions{Inputs: []string{sftRows(t, in, 40)}, SeqLen: T, MinShards: 3, ValFraction: 0.25})
	if m.SFT == nil || m.SFT.RowTokens != T+1 || m.SFT.Template != "plain" || m.SFT.Examples != 40 || m.SFT.Skipped != 0 {
		t.Fatalf("sft section %+v", m.SFT)
	}
	// Every 4th example (3, 7, ...) is validation: 10; 30 train over 3 shards.
	if got := m.TrainTokens(); len(got) != 3 || got[0] != 10*(T+1) || got[1] != 10*(T+1) {
		t.Fatalf("train shards %v", got)
	}
	if got := m.ValTokens(); len(got) != 1 || got[0] != 10*(T+1) {
		t.Fatalf("val shards %v", got)
	}
	ds, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	// Train shard 0 holds train examples 0, 3, 6, ... = rows q0, q4, q8 (q3 is val).
	tok, err := ds.LoadShard(t.Context(), SplitTrain, 0)
	if err != nil {
		t.Fatal(err)
	}
	row := tok.Int32()[T+1 : 2*(T+1)] // second row: q4
	want := append(expectIDs("q4:a4"), 256, 256, 256, 256, 256, 256)
	for i := range row {
		if row[i] != want[i] {
			t.Fatalf("row q4 = %v, want %v", row, want)
		}
	}
	mask, err := os.ReadFile(filepath.Join(out, m.Train[0].Mask.File))
	if err != nil {
		t.Fatal(err)
	}
	// "q4:" untrained, "a4" and EOT trained, padding untrained.
	if got := fmt.Sprint(mask[T+1 : 2*(T+1)]); got != "[0 0 0 1 1 1 0 0 0 0 0]" {
		t.Fatalf("mask of row q4 = %s", got)
	}
	sampler, err := NewExampleSampler(m.TrainTokens(), 7, 3, 2, T)
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLoader(ds, sampler, LoaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in32, tg := make([]int32, 2*T), make([]int32, 2*T)
	for step := int64(0); step < 12; step++ {
		total := 0
		for s := range 3 {
			if err := l.Batch(t.Context(), s, step, in32, tg); err != nil {
				t.Fatal(err)
			}
			for i, v := range tg {
				if v >= 0 {
					total++
					// A trained target is an answer byte ('a' or a digit after it) or EOT.
					if v != 256 && v != 'a' && (v < '0' || v > '9') {
						t.Fatalf("step %d stream %d: trained target %d at %d", step, s, v, i)
					}
				}
			}
		}
		n, err := l.TrainedTargets(t.Context(), step)
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(total) {
			t.Fatalf("step %d: TrainedTargets %d, the batches train %d", step, n, total)
		}
	}
	// Validation reads whole example rows in order.
	val, err := l.Val(0)
	if err != nil {
		t.Fatal(err)
	}
	if val.Len() != 5 {
		t.Fatalf("%d val batches, want 5", val.Len())
	}
	if err := val.Batch(t.Context(), 0, in32, tg); err != nil {
		t.Fatal(err)
	}
	if got := string(bytesOf(in32[:5])); got != "q3:a3" {
		t.Fatalf("first val row starts %q", got)
	}
}

func expectIDs(s string) []int32 {
	out := make([]int32, len(s))
	for i := range s {
		out[i] = int32(s[i])
	}
	return out
}

func bytesOf(ids []int32) []byte {
	b := make([]byte, len(ids))
	for i, v := range ids {
		b[i] = byte(v)
	}
	return b
}

// TestPrepareSFTOverflow checks both rules for an example longer than a row, and the
// counts they report.
func TestPrepareSFTOverflow(t *testing.T) {
	long := `{"prompt":"long prompt:","completion":"yes"}` // 12 + 3 + EOT tokens
	allPrompt := `{"prompt":"0123456789012345","completion":"x"}`
	for _, tt := range []struct {
		rule               string
		examples, cut, out int64
	}{
		{OverflowSkip, 8, 0, 2},
		{OverflowTruncate, 9, 2, 1}, // the long one keeps trained tokens; the other is cut to its prompt
	} {
		in := t.TempDir()
		m, _ := prepareSFT(t, SFTOptions{Inputs: []string{sftRows(t, in, 8, long, allPrompt)}, SeqLen: 12, MinShards: 2,
			Overflow: tt.rule, ValFraction: NoValidation})
		if m.SFT.Examples != tt.examples || m.SFT.Truncated != tt.cut || m.SFT.Skipped != tt.out || m.SFT.Overflow != tt.rule {
			t.Errorf("%s: %+v, want %d examples, %d truncated, %d skipped", tt.rule, m.SFT, tt.examples, tt.cut, tt.out)
		}
	}
}

func TestPrepareSFTErrors(t *testing.T) {
	in := t.TempDir()
	bad := sftRows(t, in, 4, `{"text":"plain"}`)
	tok := newByteTok()
	_, err := PrepareSFT(t.Context(), SFTOptions{Inputs: []string{bad}, Tokenizer: tok, TokenizerJSON: tok.json(), OutDir: t.TempDir(), SeqLen: 16, MinShards: 1})
	wantErr(t, err, ErrBadDocument, bad+":9")
	good := filepath.Join(t.TempDir(), "ok.jsonl")
	writeFile(t, good, `{"prompt":"a","completion":"b"}`+"\n")
	_, err = PrepareSFT(t.Context(), SFTOptions{Inputs: []string{good}, Tokenizer: tok, TokenizerJSON: tok.json(), OutDir: t.TempDir(), SeqLen: 16, MinShards: 4, ValFraction: NoValidation})
	wantErr(t, err, ErrTooFewTokens)
	for _, o := range []SFTOptions{
		{SeqLen: 0},
		{SeqLen: 8, Overflow: "wrap"},
		{SeqLen: 8, Template: "chatml"},
	} {
		o.Inputs, o.Tokenizer, o.TokenizerJSON, o.OutDir = []string{good}, tok, tok.json(), t.TempDir()
		if _, err := PrepareSFT(t.Context(), o); !errors.Is(err, ErrBadOptions) {
			t.Errorf("%+v: %v, want ErrBadOptions", o, err)
		}
	}
}

// TestSFTSidecarsChecked checks that a corrupted sidecar is refused by its checksum, and
// that a plain-text sampler cannot read an SFT dataset.
func TestSFTSidecarsChecked(t *testing.T) {
	in := t.TempDir()
	m, out := prepareSFT(t, SFTOptions{Inputs: []string{sftRows(t, in, 8)}, SeqLen: 10, MinShards: 2, ValFraction: NoValidation})
	ds, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewLoader(ds, mustSampler(t, NewSampler, m, 10), LoaderOptions{}); !errors.Is(err, ErrSamplerMismatch) {
		t.Fatalf("text sampler on an SFT dataset: %v", err)
	}
	if _, err := NewLoader(ds, mustSampler(t, NewExampleSampler, m, 9), LoaderOptions{}); !errors.Is(err, ErrSamplerMismatch) {
		t.Fatalf("example sampler of another T: %v", err)
	}
	rows := filepath.Join(out, m.Train[1].Rows.File)
	b, _ := os.ReadFile(rows)
	b[0]++
	if err := os.WriteFile(rows, b, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := NewLoader(ds, mustSampler(t, NewExampleSampler, m, 10), LoaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.TrainedTargets(context.Background(), 0)
	wantErr(t, err, ErrChecksum, rows)
	in32 := make([]int32, 10)
	err = l.Batch(context.Background(), 0, 0, in32, make([]int32, 10))
	wantErr(t, err, ErrChecksum, rows)
}

func mustSampler(t *testing.T, mk func([]int64, uint64, int, int, int) (*Sampler, error), m *Manifest, T int) *Sampler {
	t.Helper()
	s, err := mk(m.TrainTokens(), 1, 2, 1, T)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestExampleSamplerEpochs checks that an example sampler visits every example of a
// stream exactly once per epoch, rows never overlapping.
func TestExampleSamplerEpochs(t *testing.T) {
	const T = 4
	tokens := []int64{5 * (T + 1), 7 * (T + 1), 3 * (T + 1)}
	s, err := NewExampleSampler(tokens, 3, 2, 2, T)
	if err != nil {
		t.Fatal(err)
	}
	// Stream 0 owns shards 0 and 2 (8 rows), stream 1 shard 1 (7 rows): 3 steps.
	if s.StepsPerEpoch() != 3 || s.StreamRows(0) != 8 || s.StreamRows(1) != 7 {
		t.Fatalf("steps %d rows %d %d", s.StepsPerEpoch(), s.StreamRows(0), s.StreamRows(1))
	}
	for epoch := int64(0); epoch < 2; epoch++ {
		seen := map[[2]int64]bool{}
		for k := range s.StepsPerEpoch() {
			for _, w := range s.Windows(0, epoch*s.StepsPerEpoch()+k) {
				if w.Start%(T+1) != 0 || w.Len() != T+1 {
					t.Fatalf("window %+v is not a whole example row", w)
				}
				key := [2]int64{int64(w.Shard), w.Start}
				if seen[key] {
					t.Fatalf("epoch %d: row %v read twice", epoch, key)
				}
				seen[key] = true
			}
		}
		if len(seen) != 6 {
			t.Fatalf("epoch %d: %d rows read, want 6", epoch, len(seen))
		}
	}
}

// TestManifestSFTValidate checks the manifest's rules for SFT sidecars.
func TestManifestSFTValidate(t *testing.T) {
	in := t.TempDir()
	m, _ := prepareSFT(t, SFTOptions{Inputs: []string{sftRows(t, in, 4)}, SeqLen: 10, MinShards: 2, ValFraction: NoValidation})
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, breakIt := range map[string]func(m *Manifest){
		"no mask":          func(m *Manifest) { m.Train[0].Mask = nil },
		"partial row":      func(m *Manifest) { m.Train[0].Tokens-- },
		"bad overflow":     func(m *Manifest) { m.SFT.Overflow = "wrap" },
		"sidecar twice":    func(m *Manifest) { m.Train[1].Rows = m.Train[0].Rows },
		"plain with masks": func(m *Manifest) { m.SFT = nil },
	} {
		c := *m
		c.SFT = new(SFTInfo)
		*c.SFT = *m.SFT
		c.Train = append([]ShardInfo(nil), m.Train...)
		breakIt(&c)
		if err := c.Validate(); !errors.Is(err, ErrBadManifest) {
			t.Errorf("%s: %v, want ErrBadManifest", name, err)
		}
	}
}
