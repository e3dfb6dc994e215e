package tokenizer

import (
	"errors"
	"math/rand"
	"testing"
)

// TestContract checks the Tokenizer interface's promises for every kind.
func TestContract(t *testing.T) {
	rng := rand.New(rand.NewSource(41))
	sample := corpusPrefix(t, 20_000)
	for _, tok := range allKinds(t) {
		n := tok.VocabSize()
		if tok.EOT() < 0 || tok.EOT() >= n || tok.Mask() >= n || tok.Mask() == tok.EOT() {
			t.Fatalf("%s: eot %d mask %d vocab %d", tok.Name(), tok.EOT(), tok.Mask(), n)
		}
		if tok.Decode([]int{tok.EOT()}) != EndOfText {
			t.Fatalf("%s: EOT does not decode to %q", tok.Name(), EndOfText)
		}
		if m := tok.Mask(); m >= 0 && tok.Decode([]int{m}) != MaskText {
			t.Fatalf("%s: mask does not decode to %q", tok.Name(), MaskText)
		}
		inputs := []string{sample, "", EndOfText + MaskText}
		if tok.Name() != "char" { // char represents only its corpus runes
			for range 200 {
				inputs = append(inputs, randomBytes(rng, 200))
			}
		}
		for _, s := range inputs {
			ids, err := EncodeChecked(tok, s)
			if err != nil {
				if tok.Name() == "char" && s == EndOfText+MaskText {
					continue // '|' is not in this corpus prefix
				}
				t.Fatalf("%s: EncodeChecked(%q): %v", tok.Name(), s, err)
			}
			for _, id := range ids {
				if id < 0 || id >= n || id == tok.EOT() || id == tok.Mask() {
					t.Fatalf("%s: Encode(%q) produced id %d", tok.Name(), s, id)
				}
			}
			got, err := DecodeChecked(tok, ids)
			if err != nil || got != s {
				t.Fatalf("%s: round trip of %q gave %q (%v)", tok.Name(), s, got, err)
			}
		}
	}
}

func TestDecodeChecked(t *testing.T) {
	for _, tok := range allKinds(t) {
		for _, bad := range []int{-1, tok.VocabSize(), 1 << 40} {
			_, err := DecodeChecked(tok, []int{0, bad})
			if !errors.Is(err, ErrUnknownToken) {
				t.Errorf("%s: DecodeChecked(%d) err = %v, want ErrUnknownToken", tok.Name(), bad, err)
			}
			if got := tok.Decode([]int{bad}); got != "" {
				t.Errorf("%s: Decode(%d) = %q, want it skipped", tok.Name(), bad, got)
			}
		}
	}
}
