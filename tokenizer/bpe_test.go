package tokenizer

import (
	"bytes"
	"fmt"
	"math/rand"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/quick"
	"time"
)

// naiveTrain is the reference trainer: it recounts every pair of every chunk
// occurrence before each merge, exactly as the textbook algorithm states it.
func naiveTrain(corpus string, numMerges int) [][2]int {
	var chunks [][]int
	splitChunks(corpus, func(c string) {
		ids := make([]int, len(c))
		for i := range len(c) {
			ids[i] = int(c[i])
		}
		chunks = append(chunks, ids)
	})
	var merges [][2]int
	for m := range numMerges {
		stats := map[[2]int]int{}
		for _, ids := range chunks {
			for i := 0; i+1 < len(ids); i++ {
				stats[[2]int{ids[i], ids[i+1]}]++
			}
		}
		if len(stats) == 0 {
			break
		}
		var best [2]int
		bestCount := -1
		for p, c := range stats {
			if c > bestCount || c == bestCount && (p[0] < best[0] || p[0] == best[0] && p[1] < best[1]) {
				best, bestCount = p, c
			}
		}
		merges = append(merges, best)
		for i, ids := range chunks {
			chunks[i] = naiveMerge(ids, best, 256+m)
		}
	}
	return merges
}

// naiveMerge replaces every non-overlapping occurrence of pair, left to right, by id.
func naiveMerge(ids []int, pair [2]int, id int) []int {
	out := make([]int, 0, len(ids))
	for i := 0; i < len(ids); i++ {
		if i+1 < len(ids) && ids[i] == pair[0] && ids[i+1] == pair[1] {
			out = append(out, id)
			i++
			continue
		}
		out = append(out, ids[i])
	}
	return out
}

// naiveEncode is the reference encoder: per chunk, repeatedly merge the adjacent pair
// with the lowest merge id everywhere, until no mergeable pair is left.
func naiveEncode(merges [][2]int, text string) []int {
	rank := map[[2]int]int{}
	for i, m := range merges {
		rank[m] = 256 + i
	}
	var out []int
	splitChunks(text, func(c string) {
		ids := make([]int, len(c))
		for i := range len(c) {
			ids[i] = int(c[i])
		}
		for len(ids) >= 2 {
			best, bestRank := [2]int{}, -1
			for i := 0; i+1 < len(ids); i++ {
				p := [2]int{ids[i], ids[i+1]}
				if r, ok := rank[p]; ok && (bestRank < 0 || r < bestRank) {
					best, bestRank = p, r
				}
			}
			if bestRank < 0 {
				break
			}
			ids = naiveMerge(ids, best, bestRank)
		}
		out = append(out, ids...)
	})
	return out
}

func TestBPEHandExample(t *testing.T) {
	// "aaabdaaabac" is one chunk. Counts: (a,a)=4 (overlaps count), (a,b)=2, ... so
	// (a,a) -> 256. Then (256,a)=2 and (a,b)=2 tie: the smaller pair (97,98) -> 257.
	// Then (256,257)=2 -> 258.
	tok, err := TrainBPE("aaabdaaabac", 261)
	if err != nil {
		t.Fatal(err)
	}
	wantMerges := [][2]int{{'a', 'a'}, {'a', 'b'}, {256, 257}}
	if got := tok.Merges(); !slices.Equal(got, wantMerges) {
		t.Fatalf("merges = %v, want %v", got, wantMerges)
	}
	if got, want := tok.Encode("aaabdaaabac"), []int{258, 'd', 258, 'a', 'c'}; !slices.Equal(got, want) {
		t.Fatalf("encode = %v, want %v", got, want)
	}
	if tok.VocabSize() != 261 || tok.EOT() != 259 || tok.Mask() != 260 {
		t.Fatalf("vocab %d eot %d mask %d, want 261 259 260", tok.VocabSize(), tok.EOT(), tok.Mask())
	}
	if got := tok.Decode([]int{258, 259, 'x', 260}); got != "aaab<|endoftext|>x<|mask|>" {
		t.Fatalf("decode = %q", got)
	}
	// The corpus holds far fewer than 100 mergeable pairs.
	if _, err := TrainBPE("aaabdaaabac", 258+100); !errorsIs(err, ErrBadCorpus) {
		t.Fatalf("too many merges: err = %v, want ErrBadCorpus", err)
	}
}

