package tokenizer

import (
	"errors"
	"math/rand"
	"os"
	"sync"
	"testing"
)

// corpusPath is the tiny Shakespeare corpus committed with the examples.
const corpusPath = "../examples/data/tinyshakespeare.txt"

var (
	corpusOnce sync.Once
	corpusText string
	corpusErr  error
)

// loadCorpus returns the tiny Shakespeare corpus, read once per test binary.
func loadCorpus(tb testing.TB) string {
	tb.Helper()
	corpusOnce.Do(func() {
		b, err := os.ReadFile(corpusPath)
		corpusText, corpusErr = string(b), err
	})
	if corpusErr != nil {
		tb.Fatalf("read corpus: %v", corpusErr)
	}
	return corpusText
}

// corpusPrefix returns the first n bytes of the corpus.
func corpusPrefix(tb testing.TB, n int) string {
	c := loadCorpus(tb)
	return c[:min(n, len(c))]
}

// smallBPE trains a bpe tokenizer on a prefix of the corpus, once per test binary.
var (
	smallBPEOnce sync.Once
	smallBPETok  *BPE
	smallBPEErr  error
)

func smallBPE(tb testing.TB) *BPE {
	tb.Helper()
	c := corpusPrefix(tb, 200_000)
	smallBPEOnce.Do(func() { smallBPETok, smallBPEErr = TrainBPE(c, 512) })
	if smallBPEErr != nil {
		tb.Fatalf("train bpe:512: %v", smallBPEErr)
	}
	return smallBPETok
}

// randomBytes returns a random byte string mixing ASCII text, multi-byte UTF-8,
// whitespace runs and arbitrary (often invalid) bytes, so that every branch of the
// splitter is exercised.
func randomBytes(rng *rand.Rand, maxLen int) string {
	n := rng.Intn(maxLen + 1)
	buf := make([]byte, 0, n)
	pieces := []string{" ", "  ", "\n", "\t", "'s", "'ll", "e", "th", "the", " the", "ROMEO:", "123", "!?", "é", "日本", "🙂", "\u00a0", "<|endoftext|>"}
	for len(buf) < n {
		switch rng.Intn(4) {
		case 0:
			buf = append(buf, byte(rng.Intn(256)))
		case 1:
			buf = append(buf, byte('a'+rng.Intn(26)))
		default:
			buf = append(buf, pieces[rng.Intn(len(pieces))]...)
		}
	}
	return string(buf)
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
