package tokenizer

import (
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"
)

// Byte-level BPE in Hugging Face's files (GPT-2's vocab.json and merges.txt, and the
// tokenizers library's ByteLevel pre-tokenizer and decoder) writes every byte as one
// printable character, so that token strings are text without spaces or control
// characters: bytes that are printable Latin-1 ('!'..'~', '¡'..'¬', '®'..'ÿ') stand
// for themselves and the other 68 bytes, in increasing order, become U+0100, U+0101,
// … (so the space 0x20 is 'Ġ' U+0120 and the newline 0x0A is 'Ċ' U+010A). This is
// GPT-2's bytes_to_unicode.

// byteRunes is byte -> character of the byte-level alphabet.
var byteRunes = func() [256]rune {
	var t [256]rune
	n := rune(0)
	for b := range 256 {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF {
			t[b] = rune(b)
		} else {
			t[b] = 256 + n
			n++
		}
	}
	return t
}()

// runeBytes is the inverse of byteRunes.
var runeBytes = func() map[rune]byte {
	m := make(map[rune]byte, 256)
	for b, r := range byteRunes {
		m[r] = byte(b)
	}
	return m
}()

// byteLevelString writes the bytes of s in the byte-level alphabet.
func byteLevelString(s string) string {
	var sb strings.Builder
	sb.Grow(2 * len(s))
	for i := 0; i < len(s); i++ {
		sb.WriteRune(byteRunes[s[i]])
	}
	return sb.String()
}

// byteLevelBytes reverses byteLevelString. It reports false when s holds a character
// outside the byte-level alphabet.
func byteLevelBytes(s string) (string, bool) {
	buf := make([]byte, 0, len(s))
	for _, r := range s {
		b, ok := runeBytes[r]
		if !ok || r == utf8.RuneError {
			return "", false
		}
		buf = append(buf, b)
	}
	return string(buf), true
}

// GPT-2's vocab.json and merges.txt, derived once from the embedded ranks.
var (
	gpt2FilesOnce sync.Once
	gpt2Merges    []string // merges.txt lines without the header, in rank order
	gpt2FilesErr  error
)

// gpt2MergeLines returns GPT-2's merges in merges.txt's form ("Ġ t", …), 50000 of
// them, derived from the ranks of t; the first call takes some tens of milliseconds.
//
// tiktoken's ranks are GPT-2's ids, and the token of rank r >= 256 was made by GPT-2's
// merge number r-256. Which two tokens that merge joined is found by encoding the
// token's own bytes with only the ranks below r: byte-pair merging stops exactly one
// merge short, at the pair that merge joins (as in tiktoken's own reconstruction of
// the merge list). Every one of GPT-2's tokens ends in exactly two parts this way, so
// encoding a chunk with these merges gives tiktoken's ids; a token that did not would
// be an error.
func gpt2MergeLines(t *GPT2) ([]string, error) {
	gpt2FilesOnce.Do(func() {
		lines := make([]string, 0, GPT2EOT-256)
		for r := 256; r < GPT2EOT; r++ {
			a, b, ok := t.lastMerge(t.vocab[r], r)
			if !ok {
				gpt2FilesErr = fmt.Errorf("gpt2 tokenizer: token %d (%q) is not the merge of two lower-ranked tokens", r, t.vocab[r])
				return
			}
			lines = append(lines, byteLevelString(a)+" "+byteLevelString(b))
		}
		gpt2Merges = lines
	})
	return gpt2Merges, gpt2FilesErr
}

// lastMerge byte-pair merges token using only ranks below maxRank and returns the two
// parts it ends with; ok is false when it does not end in exactly two.
func (t *GPT2) lastMerge(token string, maxRank int) (a, b string, ok bool) {
	parts := make([]string, len(token))
	for i := 0; i < len(token); i++ {
		parts[i] = token[i : i+1]
	}
	for len(parts) > 2 {
		best, at := maxRank, -1
		for i := 0; i+1 < len(parts); i++ {
			if r, ok := t.ranks[parts[i]+parts[i+1]]; ok && r < best {
				best, at = r, i
			}
		}
		if at < 0 {
			return "", "", false
		}
		parts[at] += parts[at+1]
		parts = append(parts[:at+1], parts[at+2:]...)
	}
	if len(parts) != 2 {
		return "", "", false
	}
	return parts[0], parts[1], true
}
