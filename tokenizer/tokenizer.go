package tokenizer

import "fmt"

// Tokenizer turns text into token ids and back. Implementations are safe for
// concurrent use once built.
type Tokenizer interface {
	// Name is the kind: "bpe", "char", "byte" or "gpt2".
	Name() string
	// VocabSize is the number of ids, special tokens included; every id is < VocabSize.
	VocabSize() int
	// Encode turns ordinary text into ids. Special-token strings in text are encoded as
	// ordinary text, never as special ids.
	Encode(text string) []int
	// Decode turns ids back into text. Decode(Encode(s)) == s for every s the tokenizer
	// can represent (all byte strings for bpe, byte and gpt2).
	Decode(ids []int) string
	// EOT is the id of the end-of-text token "<|endoftext|>" placed between documents.
	EOT() int
	// Mask is the id of "<|mask|>" used by the masked-LM objective, or -1 if the
	// tokenizer has none (gpt2).
	Mask() int
}

// Special-token strings. Decode renders the EOT and mask ids as these strings; Encode
// never produces the special ids from them (they are ordinary text there).
const (
	EndOfText = "<|endoftext|>"
	MaskText  = "<|mask|>"
)

// StrictEncoder is implemented by tokenizers whose vocabulary cannot represent every
// string (char). EncodeStrict returns an error wrapping ErrUnknownToken, naming the
// first offending rune and its byte offset, instead of substituting an id.
type StrictEncoder interface {
	EncodeStrict(text string) ([]int, error)
}

// EncodeChecked encodes text with t and fails, rather than substitute ids, when t
// cannot represent text: it calls EncodeStrict when t implements StrictEncoder and
// Encode otherwise (byte, bpe and gpt2 represent every byte string). The returned
// slice belongs to the caller. It is safe for concurrent use.
func EncodeChecked(t Tokenizer, text string) ([]int, error) {
	if s, ok := t.(StrictEncoder); ok {
		return s.EncodeStrict(text)
	}
	return t.Encode(text), nil
}

// DecodeChecked decodes ids with t after checking that every id is in
// [0, t.VocabSize()); otherwise it returns an error wrapping ErrUnknownToken that names
// the first bad id and its index. (Decode itself skips such ids.)
func DecodeChecked(t Tokenizer, ids []int) (string, error) {
	n := t.VocabSize()
	for i, id := range ids {
		if id < 0 || id >= n {
			return "", fmt.Errorf("%w: id %d at index %d outside [0, %d) of %s tokenizer",
				ErrUnknownToken, id, i, n, t.Name())
		}
	}
	return t.Decode(ids), nil
}
