package tokenizer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"unicode/utf8"

	"github.com/ringtrain/ringtrain/internal/durable"
)

// formatVersion is the version of the JSON form written by Marshal.
const formatVersion = 1

// jsonForm is the serialized tokenizer. Field order is fixed, so Marshal is canonical.
//
//	{"kind":"byte","version":1,"vocab_size":258}
//	{"kind":"char","version":1,"vocab_size":67,"chars":"\n !$&',-.3:;?AB...xyz"}
//	{"kind":"bpe","version":1,"vocab_size":4096,"pattern":"'s|'t|...","merges":[[32,116],...]}
//	{"kind":"gpt2","version":1}
//
// For bpe, merges[i] is the pair of ids merged into id 256+i and pattern is the
// pre-tokenization regex, recorded so that data from a tokenizer with another split
// rule is refused rather than silently misread.
type jsonForm struct {
	Kind      string     `json:"kind"`
	Version   int        `json:"version"`
	VocabSize int        `json:"vocab_size,omitempty"`
	Pattern   string     `json:"pattern,omitempty"`
	Chars     *string    `json:"chars,omitempty"`
	Merges    [][2]int32 `json:"merges,omitempty"`
}

// jsonInput is jsonForm as read: merges are decoded loosely and checked, because
// encoding/json silently drops extra array elements when decoding into [2]int32.
type jsonInput struct {
	Kind      string    `json:"kind"`
	Version   int       `json:"version"`
	VocabSize int       `json:"vocab_size"`
	Pattern   string    `json:"pattern"`
	Chars     *string   `json:"chars"`
	Merges    [][]int64 `json:"merges"`
}

// Marshal returns the JSON form of t, one line ending in a newline. It is canonical: a
// given tokenizer (or one built from the same spec and corpus) always gives the same
// bytes. Only this package's tokenizers are supported; any other type is an error
// wrapping errors.ErrUnsupported. The returned slice belongs to the caller.
func Marshal(t Tokenizer) ([]byte, error) {
	f := jsonForm{Kind: t.Name(), Version: formatVersion}
	switch t := t.(type) {
	case Byte, *Byte:
		f.VocabSize = ByteVocabSize
	case *Char:
		s := string(t.chars)
		f.VocabSize = t.VocabSize()
		f.Chars = &s
	case *BPE:
		f.VocabSize = t.VocabSize()
		f.Pattern = GPT2SplitPattern
		f.Merges = t.merges
	case *GPT2:
	default:
		return nil, fmt.Errorf("tokenizer: marshal %T: %w", t, errors.ErrUnsupported)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(f); err != nil {
		return nil, fmt.Errorf("tokenizer: marshal %s: %w", f.Kind, err)
	}
	return buf.Bytes(), nil
}

// Unmarshal rebuilds a tokenizer from Marshal's output, or from a tokenizer.json in the
// tokenizers library's schema that expresses one of ringtrain's tokenizers (what
// HFFiles writes, GPT-2's published file included); IsHFSchema tells the two apart.
// Malformed or inconsistent data (unknown fields, a wrong version, a vocabulary size
// that does not match, merges that refer to ids not yet made, trailing data, a Hugging
// Face tokenizer ringtrain cannot represent) is an error wrapping ErrCorrupt, never a
// panic. data is not retained.
func Unmarshal(data []byte) (Tokenizer, error) {
	if IsHFSchema(data) {
		t, err := unmarshalHF(data)
		if err != nil {
			return nil, fmt.Errorf("%w: hugging face tokenizer.json: %w", ErrCorrupt, err)
		}
		return t, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f jsonInput
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrCorrupt)
	}
	if f.Version != formatVersion {
		return nil, fmt.Errorf("%w: format version %d, want %d", ErrCorrupt, f.Version, formatVersion)
	}
	t, err := fromInput(&f)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, f.Kind, err)
	}
	return t, nil
}

