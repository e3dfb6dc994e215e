package tokenizer

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestCharShakespeare(t *testing.T) {
	c := loadCorpus(t)
	tok, err := NewChar(c)
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 67 || tok.EOT() != 65 || tok.Mask() != 66 || tok.Name() != "char" {
		t.Fatalf("vocab %d eot %d mask %d name %q, want 67 65 66 char",
			tok.VocabSize(), tok.EOT(), tok.Mask(), tok.Name())
	}
	chars := string(tok.Chars())
	if want := "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"; chars != want {
		t.Fatalf("chars = %q, want %q", chars, want)
	}
	ids := tok.Encode(c)
	if len(ids) != len(c) {
		t.Fatalf("%d ids for %d ASCII bytes", len(ids), len(c))
	}
	if tok.Decode(ids) != c {
		t.Fatal("corpus does not round-trip")
	}
	strict, err := tok.EncodeStrict(c)
	if err != nil || !slices.Equal(strict, ids) {
		t.Fatalf("EncodeStrict differs from Encode (err %v)", err)
	}
}

func TestCharUnicode(t *testing.T) {
	tok, err := NewChar("héllo wörld 日本 🙂\uFFFD")
	if err != nil {
		t.Fatal(err)
	}
	chars := tok.Chars()
	if !slices.IsSorted(chars) {
		t.Fatalf("chars not sorted: %q", chars)
	}
	s := "wörld 🙂 日本\uFFFD"
	if got := tok.Decode(tok.Encode(s)); got != s {
		t.Fatalf("round trip of %q gave %q", s, got)
	}
	// An invalid byte is not U+FFFD even though U+FFFD is in the vocabulary.
	if ids := tok.Encode("h\xff"); ids[1] != tok.EOT() {
		t.Fatalf("invalid byte encoded as %d, want EOT %d", ids[1], tok.EOT())
	}
}

func TestCharUnknownRune(t *testing.T) {
	tok, err := NewChar("abc")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tok.Encode("abzc"), []int{0, 1, tok.EOT(), 2}; !slices.Equal(got, want) {
		t.Fatalf("Encode = %v, want %v", got, want)
	}
	_, err = tok.EncodeStrict("abéc")
	if !errors.Is(err, ErrUnknownToken) || !strings.Contains(err.Error(), "'é'") || !strings.Contains(err.Error(), "offset 2") {
		t.Fatalf("EncodeStrict err = %v, want ErrUnknownToken naming 'é' at offset 2", err)
	}
	_, err = tok.EncodeStrict("ab\xff")
	if !errors.Is(err, ErrUnknownToken) || !strings.Contains(err.Error(), "0xff") {
		t.Fatalf("EncodeStrict err = %v, want ErrUnknownToken naming byte 0xff", err)
	}
	if _, err := EncodeChecked(tok, "abz"); !errors.Is(err, ErrUnknownToken) {
		t.Fatalf("EncodeChecked err = %v, want ErrUnknownToken", err)
	}
	if ids, err := EncodeChecked(tok, "cab"); err != nil || !slices.Equal(ids, []int{2, 0, 1}) {
		t.Fatalf("EncodeChecked = %v, %v", ids, err)
	}
}

func TestCharBadCorpus(t *testing.T) {
	for _, c := range []string{"", "ab\xffc"} {
		if _, err := NewChar(c); !errors.Is(err, ErrBadCorpus) {
			t.Errorf("NewChar(%q) err = %v, want ErrBadCorpus", c, err)
		}
	}
}
