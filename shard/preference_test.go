package shard

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPreparePreferencePairs checks the layout of a preference dataset: each pair is
// two adjacent rows, chosen then rejected, with masks over the answers; a pair whose
// one side does not fit is left out whole; shards hold whole pairs.
func TestPreparePreferencePairs(t *testing.T) {
	in := t.TempDir()
	var b strings.Builder
	for i := range 12 {
		fmt.Fprintf(&b, "{\"prompt\":\"q%d:\",\"chosen\":\"g%d\",\"rejected\":\"b%d\"}\n", i, i, i)
	}
	// The rejected answer does not fit a row: the pair is skipped (two rows).
	b.WriteString(`{"prompt":"q:","chosen":"g","rejected":"` + strings.Repeat("x", 40) + `"}` + "\n")
	p := filepath.Join(in, "prefs.jsonl")
	writeFile(t, p, b.String())
	const T = 10
	m, out := prepareSFT(t, SFTOptions{Inputs: []string{p}, SeqLen: T, MinShards: 2, ValFraction: 0.25, Preference: true})
	if !m.IsPreference() || m.SFT.Pairs != 12 || m.SFT.Examples != 24 || m.SFT.Skipped != 2 {
		t.Fatalf("sft section %+v", m.SFT)
	}
	// Pairs 3, 7, 11 are validation; 9 train pairs over 2 shards: 5 and 4 pairs.
	if got := m.TrainTokens(); len(got) != 2 || got[0] != 10*(T+1) || got[1] != 8*(T+1) {
		t.Fatalf("train shards %v", got)
	}
	ds, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ds.LoadShard(t.Context(), SplitTrain, 1)
	if err != nil {
		t.Fatal(err)
	}
	mask, err := os.ReadFile(filepath.Join(out, m.Train[1].Mask.File))
	if err != nil {
		t.Fatal(err)
	}
	// Shard 1 holds train pairs 1, 3, ... = q1, q4, q6, q9: rows 0 and 1 are q1's.
	ids := tok.Int32()
	for r, want := range []string{"q1:g1", "q1:b1", "q4:g4", "q4:b4"} {
		row := ids[r*(T+1) : (r+1)*(T+1)]
		w := expectIDs(want)
		for i := range w {
			if row[i] != w[i] {
				t.Fatalf("row %d = %v, want %q first", r, row, want)
			}
		}
		if got := fmt.Sprint(mask[r*(T+1) : (r+1)*(T+1)]); got != "[0 0 0 1 1 1 0 0 0 0 0]" {
			t.Fatalf("mask of row %d = %s", r, got)
		}
	}
}

func TestPreparePreferenceErrors(t *testing.T) {
	in := t.TempDir()
	p := filepath.Join(in, "prefs.jsonl")
	writeFile(t, p, `{"prompt":"q","chosen":"a"}`+"\n")
	tok := newByteTok()
	_, err := PrepareSFT(t.Context(), SFTOptions{Inputs: []string{p}, Tokenizer: tok, TokenizerJSON: tok.json(), OutDir: t.TempDir(), SeqLen: 16, MinShards: 1, Preference: true})
	if !errors.Is(err, ErrBadDocument) || !strings.Contains(err.Error(), "prefs.jsonl:1") {
		t.Fatalf("missing rejected: %v", err)
	}
	_, err = PrepareSFT(t.Context(), SFTOptions{Inputs: []string{p}, Tokenizer: tok, TokenizerJSON: tok.json(), OutDir: t.TempDir(), SeqLen: 16, MinShards: 1, Preference: true, Pack: true})
	if !errors.Is(err, ErrBadOptions) {
		t.Fatalf("pack and preference: %v", err)
	}
}
