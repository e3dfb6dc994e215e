package tokenizer

import (
	"fmt"
	"slices"
	"unicode/utf8"
)

// Char is a character-level tokenizer: the distinct Unicode code points of its training
// corpus, sorted, get ids 0..n-1; n is "<|endoftext|>" and n+1 is "<|mask|>".
//
// It cannot represent code points it was not built with, nor bytes that are not valid
// UTF-8. Encode maps each of those to EOT (one EOT per unknown rune or invalid byte), so
// Decode(Encode(s)) == s holds only for text made of known runes; use EncodeStrict (or
// the package's EncodeChecked) to get an error instead. A *Char is immutable and safe
// for concurrent use.
type Char struct {
	chars []rune         // sorted, distinct; id i is chars[i]
	ascii [128]int32     // id of an ASCII rune, or -1
	other map[rune]int32 // ids of non-ASCII runes
}

var (
	_ Tokenizer     = (*Char)(nil)
	_ StrictEncoder = (*Char)(nil)
)

// NewChar builds a char tokenizer from the distinct runes of corpus. The corpus must be
// non-empty valid UTF-8; otherwise the error wraps ErrBadCorpus.
func NewChar(corpus string) (*Char, error) {
	if corpus == "" {
		return nil, fmt.Errorf("%w: char tokenizer needs a non-empty corpus", ErrBadCorpus)
	}
	var seenASCII [128]bool
	seen := make(map[rune]struct{})
	for off := 0; off < len(corpus); {
		if c := corpus[off]; c < utf8.RuneSelf {
			seenASCII[c] = true
			off++
			continue
		}
		r, size := utf8.DecodeRuneInString(corpus[off:])
		if r == utf8.RuneError && size == 1 {
			return nil, fmt.Errorf("%w: char tokenizer corpus is not valid UTF-8 at byte offset %d",
				ErrBadCorpus, off)
		}
		seen[r] = struct{}{}
		off += size
	}
	chars := make([]rune, 0, len(seen)+len(seenASCII))
	for c, ok := range seenASCII {
		if ok {
			chars = append(chars, rune(c))
		}
	}
	for r := range seen {
		chars = append(chars, r)
	}
	slices.Sort(chars)
	return newCharFromRunes(chars)
}

// newCharFromRunes builds the tokenizer from an already sorted rune list, checking that
// the list is non-empty, strictly increasing and made of valid code points.
func newCharFromRunes(chars []rune) (*Char, error) {
	if len(chars) == 0 {
		return nil, fmt.Errorf("char tokenizer has no characters")
	}
	c := &Char{chars: chars, other: make(map[rune]int32)}
	for i := range c.ascii {
		c.ascii[i] = -1
	}
	for i, r := range chars {
		if !utf8.ValidRune(r) {
			return nil, fmt.Errorf("char tokenizer: invalid code point U+%04X at index %d", r, i)
		}
		if i > 0 && r <= chars[i-1] {
			return nil, fmt.Errorf("char tokenizer: characters not strictly increasing at index %d", i)
		}
		if r < utf8.RuneSelf {
			c.ascii[r] = int32(i)
		} else {
			c.other[r] = int32(i)
		}
	}
	return c, nil
}

// Name returns "char".
func (c *Char) Name() string { return "char" }

// VocabSize returns the number of characters plus 2 (EOT and mask).
func (c *Char) VocabSize() int { return len(c.chars) + 2 }

// EOT returns the number of characters.
func (c *Char) EOT() int { return len(c.chars) }

// Mask returns the number of characters plus 1.
func (c *Char) Mask() int { return len(c.chars) + 1 }

// Chars returns a copy of the vocabulary: element i is the rune of id i.
func (c *Char) Chars() []rune { return slices.Clone(c.chars) }

// lookup returns the id of the rune at the start of text, the number of bytes it
// takes, and whether it is in the vocabulary. An invalid UTF-8 byte is one byte and is
// never in the vocabulary.
func (c *Char) lookup(text string) (id int, size int, ok bool) {
	if b := text[0]; b < utf8.RuneSelf {
		id := c.ascii[b]
		return int(id), 1, id >= 0
	}
	r, size := utf8.DecodeRuneInString(text)
	if r == utf8.RuneError && size == 1 {
		return 0, 1, false
	}
	i, ok := c.other[r]
	return int(i), size, ok
}

// Encode returns one id per rune of text, mapping each rune not in the vocabulary (and
// each invalid UTF-8 byte) to EOT. The slice belongs to the caller.
func (c *Char) Encode(text string) []int {
	ids := make([]int, 0, utf8.RuneCountInString(text))
	for off := 0; off < len(text); {
		id, size, ok := c.lookup(text[off:])
		if !ok {
			id = c.EOT()
		}
		ids = append(ids, id)
		off += size
	}
	return ids
}

// EncodeStrict is Encode that fails on the first rune not in the vocabulary, or the
// first invalid UTF-8 byte, with an error wrapping ErrUnknownToken that names it and its
// byte offset.
func (c *Char) EncodeStrict(text string) ([]int, error) {
	ids := make([]int, 0, utf8.RuneCountInString(text))
	for off := 0; off < len(text); {
		id, size, ok := c.lookup(text[off:])
		if !ok {
			r, _ := utf8.DecodeRuneInString(text[off:])
			if r == utf8.RuneError && size == 1 {
				return nil, fmt.Errorf("%w: invalid UTF-8 byte 0x%02x at byte offset %d",
					ErrUnknownToken, text[off], off)
			}
			return nil, fmt.Errorf("%w: rune %q (U+%04X) at byte offset %d is not in the char vocabulary",
				ErrUnknownToken, r, r, off)
		}
		ids = append(ids, id)
		off += size
	}
	return ids, nil
}

// Decode concatenates the runes of ids; EOT and mask decode to their strings and ids
// outside [0, VocabSize) are skipped.
func (c *Char) Decode(ids []int) string {
	buf := make([]byte, 0, len(ids))
	n := len(c.chars)
	for _, id := range ids {
		switch {
		case id >= 0 && id < n:
			buf = utf8.AppendRune(buf, c.chars[id])
		case id == n:
			buf = append(buf, EndOfText...)
		case id == n+1:
			buf = append(buf, MaskText...)
		}
	}
	return string(buf)
}