// TestBPETooSmallCorpusNamesLargestVocab checks that asking a corpus for more merges
// than it yields names the largest vocabulary that works, and that it does work.
func TestBPETooSmallCorpusNamesLargestVocab(t *testing.T) {
	const corpus = "aaabdaaabac ab ba"
	_, err := TrainBPE(corpus, 4096)
	m := regexp.MustCompile(`the largest bpe vocabulary it can build is bpe:(\d+)$`).FindStringSubmatch(fmt.Sprint(err))
	if !errorsIs(err, ErrBadCorpus) || m == nil {
		t.Fatalf("bpe:4096 on %q: err = %v, want ErrBadCorpus naming the largest vocabulary", corpus, err)
	}
	largest, _ := strconv.Atoi(m[1])
	if largest <= MinBPEVocab || largest >= 4096 {
		t.Fatalf("largest vocabulary %d, want one in (%d, 4096)", largest, MinBPEVocab)
	}
	if tok, err := TrainBPE(corpus, largest); err != nil || tok.VocabSize() != largest {
		t.Fatalf("bpe:%d, the largest named: %v", largest, err)
	}
	if _, err := TrainBPE(corpus, largest+1); !errorsIs(err, ErrBadCorpus) {
		t.Fatalf("bpe:%d, one more than the largest named: err = %v, want ErrBadCorpus", largest+1, err)
	}
	// One byte has no pair to merge: no bpe vocabulary is possible.
	if _, err := TrainBPE("a", MinBPEVocab); !errorsIs(err, ErrBadCorpus) || !strings.Contains(err.Error(), "use char or byte") {
		t.Fatalf("bpe on a one-byte corpus: err = %v, want ErrBadCorpus suggesting char or byte", err)
	}
}

func TestBPEMergesAcrossChunks(t *testing.T) {
	// Chunks: "ab", " ab", " ab", " ba". Pairs: (a,b)=3, (' ',a)=2, (' ',b)=1, (b,a)=1.
	tok, err := TrainBPE("ab ab ab ba", 260)
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]int{{'a', 'b'}, {' ', 256}}
	if got := tok.Merges(); !slices.Equal(got, want) {
		t.Fatalf("merges = %v, want %v", got, want)
	}
}

func TestBPETrainMatchesNaive(t *testing.T) {
	corpora := map[string]string{
		"shakespeare-30k": corpusPrefix(t, 30_000),
	}
	rng := rand.New(rand.NewSource(7))
	for i := range 5 {
		corpora[fmt.Sprintf("random-%d", i)] = randomBytes(rng, 3000)
	}
	// Long repetitive chunks stress overlapping occurrences.
	corpora["repeats"] = "aaaaaaaaaaaaaaaaaaaaaaaaabababababababababababababaaaabbbbaaaab aaaa aaaaa abab"
	for name, corpus := range corpora {
		want := naiveTrain(corpus, 60)
		n := len(want) // fewer than 60 when the corpus runs out of pairs
		tok, err := TrainBPE(corpus, 258+n)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := tok.Merges(); !slices.Equal(got, want) {
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("%s: merge %d = %v, reference %v", name, i, got[i], want[i])
				}
			}
		}
		if n < 60 {
			if _, err := TrainBPE(corpus, 258+n+1); !errorsIs(err, ErrBadCorpus) {
				t.Fatalf("%s: %d merges when only %d exist: err = %v, want ErrBadCorpus", name, n+1, n, err)
			}
		}
	}
}

func TestBPEEncodeMatchesNaive(t *testing.T) {
	tok := smallBPE(t)
	merges := tok.Merges()
	rng := rand.New(rand.NewSource(3))
	inputs := []string{corpusPrefix(t, 20_000), "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "   \n\n\n  x"}
	for range 300 {
		inputs = append(inputs, randomBytes(rng, 300))
	}
	for i, s := range inputs {
		got, want := tok.Encode(s), naiveEncode(merges, s)
		if !slices.Equal(got, want) {
			t.Fatalf("input %d %q: encode = %v, reference %v", i, s, got, want)
		}
	}
}

func TestBPERoundTripQuick(t *testing.T) {
	tok := smallBPE(t)
	f := func(b []byte) bool {
		ids := tok.Encode(string(b))
		for _, id := range ids {
			if id < 0 || id >= tok.EOT() {
				return false
			}
		}
		return tok.Decode(ids) == string(b)
	}
	cfg := &quick.Config{MaxCount: 2000, Rand: rand.New(rand.NewSource(11))}
	if err := quick.Check(f, cfg); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(12))
	for i := range 2000 {
		s := randomBytes(rng, 400)
		if got := tok.Decode(tok.Encode(s)); got != s {
			t.Fatalf("case %d: round trip of %q gave %q", i, s, got)
		}
	}
}

func TestBPECorpusRoundTripAndCompression(t *testing.T) {
	tok := smallBPE(t)
	c := loadCorpus(t)
	ids := tok.Encode(c)
	if tok.Decode(ids) != c {
		t.Fatal("corpus does not round-trip")
	}
	// 254 merges learnt on Shakespeare compress Shakespeare noticeably.
	if ratio := float64(len(c)) / float64(len(ids)); ratio < 1.6 {
		t.Fatalf("compression %.2f bytes/token, want >= 1.6", ratio)
	}
}

func TestBPESpecialStringsAreText(t *testing.T) {
	tok := smallBPE(t)
	ids := tok.Encode("a<|endoftext|>b<|mask|>")
	if slices.Contains(ids, tok.EOT()) || slices.Contains(ids, tok.Mask()) {
		t.Fatalf("special ids produced from text: %v", ids)
	}
}

