package shard

import (
	"context"
	"fmt"
	"strings"

	"github.com/ringtrain/ringtrain/tokenizer"
)

// MaxTokenizerCorpus caps how much text PrepareText reads to build a char or BPE
// tokenizer (the first documents, in input order, up to this many bytes).
const MaxTokenizerCorpus = 256 << 20

// PrepareText builds the tokenizer named by spec ("char", "byte", "bpe:N" or "gpt2"; see
// tokenizer.Build), training it on the inputs' documents when it needs a corpus, and
// then runs Prepare with it. opts.Tokenizer and opts.TokenizerJSON are filled in here.
func PrepareText(ctx context.Context, spec string, opts PrepareOptions) (*Manifest, error) {
	if err := tokenizer.CheckSpec(spec); err != nil {
		return nil, fmt.Errorf("%w: tokenizer: %w", ErrBadOptions, err)
	}
	var corpus strings.Builder
	if spec == "char" || strings.HasPrefix(spec, "bpe:") {
		files, err := collectInputs(opts.Inputs, opts.OutDir)
		if err != nil {
			return nil, err
		}
		err = forEachDocument(ctx, files, func(d document) error {
			if corpus.Len() >= MaxTokenizerCorpus {
				return nil
			}
			if corpus.Len() > 0 {
				corpus.WriteByte('\n')
			}
			corpus.WriteString(d.text)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	tok, err := tokenizer.Build(spec, corpus.String())
	if err != nil {
		return nil, err // Build names the spec
	}
	if opts.TokenizerJSON, err = tokenizer.Marshal(tok); err != nil {
		return nil, err
	}
	opts.Tokenizer = tok
	return Prepare(ctx, opts)
}
