package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// IsHFSchema reports whether data is a JSON object in the tokenizers library's
// tokenizer.json schema (it has a "model" member) rather than ringtrain's own (which
// has "kind"). Unmarshal reads both; this tells a caller which one a file named
// tokenizer.json holds.
func IsHFSchema(data []byte) bool {
	var probe map[string]json.RawMessage
	if json.Unmarshal(data, &probe) != nil {
		return false
	}
	_, model := probe["model"]
	_, kind := probe["kind"]
	return model && !kind
}

// hfInput is the part of a tokenizer.json that unmarshalHF reads.
type hfInput struct {
	AddedTokens  []hfAddedToken  `json:"added_tokens"`
	Normalizer   json.RawMessage `json:"normalizer"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Decoder      json.RawMessage `json:"decoder"`
	Model        struct {
		Type     string           `json:"type"`
		UnkToken *string          `json:"unk_token"`
		Vocab    map[string]int64 `json:"vocab"`
		Merges   json.RawMessage  `json:"merges"`
	} `json:"model"`
}

// unmarshalHF reads a tokenizer.json in the tokenizers library's schema that
// expresses one of ringtrain's tokenizers as HFFiles writes it: GPT-2's published
// file (checked against the embedded ranks), a ringtrain bpe or byte tokenizer, or a
// char tokenizer. Anything else is an error saying what does not fit.
func unmarshalHF(data []byte) (Tokenizer, error) {
	var f hfInput
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	if f.Model.Type != "" && f.Model.Type != "BPE" {
		return nil, fmt.Errorf("model type %q: only BPE is read", f.Model.Type)
	}
	if !isNull(f.Normalizer) {
		return nil, fmt.Errorf("a normalizer is set: ringtrain's tokenizers have none")
	}
	merges, err := hfMerges(f.Model.Merges)
	if err != nil {
		return nil, err
	}
	specials := map[string]int{}
	for _, a := range f.AddedTokens {
		if a.Content != EndOfText && a.Content != MaskText {
			return nil, fmt.Errorf("added token %q: only %q and %q are known", a.Content, EndOfText, MaskText)
		}
		specials[a.Content] = a.ID
	}
	eot, ok := specials[EndOfText]
	if !ok {
		return nil, fmt.Errorf("no added token %q", EndOfText)
	}
	mask, hasMask := specials[MaskText]
	// vocab by id, special tokens left out; the ids must be 0..n-1.
	n := len(f.Model.Vocab)
	for _, s := range []string{EndOfText, MaskText} {
		if _, ok := f.Model.Vocab[s]; ok {
			n--
		}
	}
	if n < 1 {
		return nil, fmt.Errorf("empty vocabulary")
	}
	byID := make([]string, n)
	for s, id := range f.Model.Vocab {
		if s == EndOfText || s == MaskText {
			if sid, ok := specials[s]; !ok || int64(sid) != id {
				return nil, fmt.Errorf("vocab has %q as %d, added_tokens disagree", s, id)
			}
			continue
		}
		if id < 0 || id >= int64(n) || byID[id] != "" {
			return nil, fmt.Errorf("vocab id %d of %q is repeated or outside [0, %d)", id, s, n)
		}
		byID[id] = s
	}
	if eot != n || (hasMask && mask != n+1) {
		return nil, fmt.Errorf("special tokens at %d and %d, want %d and %d right after the vocabulary", eot, mask, n, n+1)
	}

	var pre struct {
		Type           string `json:"type"`
		AddPrefixSpace bool   `json:"add_prefix_space"`
		UseRegex       *bool  `json:"use_regex"`
	}
	if !isNull(f.PreTokenizer) {
		if err := json.Unmarshal(f.PreTokenizer, &pre); err != nil {
			return nil, fmt.Errorf("pre_tokenizer: %w", err)
		}
	}
	if isNull(f.PreTokenizer) {
		var dec struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(f.Decoder, &dec); err != nil || dec.Type != "Fuse" {
			return nil, fmt.Errorf("no pre-tokenizer, so a char tokenizer, but the decoder is not Fuse")
		}
		if len(merges) > 0 || !hasMask || f.Model.UnkToken == nil || *f.Model.UnkToken != EndOfText {
			return nil, fmt.Errorf("a char tokenizer has no merges, a %q and unk_token %q", MaskText, EndOfText)
		}
		runes := make([]rune, n)
		for id, s := range byID {
			r, size := utf8.DecodeRuneInString(s)
			if size == 0 || size != len(s) || r == utf8.RuneError {
				return nil, fmt.Errorf("char vocabulary entry %d (%q) is not one character", id, s)
			}
			runes[id] = r
		}
		return newCharFromRunes(runes)
	}
	if pre.Type != "ByteLevel" || pre.AddPrefixSpace || (pre.UseRegex != nil && !*pre.UseRegex && len(merges) > 0) {
		return nil, fmt.Errorf("pre_tokenizer %s: want ByteLevel without prefix space, splitting with GPT-2's pattern", f.PreTokenizer)
	}
	tokens := make([]string, n) // id -> bytes
	for id, s := range byID {
		b, ok := byteLevelBytes(s)
		if !ok || b == "" {
			return nil, fmt.Errorf("vocab entry %d (%q) is not in the byte-level alphabet", id, s)
		}
		tokens[id] = b
	}

	if !hasMask && n == GPT2EOT {
		g, err := NewGPT2()
		if err != nil {
			return nil, err
		}
		if !slices.Equal(tokens, g.vocab) {
			return nil, fmt.Errorf("a 50257-token vocabulary without %q that is not GPT-2's", MaskText)
		}
		want, err := gpt2MergeLines(g)
		if err != nil {
			return nil, err
		}
		if !slices.Equal(merges, want) {
			return nil, fmt.Errorf("GPT-2's vocabulary with merges that are not GPT-2's")
		}
		return g, nil
	}
	if !hasMask {
		return nil, fmt.Errorf("no added token %q: ringtrain's byte and bpe tokenizers have one", MaskText)
	}
	for b := range 256 {
		if tokens[b] != string([]byte{byte(b)}) {
			return nil, fmt.Errorf("id %d is not byte 0x%02x: not a ringtrain byte or bpe vocabulary", b, b)
		}
	}
	if len(merges) == 0 {
		if n != 256 {
			return nil, fmt.Errorf("%d ids without merges: a byte tokenizer has 256", n)
		}
		return NewByte(), nil
	}
	if n != 256+len(merges) {
		return nil, fmt.Errorf("%d ids but %d merges: a bpe tokenizer has 256 + one per merge", n, len(merges))
	}
	pairs := make([][2]int32, len(merges))
	for i, m := range merges {
		a, b, ok := strings.Cut(m, " ")
		ia, oka := f.Model.Vocab[a]
		ib, okb := f.Model.Vocab[b]
		if !ok || !oka || !okb || ia >= int64(256+i) || ib >= int64(256+i) || tokens[256+i] != tokens[ia]+tokens[ib] {
			return nil, fmt.Errorf("merge %d (%q) does not make id %d from lower ids", i, m, 256+i)
		}
		pairs[i] = [2]int32{int32(ia), int32(ib)}
	}
	return newBPE(pairs)
}

// hfMerges reads model.merges in either of the library's forms: "a b" strings or
// ["a", "b"] pairs. It returns them as "a b".
func hfMerges(raw json.RawMessage) ([]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var s []string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var pairs [][]string
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return nil, fmt.Errorf("merges are neither strings nor pairs: %w", err)
	}
	s = make([]string, len(pairs))
	for i, p := range pairs {
		if len(p) != 2 {
			return nil, fmt.Errorf("merge %d has %d parts, want 2", i, len(p))
		}
		s[i] = p[0] + " " + p[1]
	}
	return s, nil
}

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}