func TestBPEDeterministic(t *testing.T) {
	c := loadCorpus(t)
	if testing.Short() {
		c = c[:200_000]
	}
	var outs [2][]byte
	for i := range outs {
		tok, err := TrainBPE(c, 4096)
		if err != nil {
			t.Fatal(err)
		}
		if tok.VocabSize() != 4096 || tok.EOT() != 4094 || tok.Mask() != 4095 {
			t.Fatalf("vocab %d eot %d mask %d", tok.VocabSize(), tok.EOT(), tok.Mask())
		}
		if outs[i], err = Marshal(tok); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(outs[0], outs[1]) {
		t.Fatal("two trainings on the same corpus differ")
	}
}

func TestBPEConcurrentEncode(t *testing.T) {
	tok, err := TrainBPE(corpusPrefix(t, 50_000), 400) // a fresh tokenizer: empty cache
	if err != nil {
		t.Fatal(err)
	}
	text := corpusPrefix(t, 100_000)
	want := naiveEncode(tok.Merges(), text)
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got := tok.Encode(text[w*100:]); !slices.Equal(got, naiveEncode(tok.Merges(), text[w*100:])) {
				errs <- fmt.Sprintf("worker %d: concurrent encode differs", w)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := tok.Encode(text); !slices.Equal(got, want) {
		t.Fatal("encode after concurrent use differs")
	}
}

func TestBPEUnmarshalRejectsBadMerges(t *testing.T) {
	cases := map[string][][2]int32{
		"forward reference": {{97, 257}},
		"negative":          {{-1, 97}},
		"duplicate":         {{97, 98}, {97, 98}},
	}
	for name, m := range cases {
		if _, err := newBPE(m); err == nil {
			t.Errorf("%s: newBPE accepted %v", name, m)
		}
	}
	// Doubling merges would need 2^k bytes per token; refused before allocating.
	doubling := [][2]int32{{97, 97}}
	for i := range 40 {
		doubling = append(doubling, [2]int32{int32(256 + i), int32(256 + i)})
	}
	if _, err := newBPE(doubling); err == nil {
		t.Error("newBPE accepted exponentially long tokens")
	}
}

func FuzzRoundTrip(f *testing.F) {
	tok := smallBPE(f)
	for _, s := range []string{"", "First Citizen:\n", "aaaa", "\xff\xfe", "日本語 text", "  \n\t x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ids := tok.Encode(s)
		if got := tok.Decode(ids); got != s {
			t.Fatalf("round trip of %q gave %q", s, got)
		}
		if want := naiveEncode(tok.Merges(), s); !slices.Equal(ids, want) {
			t.Fatalf("encode %q = %v, reference %v", s, ids, want)
		}
		var whole, cut []string
		splitChunksSegmented(s, len(s)+1, func(c string) { whole = append(whole, c) })
		splitChunksSegmented(s, 3, func(c string) { cut = append(cut, c) })
		if !slices.Equal(whole, cut) {
			t.Fatalf("segmented split of %q = %q, want %q", s, cut, whole)
		}
	})
}

func BenchmarkTrainBPE4096(b *testing.B) {
	c := loadCorpus(b)
	b.SetBytes(int64(len(c)))
	for b.Loop() {
		if _, err := TrainBPE(c, 4096); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	c := loadCorpus(b)
	bpe, err := TrainBPE(c, 4096)
	if err != nil {
		b.Fatal(err)
	}
	gpt2, err := NewGPT2()
	if err != nil {
		b.Fatal(err)
	}
	char, err := NewChar(c)
	if err != nil {
		b.Fatal(err)
	}
	for _, tok := range []Tokenizer{NewByte(), char, bpe, gpt2} {
		b.Run(tok.Name(), func(b *testing.B) {
			b.SetBytes(int64(len(c)))
			for b.Loop() {
				tok.Encode(c)
			}
		})
	}
	b.Run("bpe-cold", func(b *testing.B) {
		b.SetBytes(int64(len(c)))
		for b.Loop() {
			b.StopTimer()
			fresh, _ := newBPE(bpe.merges) // empty chunk cache
			b.StartTimer()
			fresh.Encode(c)
		}
	})
}

func TestBPELongChunks(t *testing.T) {
	rng := rand.New(rand.NewSource(13))
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte('a' + rng.Intn(26))
	}
	letters := string(b) // a single 1 MiB chunk
	start := time.Now()
	tok, err := TrainBPE(letters, 300)
	if err != nil {
		t.Fatal(err)
	}
	ids := tok.Encode(letters)
	if tok.Decode(ids) != letters {
		t.Fatal("long chunk does not round-trip")
	}
	// A run of one letter allows only log2(len) merges: the corpus runs out of pairs.
	if _, err := TrainBPE(strings.Repeat("a", 1<<20), 300); !errorsIs(err, ErrBadCorpus) {
		t.Fatalf("err = %v, want ErrBadCorpus", err)
	}
	spaces := strings.Repeat(" ", 1<<20) + "x"
	if got := tok.Decode(tok.Encode(spaces)); got != spaces {
		t.Fatal("long whitespace run does not round-trip")
	}
	t.Logf("long chunks: %v", time.Since(start))
}
