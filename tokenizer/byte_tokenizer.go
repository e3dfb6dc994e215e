package tokenizer

// ByteVocabSize is the vocabulary size of the byte tokenizer: 256 byte values, EOT and
// mask.
const ByteVocabSize = 258

// Byte is the byte-level tokenizer: ids 0..255 are the byte values, 256 is
// "<|endoftext|>" and 257 is "<|mask|>". It represents every byte string. The zero
// value is ready to use and safe for concurrent use.
type Byte struct{}

var _ Tokenizer = Byte{}

// NewByte returns the byte tokenizer.
func NewByte() Byte { return Byte{} }

// Name returns "byte".
func (Byte) Name() string { return "byte" }

// VocabSize returns ByteVocabSize.
func (Byte) VocabSize() int { return ByteVocabSize }

// EOT returns 256.
func (Byte) EOT() int { return 256 }

// Mask returns 257.
func (Byte) Mask() int { return 257 }

// Encode returns one id per byte of text. The slice belongs to the caller.
func (Byte) Encode(text string) []int {
	ids := make([]int, len(text))
	for i := 0; i < len(text); i++ {
		ids[i] = int(text[i])
	}
	return ids
}

// Decode concatenates the bytes of ids; EOT and mask decode to their strings and ids
// outside [0, 258) are skipped.
func (Byte) Decode(ids []int) string {
	buf := make([]byte, 0, len(ids))
	for _, id := range ids {
		switch {
		case id >= 0 && id < 256:
			buf = append(buf, byte(id))
		case id == 256:
			buf = append(buf, EndOfText...)
		case id == 257:
			buf = append(buf, MaskText...)
		}
	}
	return string(buf)
}