func fromInput(f *jsonInput) (Tokenizer, error) {
	unexpected := func(fields ...bool) error {
		for _, set := range fields {
			if set {
				return fmt.Errorf("fields that do not belong to this kind are set")
			}
		}
		return nil
	}
	switch f.Kind {
	case "byte":
		if err := unexpected(f.Pattern != "", f.Chars != nil, f.Merges != nil); err != nil {
			return nil, err
		}
		if f.VocabSize != ByteVocabSize {
			return nil, fmt.Errorf("vocab_size %d, want %d", f.VocabSize, ByteVocabSize)
		}
		return NewByte(), nil
	case "gpt2":
		if err := unexpected(f.Pattern != "", f.Chars != nil, f.Merges != nil); err != nil {
			return nil, err
		}
		if f.VocabSize != 0 && f.VocabSize != GPT2VocabSize {
			return nil, fmt.Errorf("vocab_size %d, want %d", f.VocabSize, GPT2VocabSize)
		}
		g, err := NewGPT2()
		if err != nil {
			return nil, err
		}
		return g, nil
	case "char":
		if err := unexpected(f.Pattern != "", f.Merges != nil); err != nil {
			return nil, err
		}
		if f.Chars == nil || !utf8.ValidString(*f.Chars) {
			return nil, fmt.Errorf("chars missing or not valid UTF-8")
		}
		c, err := newCharFromRunes([]rune(*f.Chars))
		if err != nil {
			return nil, err
		}
		if f.VocabSize != c.VocabSize() {
			return nil, fmt.Errorf("vocab_size %d, but %d chars make %d", f.VocabSize, len(c.chars), c.VocabSize())
		}
		return c, nil
	case "bpe":
		if err := unexpected(f.Chars != nil); err != nil {
			return nil, err
		}
		if f.Pattern != GPT2SplitPattern {
			return nil, fmt.Errorf("pattern %q is not the supported %q", f.Pattern, GPT2SplitPattern)
		}
		if f.VocabSize != 258+len(f.Merges) {
			return nil, fmt.Errorf("vocab_size %d, but %d merges make %d", f.VocabSize, len(f.Merges), 258+len(f.Merges))
		}
		if f.VocabSize < MinBPEVocab || f.VocabSize > MaxBPEVocab {
			return nil, fmt.Errorf("vocab_size %d outside [%d, %d]", f.VocabSize, MinBPEVocab, MaxBPEVocab)
		}
		merges := make([][2]int32, len(f.Merges))
		for i, m := range f.Merges {
			if len(m) != 2 {
				return nil, fmt.Errorf("merge %d has %d elements, want 2", i, len(m))
			}
			for j, id := range m {
				if id < 0 || id >= int64(256+i) {
					return nil, fmt.Errorf("merge %d refers to id %d, not below %d", i, id, 256+i)
				}
				merges[i][j] = int32(id)
			}
		}
		b, err := newBPE(merges)
		if err != nil {
			return nil, err
		}
		return b, nil
	default:
		return nil, fmt.Errorf("unknown kind %q", f.Kind)
	}
}

// Hash returns the hex SHA-256 of Marshal(t): a short identity for recording which
// tokenizer produced a shard or a checkpoint.
func Hash(t Tokenizer) (string, error) {
	data, err := Marshal(t)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// Save writes Marshal(t) to path (mode 0644) atomically with durable.WriteFile: it
// writes a temporary file in the same directory, syncs it, renames it over path and
// syncs the directory, so a crash leaves either the old file or the new one, never a
// partial one. Errors name the path.
func Save(t Tokenizer, path string) error {
	data, err := Marshal(t)
	if err != nil {
		return fmt.Errorf("tokenizer: save %s: %w", path, err)
	}
	if err := durable.WriteFile(context.Background(), path, 0o644, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}); err != nil {
		return fmt.Errorf("tokenizer: save %s: %w", path, err)
	}
	return nil
}

// Load reads a tokenizer written by Save. Errors name the file; malformed content is
// an error wrapping ErrCorrupt, never a panic.
func Load(path string) (Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: load %s: %w", path, err)
	}
	t, err := Unmarshal(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: load %s: %w", path, err)
	}
	return t, nil
}
