package tokenizer

import (
	"math/rand"
	"slices"
	"testing"
	"testing/quick"
)

func TestByte(t *testing.T) {
	tok := NewByte()
	if tok.VocabSize() != 258 || tok.EOT() != 256 || tok.Mask() != 257 || tok.Name() != "byte" {
		t.Fatalf("vocab %d eot %d mask %d name %q", tok.VocabSize(), tok.EOT(), tok.Mask(), tok.Name())
	}
	if got, want := tok.Encode("A\xff\x00"), []int{65, 255, 0}; !slices.Equal(got, want) {
		t.Fatalf("encode = %v, want %v", got, want)
	}
	if got := tok.Decode([]int{104, 105, 256, 257, 258, -3}); got != "hi<|endoftext|><|mask|>" {
		t.Fatalf("decode = %q", got)
	}
	f := func(b []byte) bool { return tok.Decode(tok.Encode(string(b))) == string(b) }
	if err := quick.Check(f, &quick.Config{MaxCount: 1000, Rand: rand.New(rand.NewSource(31))}); err != nil {
		t.Fatal(err)
	}
}
