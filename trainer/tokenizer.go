package trainer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/ringtrain/ringtrain/shard"
	"github.com/ringtrain/ringtrain/tokenizer"
)

// DefaultShardTokenizer is the tokenizer of a dataset directory that carries none:
// llm.c's shards (*_train_*.bin, *_val_*.bin) hold GPT-2 tokens.
const DefaultShardTokenizer = "gpt2"

// datasetTokenizer is the tokenizer a job reads its dataset with.
type datasetTokenizer struct {
	tok  tokenizer.Tokenizer
	json []byte // ringtrain's serialization (tokenizer.Marshal)
	// note says where the tokenizer came from when the dataset does not carry it;
	// "" when it does.
	note string
}

// resolveDatasetTokenizer returns the tokenizer of ds for a job whose tokenizer
// setting is name (Spec.Tokenizer).
//
// A dataset that carries a tokenizer file (prepared datasets, and llm.c directories
// with a tokenizer.json in either schema) is read with it; the file must match the
// manifest's sha256, and a name given as well must be the same tokenizer. A dataset
// without one is read with the tokenizer name gives, or DefaultShardTokenizer when
// name is empty; note then says so. name is "gpt2", "byte", or a tokenizer file (or a
// directory holding ringtrain_tokenizer.json or tokenizer.json, such as a checkpoint
// or an export).
func resolveDatasetTokenizer(ds *shard.Dataset, name string) (*datasetTokenizer, error) {
	path := ds.TokenizerPath()
	if path == "" {
		if name == "" {
			name = DefaultShardTokenizer
		}
		tok, err := namedTokenizer(name)
		if err != nil {
			return nil, err
		}
		b, err := tokenizer.Marshal(tok)
		if err != nil {
			return nil, err
		}
		note := fmt.Sprintf("dataset %s has no tokenizer file: reading it with the %s tokenizer", ds.Dir(), describe(name, tok))
		if name == DefaultShardTokenizer && ds.Manifest().Computed {
			note += " (llm.c shards hold GPT-2 tokens; --tokenizer chooses another)"
		}
		return &datasetTokenizer{tok: tok, json: b, note: note}, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dataset %s: tokenizer: %w", ds.Dir(), err)
	}
	tok, err := tokenizer.Unmarshal(raw)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	// The manifest records the sha256 of the file itself.
	if err := ds.CheckTokenizer(shard.SHA256Hex(raw), tok.VocabSize()); err != nil {
		return nil, err
	}
	b, err := tokenizer.Marshal(tok)
	if err != nil {
		return nil, err
	}
	if name != "" {
		want, err := namedTokenizer(name)
		if err != nil {
			return nil, err
		}
		if wb, err := tokenizer.Marshal(want); err != nil || string(wb) != string(b) {
			return nil, fmt.Errorf("%w: tokenizer=%s, but dataset %s carries its own %s tokenizer (%s); leave tokenizer unset for such datasets",
				ErrBadSpec, name, ds.Dir(), tok.Name(), path)
		}
	}
	return &datasetTokenizer{tok: tok, json: b}, nil
}

// namedTokenizer builds "gpt2" or "byte", or loads a tokenizer file (either schema)
// or the tokenizer file of a model directory.
func namedTokenizer(name string) (tokenizer.Tokenizer, error) {
	switch name {
	case "gpt2", "byte":
		return tokenizer.Build(name, "")
	}
	if tokenizer.CheckSpec(name) == nil {
		return nil, fmt.Errorf("%w: tokenizer=%s needs the corpus it is built from: prepare the text with 'ringtrain prepare --tokenizer %s', or give a tokenizer file", ErrBadSpec, name, name)
	}
	path := name
	if st, err := os.Stat(name); err == nil && st.IsDir() {
		path = ""
		for _, f := range []string{tokenizer.OwnFile, tokenizer.HFTokenizerFile} {
			if _, err := os.Stat(filepath.Join(name, f)); err == nil {
				path = filepath.Join(name, f)
				break
			}
		}
		if path == "" {
			return nil, fmt.Errorf("%w: tokenizer=%s: the directory holds neither %s nor %s", ErrBadSpec, name, tokenizer.OwnFile, tokenizer.HFTokenizerFile)
		}
	} else if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: tokenizer=%s: want gpt2, byte, or a tokenizer file: %w", ErrBadSpec, name, err)
	}
	tok, err := tokenizer.Load(path)
	if err != nil {
		return nil, fmt.Errorf("%w: tokenizer=%s: %w", ErrBadSpec, name, err)
	}
	return tok, nil
}

func describe(name string, tok tokenizer.Tokenizer) string {
	if name == tok.Name() {
		return name
	}
	return fmt.Sprintf("%s (%s)", tok.Name(), name)
}

// hfTokenizerFiles returns the Hugging Face tokenizer files of the job's tokenizer for
// its model, computed once. A tokenizer without a Hugging Face form gives none: its
// checkpoints still carry ringtrain_tokenizer.json. Safe for concurrent use.
func (p *Prepared) hfTokenizerFiles() map[string][]byte {
	p.hfOnce.Do(func() {
		files, err := tokenizer.HFFiles(p.Tokenizer, p.Spec.Model.MaxSeqLen)
		if err == nil {
			p.hf = files
		}
	})
	return p.hf
}

// hfState holds Prepared's lazily computed Hugging Face tokenizer files.
type hfState struct {
	hfOnce sync.Once
	hf     map[string][]byte
}

// sameTokenizer reports whether ckTokenizer, a checkpoint's tokenizer in either schema
// (nil when it has none), is the job's tokenizer.
func sameTokenizer(ckTokenizer []byte, p *Prepared) (bool, error) {
	if len(ckTokenizer) == 0 {
		return true, nil
	}
	tok, err := tokenizer.Unmarshal(ckTokenizer)
	if err != nil {
		return false, err
	}
	b, err := tokenizer.Marshal(tok)
	if err != nil {
		return false, err
	}
	return string(b) == string(p.TokenizerJSON), nil
}

// NamedTokenizer returns the tokenizer name gives: "gpt2", "byte", or a tokenizer file
// (or a directory holding ringtrain_tokenizer.json or tokenizer.json, such as a
// dataset, checkpoint or export). Errors wrap ErrBadSpec.
func NamedTokenizer(name string) (tokenizer.Tokenizer, error) { return namedTokenizer(name) }
