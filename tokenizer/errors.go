package tokenizer

import "errors"

// Sentinel errors. Functions of this package wrap them with %w and add what went wrong
// (the spec, the file, the offset), so callers test with errors.Is and show the message.
var (
	// ErrBadSpec means a tokenizer spec given to Build is not one of "byte", "char",
	// "gpt2" or "bpe:N" with N in [MinBPEVocab, MaxBPEVocab].
	ErrBadSpec = errors.New("tokenizer: bad spec")

	// ErrBadCorpus means the training corpus cannot build the requested tokenizer: it
	// is empty, it is not valid UTF-8 (char), or it has too few distinct byte pairs for
	// the requested number of BPE merges.
	ErrBadCorpus = errors.New("tokenizer: corpus cannot build tokenizer")

	// ErrCorrupt means serialized tokenizer data (from Unmarshal or Load) is malformed
	// or inconsistent.
	ErrCorrupt = errors.New("tokenizer: corrupt tokenizer data")

	// ErrUnknownToken means text holds something the vocabulary cannot represent
	// (EncodeChecked with a char tokenizer), or an id is outside [0, VocabSize)
	// (DecodeChecked).
	ErrUnknownToken = errors.New("tokenizer: unknown token")
)
