package tokenizer

import (
	"fmt"
	"strconv"
	"strings"
)

// Build makes the tokenizer named by spec:
//
//	"byte"   bytes 0..255, EOT 256, mask 257
//	"char"   the distinct runes of corpus, then EOT and mask
//	"bpe:N"  byte-level BPE with N ids in all, trained on corpus (see TrainBPE)
//	"gpt2"   GPT-2's own encoding (r50k_base), 50257 ids
//
// corpus is the training text for char and bpe and is ignored otherwise. A malformed
// spec is an error wrapping ErrBadSpec that names it; a corpus that cannot train the
// tokenizer is an error wrapping ErrBadCorpus. Build is deterministic: the same spec
// and corpus give the same tokenizer (and the same Marshal bytes).
func Build(spec, corpus string) (Tokenizer, error) {
	kind, n, err := parseSpec(spec)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "byte":
		return NewByte(), nil
	case "char":
		c, err := NewChar(corpus)
		if err != nil {
			return nil, fmt.Errorf("tokenizer %q: %w", spec, err)
		}
		return c, nil
	case "gpt2":
		g, err := NewGPT2()
		if err != nil {
			return nil, fmt.Errorf("tokenizer %q: %w", spec, err)
		}
		return g, nil
	default: // "bpe"
		b, err := TrainBPE(corpus, n)
		if err != nil {
			return nil, fmt.Errorf("tokenizer %q: %w", spec, err)
		}
		return b, nil
	}
}

// CheckSpec reports whether spec is a valid Build spec, without building anything, so
// configuration can be validated before a corpus is read. The error wraps ErrBadSpec.
func CheckSpec(spec string) error {
	_, _, err := parseSpec(spec)
	return err
}

// parseSpec splits a spec into its kind and, for bpe, its vocabulary size.
func parseSpec(spec string) (kind string, vocabSize int, err error) {
	switch spec {
	case "byte", "char", "gpt2":
		return spec, 0, nil
	}
	rest, ok := strings.CutPrefix(spec, "bpe:")
	if !ok {
		return "", 0, fmt.Errorf(`%w %q: want "byte", "char", "gpt2" or "bpe:N"`, ErrBadSpec, spec)
	}
	n, err := strconv.Atoi(rest)
	if err != nil || strings.HasPrefix(rest, "+") {
		return "", 0, fmt.Errorf("%w %q: vocabulary size %q is not a decimal integer", ErrBadSpec, spec, rest)
	}
	if n < MinBPEVocab || n > MaxBPEVocab {
		return "", 0, fmt.Errorf("%w %q: vocabulary size %d outside [%d, %d] (256 bytes + at least one merge + EOT + mask)",
			ErrBadSpec, spec, n, MinBPEVocab, MaxBPEVocab)
	}
	return "bpe", n, nil
}
