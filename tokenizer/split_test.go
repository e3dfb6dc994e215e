package tokenizer

import (
	"math/rand"
	"slices"
	"strings"
	"testing"
)

func chunksOf(text string) []string {
	var out []string
	splitChunks(text, func(c string) { out = append(out, c) })
	return out
}

func TestSplitKnownChunks(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"Hello world's   test  123!!", []string{"Hello", " world", "'s", "  ", " test", " ", " 123", "!!"}},
		{"First Citizen:\nBefore we proceed", []string{"First", " Citizen", ":", "\n", "Before", " we", " proceed"}},
		{"I'll go\n\n", []string{"I", "'ll", " go", "\n\n"}},
		{"", nil},
		// An invalid byte is a chunk of its own; the valid runs around it are split normally.
		{"ab\xffcd ef", []string{"ab", "\xff", "cd", " ef"}},
		{"\xe6\x97\xa5\xe6\x9c", []string{"日", "\xe6", "\x9c"}},
	}
	for _, c := range cases {
		got := chunksOf(c.in)
		if !slices.Equal(got, c.want) {
			t.Errorf("split %q = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestSplitCoversEveryByte(t *testing.T) {
	seed := int64(1)
	rng := rand.New(rand.NewSource(seed))
	for i := range 2000 {
		s := randomBytes(rng, 200)
		chunks := chunksOf(s)
		if got := strings.Join(chunks, ""); got != s {
			t.Fatalf("seed %d case %d: chunks of %q join to %q", seed, i, s, got)
		}
		for _, c := range chunks {
			if c == "" {
				t.Fatalf("seed %d case %d: empty chunk in split of %q", seed, i, s)
			}
		}
	}
}

// TestSplitSegmentsChangeNothing cuts long runs at small segment lengths and checks the
// chunks are exactly those of the unsegmented split.
func TestSplitSegmentsChangeNothing(t *testing.T) {
	whole := func(s string) []string {
		var out []string
		splitChunksSegmented(s, len(s)+1, func(c string) { out = append(out, c) })
		return out
	}
	segmented := func(s string, seg int) []string {
		var out []string
		splitChunksSegmented(s, seg, func(c string) { out = append(out, c) })
		return out
	}
	text := corpusPrefix(t, 100_000)
	if want, got := whole(text), segmented(text, 1000); !slices.Equal(got, want) {
		t.Fatal("segmented split of the corpus differs")
	}
	if want, got := whole(text), chunksOf(text); !slices.Equal(got, want) {
		t.Fatal("default split of the corpus differs from the unsegmented one")
	}
	seed := int64(5)
	rng := rand.New(rand.NewSource(seed))
	for i := range 3000 {
		s := randomBytes(rng, 120)
		if i%2 == 0 {
			s = strings.ReplaceAll(s, "\xff", "a b") // more cut points
		}
		want := whole(s)
		for _, seg := range []int{1, 2, 3, 7, 16} {
			if got := segmented(s, seg); !slices.Equal(got, want) {
				t.Fatalf("seed %d case %d segment %d: split %q = %q, want %q", seed, i, seg, s, got, want)
			}
		}
	}
}
