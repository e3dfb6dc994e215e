package tokenizer

import (
	"math"
	"time"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// GPT2SplitPattern is the pre-tokenization pattern of GPT-2 (and of tiktoken's
// r50k_base). It cuts text into chunks (contractions, words with their leading space,
// numbers, punctuation runs, whitespace runs); BPE merges never cross a chunk boundary.
const GPT2SplitPattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// splitRegexp is compiled once; a *regexp2.Regexp is safe for concurrent use. It has
// no match timeout (math.MaxInt64 is regexp2's "never"), whatever the package default:
// the pattern has no nested quantifiers to backtrack into, and a timeout would be the
// only way a match could fail.
var splitRegexp = func() *regexp2.Regexp {
	re := regexp2.MustCompile(GPT2SplitPattern, regexp2.None)
	re.MatchTimeout = time.Duration(math.MaxInt64)
	return re
}()

// splitSegment is the length above which a valid UTF-8 run is cut into segments that
// the pattern processes one at a time (see splitRun).
const splitSegment = 64 << 10

// splitChunks cuts text into pre-tokenization chunks and calls fn with each one, in
// order. The chunks are substrings of text whose concatenation is exactly text, so no
// byte is ever lost or changed.
//
// The pattern is defined on Unicode code points. A byte that does not belong to a valid
// UTF-8 sequence cannot be a code point, so it becomes a chunk of its own and the
// pattern runs separately on each maximal valid UTF-8 run between such bytes. For valid
// UTF-8 input the chunks are exactly those of GPT-2's pattern.
func splitChunks(text string, fn func(chunk string)) {
	splitChunksSegmented(text, splitSegment, fn)
}

// splitChunksSegmented is splitChunks with a given segment length (tests use small
// ones to show that segmenting never changes the chunks).
func splitChunksSegmented(text string, segment int, fn func(chunk string)) {
	start := 0 // start of the current valid run
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(text[i:])
		if r == utf8.RuneError && size == 1 {
			splitRun(text[start:i], segment, fn)
			fn(text[i : i+1])
			i++
			start = i
			continue
		}
		i += size
	}
	splitRun(text[start:], segment, fn)
}

// splitRun applies the pattern to a valid UTF-8 run, a segment of about segment bytes
// at a time, which bounds the memory of the rune copy the matcher needs.
//
// A segment ends at a space p with an ASCII letter on each side. No alternative of the
// pattern matches a letter followed by a space, so no chunk crosses p; the chunk that
// ends there ends in a letter, so it is not a whitespace match and the look-ahead never
// inspects p; and the match that starts at p (" " + letters) depends only on the text
// after it. Cutting at p therefore gives exactly the chunks of the whole run. A run
// without such a point is matched whole.
func splitRun(text string, segment int, fn func(chunk string)) {
	for len(text) > segment {
		p := safeCut(text, segment)
		if p < 0 {
			break
		}
		splitValid(text[:p], fn)
		text = text[p:]
	}
	splitValid(text, fn)
}

// safeCut returns the first offset p >= from where text[p] is a space between two ASCII
// letters, or -1.
func safeCut(text string, from int) int {
	for p := max(from, 1); p+1 < len(text); p++ {
		if text[p] == ' ' && isASCIILetter(text[p-1]) && isASCIILetter(text[p+1]) {
			return p
		}
	}
	return -1
}

func isASCIILetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// splitValid applies the pattern to valid UTF-8 text. regexp2 reports positions in
// runes; they are mapped back to byte offsets by walking the text once, which is exact
// because every rune of valid UTF-8 re-encodes to the bytes it was decoded from.
func splitValid(text string, fn func(chunk string)) {
	if text == "" {
		return
	}
	runes := []rune(text)
	runePos, bytePos := 0, 0 // a cursor: rune index runePos starts at byte bytePos
	advance := func(toRune int) int {
		for runePos < toRune {
			bytePos += utf8.RuneLen(runes[runePos])
			runePos++
		}
		return bytePos
	}
	m, err := splitRegexp.FindRunesMatch(runes)
	for m != nil && err == nil {
		from := bytePos
		begin := advance(m.Index)
		if begin > from {
			// Text the pattern did not cover (the pattern covers everything, so this
			// is defensive): keep it as a chunk rather than drop it.
			fn(text[from:begin])
		}
		end := advance(m.Index + m.Length)
		if end > begin {
			fn(text[begin:end])
		}
		m, err = splitRegexp.FindNextMatch(m)
	}
	// Whatever is left (nothing, unless the matcher failed) is one last chunk.
	if bytePos < len(text) {
		fn(text[bytePos:])
	}
}
