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

// TestPairSamplerKeepsPairs draws pairs with the pair sampler over 3 streams and checks
// that every micro-batch row cut by SplitPairs is a chosen row followed by its own
// rejected row, and that an epoch visits every train pair once.
func TestPairSamplerKeepsPairs(t *testing.T) {
	in := t.TempDir()
	var b strings.Builder
	for i := range 30 {
		fmt.Fprintf(&b, "{\"prompt\":\"q%d:\",\"chosen\":\"g%d\",\"rejected\":\"b%d\"}\n", i, i, i)
	}
	p := filepath.Join(in, "prefs.jsonl")
	writeFile(t, p, b.String())
	const T, M, mb = 10, 3, 2
	m, out := prepareSFT(t, SFTOptions{Inputs: []string{p}, SeqLen: T, MinShards: M, ValFraction: NoValidation, Preference: true})
	ds, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	sampler, err := NewPairSampler(m.TrainTokens(), 3, M, mb, T)
	if err != nil {
		t.Fatal(err)
	}
	if sampler.StepsPerEpoch() != 5 {
		t.Fatalf("steps per epoch %d, want 5 (30 pairs, 3 streams of 2)", sampler.StepsPerEpoch())
	}
	l, err := NewLoader(ds, sampler, LoaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	W := PairSeqLen(T)
	in32, tg := make([]int32, mb*W), make([]int32, mb*W)
	rin, rtg := make([]int32, 2*mb*T), make([]int32, 2*mb*T)
	seen := map[string]bool{}
	for step := range int64(5) {
		for s := range M {
			if err := l.Batch(t.Context(), s, step, in32, tg); err != nil {
				t.Fatal(err)
			}
			if err := SplitPairs(in32, tg, mb, T, rin, rtg); err != nil {
				t.Fatal(err)
			}
			for q := range mb {
				c, r := rin[2*q*T:(2*q+1)*T], rin[(2*q+1)*T:(2*q+2)*T]
				cs, rs := decodeBytes(c), decodeBytes(r)
				id := strings.TrimPrefix(strings.SplitN(cs, ":", 2)[0], "q")
				if !strings.HasPrefix(cs, "q"+id+":g"+id) || !strings.HasPrefix(rs, "q"+id+":b"+id) {
					t.Fatalf("step %d stream %d pair %d: rows %q and %q are not one pair", step, s, q, cs, rs)
				}
				seen[id] = true
				for i, v := range rtg[(2*q+1)*T : (2*q+2)*T] {
					if v >= 0 && v != 256 && v != 'b' && (v < '0' || v > '9') {
						t.Fatalf("rejected row trains target %d at %d", v, i)
					}
				}
			}
		}
		n, err := l.TrainedTargets(t.Context(), step)
		if err != nil || n <= 0 {
			t.Fatalf("trained targets of step %d: %d, %v", step, n, err)
		}
	}
	if len(seen) != 30 {
		t.Fatalf("an epoch visited %d distinct pairs, want 30", len(seen))
	}
	// A row sampler is refused on a preference dataset.
	rows, err := NewExampleSampler(m.TrainTokens(), 3, M, mb, T)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewLoader(ds, rows, LoaderOptions{}); !errors.Is(err, ErrSamplerMismatch) {
		t.Fatalf("row sampler on pairs: %v", err)
	}
}

// decodeBytes renders byte-tokenizer ids as text, EOT as '|'.
func decodeBytes(ids []int32) string {
	var b strings.Builder
	for _, v := range ids {
		if v >= 256 {
			b.WriteByte('|')
			continue
		}
		b.WriteByte(byte(v))
	}
	return b.String()
}
