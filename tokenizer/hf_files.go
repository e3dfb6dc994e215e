package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// File names of a tokenizer in a Hugging Face model directory, and ringtrain's own.
const (
	// HFTokenizerFile is the tokenizers library's file (the "fast" tokenizer).
	HFTokenizerFile = "tokenizer.json"
	// HFVocabFile and HFMergesFile are GPT-2's vocabulary and merge list, read by
	// transformers' GPT2Tokenizer (byte-level kinds only).
	HFVocabFile  = "vocab.json"
	HFMergesFile = "merges.txt"
	// HFConfigFile names the tokenizer class, the context length and the special
	// tokens; HFSpecialTokensFile lists the special tokens alone.
	HFConfigFile        = "tokenizer_config.json"
	HFSpecialTokensFile = "special_tokens_map.json"
	// OwnFile is ringtrain's own serialization (Marshal) in a model directory.
	OwnFile = "ringtrain_tokenizer.json"
)

// HFFileNames lists every file HFFiles may return, in a fixed order.
var HFFileNames = []string{HFTokenizerFile, HFVocabFile, HFMergesFile, HFConfigFile, HFSpecialTokensFile}

// HFFiles returns the Hugging Face files of t, keyed by file name, for a model of
// context maxLen (tokenizer_config.json's model_max_length): tokenizer.json in the
// tokenizers library's schema, tokenizer_config.json and special_tokens_map.json
// for every kind, and vocab.json and merges.txt ("#version: 0.2" header) for the
// byte-level kinds (byte, bpe, gpt2).
//
// How each kind is expressed (the tokenizers library then encodes every text without
// special-token strings to the ids Encode gives, and decodes ids back to the same
// text):
//
//   - gpt2: GPT-2's published files: a BPE model over the byte-level alphabet with
//     GPT-2's vocabulary and its 50000 merges, the ByteLevel pre-tokenizer (GPT-2's
//     split pattern, no prefix space), ByteLevel decoder and post-processor, and
//     "<|endoftext|>" (50256) as the added special token; tokenizer_class
//     GPT2Tokenizer.
//   - bpe: the same shape with ringtrain's ids: byte b is id b (written as its
//     byte-level character), merge i joins the two tokens of Merges()[i] into id
//     256+i, then "<|endoftext|>" and "<|mask|>".
//   - byte: the same shape with no merges: 256 byte ids, EOT 256, mask 257.
//   - char: a BPE model with no merges over the characters themselves (ids in
//     Chars() order), no normalizer and no pre-tokenizer, so each character is a
//     token; unk_token "<|endoftext|>", so an unknown character becomes EOT exactly
//     as Encode maps it; the Fuse decoder, which concatenates the tokens;
//     tokenizer_class PreTrainedTokenizerFast (GPT2Tokenizer would apply the
//     byte-level mapping). No vocab.json or merges.txt.
//
// Where the libraries differ from Encode: they match the special-token strings
// "<|endoftext|>" and "<|mask|>" in the input as the special ids, while Encode treats
// them as ordinary text.
//
// A vocabulary with two ids for the same token string (possible in principle for a
// trained bpe, since merges join ids, not strings) cannot be written: the error wraps
// errors.ErrUnsupported and names both ids. maxLen must be positive. The returned map
// and slices belong to the caller; the bytes are deterministic.
func HFFiles(t Tokenizer, maxLen int) (map[string][]byte, error) {
	if maxLen < 1 {
		return nil, fmt.Errorf("tokenizer: hugging face files: model_max_length %d must be positive", maxLen)
	}
	var (
		vocab  []string // id -> token string as the model's vocabulary writes it
		merges []string // "a b" in rank order
		char   bool
	)
	switch t := t.(type) {
	case Byte, *Byte:
		vocab = byteLevelVocab(ByteVocabSize-2, func(id int) string { return string([]byte{byte(id)}) })
	case *BPE:
		vocab = byteLevelVocab(len(t.vocab), func(id int) string { return t.vocab[id] })
		merges = make([]string, len(t.merges))
		for i, m := range t.merges {
			merges[i] = vocab[m[0]] + " " + vocab[m[1]]
		}
	case *GPT2:
		vocab = byteLevelVocab(GPT2EOT, func(id int) string { return t.vocab[id] })
		m, err := gpt2MergeLines(t)
		if err != nil {
			return nil, err
		}
		merges = m
	case *Char:
		char = true
		vocab = make([]string, len(t.chars))
		for i, r := range t.chars {
			vocab[i] = string(r)
		}
	default:
		return nil, fmt.Errorf("tokenizer: hugging face files for %T: %w", t, errors.ErrUnsupported)
	}
	specials := []hfAddedToken{{ID: t.EOT(), Content: EndOfText}}
	if t.Mask() >= 0 {
		specials = append(specials, hfAddedToken{ID: t.Mask(), Content: MaskText})
	}
	for i := range specials {
		specials[i].Normalized, specials[i].Special = true, true
		if specials[i].ID != len(vocab) {
			return nil, fmt.Errorf("tokenizer: %s: special token %q has id %d, want %d", t.Name(), specials[i].Content, specials[i].ID, len(vocab))
		}
		vocab = append(vocab, specials[i].Content)
	}
	if len(vocab) != t.VocabSize() {
		return nil, fmt.Errorf("tokenizer: %s: hugging face vocabulary has %d ids, want %d", t.Name(), len(vocab), t.VocabSize())
	}
	seen := make(map[string]int, len(vocab))
	for id, s := range vocab {
		if prev, dup := seen[s]; dup {
			return nil, fmt.Errorf("tokenizer: %s ids %d and %d are both %q: a Hugging Face vocabulary has one id per token string: %w",
				t.Name(), prev, id, s, errors.ErrUnsupported)
		}
		seen[s] = id
	}

	tj := hfTokenizerJSON{
		Version:     "1.0",
		AddedTokens: specials,
		Model: hfBPEModel{
			Type: "BPE", Vocab: hfVocab(vocab), Merges: merges,
		},
	}
	if tj.Model.Merges == nil {
		tj.Model.Merges = []string{}
	}
	class := "GPT2Tokenizer"
	if char {
		unk := EndOfText
		tj.Model.UnkToken = &unk
		tj.Decoder = hfFuse{Type: "Fuse"}
		class = "PreTrainedTokenizerFast"
	} else {
		// GPT-2's published tokenizer.json: the pre-tokenizer adds no prefix space and
		// trims offsets; the post-processor and decoder only fix offsets and spaces of
		// byte-level tokens.
		tj.PreTokenizer = &hfByteLevel{Type: "ByteLevel", AddPrefixSpace: false, TrimOffsets: true, UseRegex: true}
		tj.PostProcessor = &hfByteLevel{Type: "ByteLevel", AddPrefixSpace: true, TrimOffsets: false, UseRegex: true}
		tj.Decoder = hfByteLevel{Type: "ByteLevel", AddPrefixSpace: true, TrimOffsets: true, UseRegex: true}
	}
	files := map[string][]byte{}
	var err error
	if files[HFTokenizerFile], err = marshalHF(tj); err != nil {
		return nil, err
	}

	special := map[string]string{"bos_token": EndOfText, "eos_token": EndOfText, "unk_token": EndOfText}
	cfg := hfTokenizerConfig{
		TokenizerClass: class, ModelMaxLength: maxLen,
		BOSToken: EndOfText, EOSToken: EndOfText, UnkToken: EndOfText,
		AddedTokensDecoder: map[string]hfAddedTokenConfig{},
	}
	if t.Mask() >= 0 {
		cfg.MaskToken = MaskText
		special["mask_token"] = MaskText
	}
	for _, s := range specials {
		cfg.AddedTokensDecoder[strconv.Itoa(s.ID)] = hfAddedTokenConfig{Content: s.Content, Normalized: s.Normalized, Special: s.Special}
	}
	if !char {
		cfg.Errors = "replace"
	}
	if files[HFConfigFile], err = marshalHF(cfg); err != nil {
		return nil, err
	}
	if files[HFSpecialTokensFile], err = marshalHF(special); err != nil {
		return nil, err
	}
	if char {
		return files, nil
	}

	// vocab.json as transformers' GPT2Tokenizer.save_vocabulary writes it: keys sorted,
	// two-space indent, characters unescaped.
	v := make(map[string]int, len(vocab))
	for id, s := range vocab {
		v[s] = id
	}
	if files[HFVocabFile], err = marshalHF(v); err != nil {
		return nil, err
	}
	var mb bytes.Buffer
	mb.WriteString("#version: 0.2\n")
	for _, m := range merges {
		mb.WriteString(m)
		mb.WriteByte('\n')
	}
	files[HFMergesFile] = mb.Bytes()
	return files, nil
}

// byteLevelVocab returns the byte-level strings of ids 0..n-1, whose bytes token gives.
func byteLevelVocab(n int, token func(id int) string) []string {
	v := make([]string, n)
	for id := range n {
		v[id] = byteLevelString(token(id))
	}
	return v
}

// The tokenizers library's tokenizer.json, in the order and with the fields its
// serializer writes (tokenizers/src/tokenizer/serialization.rs and the BPE model's
// serialization.rs).
type hfTokenizerJSON struct {
	Version       string         `json:"version"`
	Truncation    *struct{}      `json:"truncation"`
	Padding       *struct{}      `json:"padding"`
	AddedTokens   []hfAddedToken `json:"added_tokens"`
	Normalizer    *struct{}      `json:"normalizer"`
	PreTokenizer  *hfByteLevel   `json:"pre_tokenizer"`
	PostProcessor *hfByteLevel   `json:"post_processor"`
	Decoder       any            `json:"decoder"`
	Model         hfBPEModel     `json:"model"`
}

type hfAddedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// hfByteLevel is the ByteLevel pre-tokenizer, post-processor and decoder (one type in
// the library).
type hfByteLevel struct {
	Type           string `json:"type"`
	AddPrefixSpace bool   `json:"add_prefix_space"`
	TrimOffsets    bool   `json:"trim_offsets"`
	UseRegex       bool   `json:"use_regex"`
}

type hfFuse struct {
	Type string `json:"type"`
}

type hfBPEModel struct {
	Type                    string   `json:"type"`
	Dropout                 *float64 `json:"dropout"`
	UnkToken                *string  `json:"unk_token"`
	ContinuingSubwordPrefix *string  `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string  `json:"end_of_word_suffix"`
	FuseUnk                 bool     `json:"fuse_unk"`
	ByteFallback            bool     `json:"byte_fallback"`
	IgnoreMerges            bool     `json:"ignore_merges"`
	Vocab                   hfVocab  `json:"vocab"`
	Merges                  []string `json:"merges"`
}

// hfVocab is a vocabulary indexed by id, written as a JSON object in id order (as the
// library writes it).
type hfVocab []string

func (v hfVocab) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for id, s := range v {
		if id > 0 {
			b.WriteByte(',')
		}
		k, err := marshalNoEscape(s)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(id))
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// hfTokenizerConfig is tokenizer_config.json as transformers reads it.
type hfTokenizerConfig struct {
	TokenizerClass            string                        `json:"tokenizer_class"`
	ModelMaxLength            int                           `json:"model_max_length"`
	BOSToken                  string                        `json:"bos_token"`
	EOSToken                  string                        `json:"eos_token"`
	UnkToken                  string                        `json:"unk_token"`
	MaskToken                 string                        `json:"mask_token,omitempty"`
	AddPrefixSpace            bool                          `json:"add_prefix_space"`
	AddBOSToken               bool                          `json:"add_bos_token"`
	CleanUpTokenizationSpaces bool                          `json:"clean_up_tokenization_spaces"`
	Errors                    string                        `json:"errors,omitempty"`
	AddedTokensDecoder        map[string]hfAddedTokenConfig `json:"added_tokens_decoder"`
}

type hfAddedTokenConfig struct {
	Content    string `json:"content"`
	LStrip     bool   `json:"lstrip"`
	Normalized bool   `json:"normalized"`
	RStrip     bool   `json:"rstrip"`
	SingleWord bool   `json:"single_word"`
	Special    bool   `json:"special"`
}

// marshalHF encodes v with a two-space indent, <, > and & unescaped, and a final
// newline.
func marshalHF(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("tokenizer: encode hugging face file: %w", err)
	}
	return b.Bytes(), nil
}

// marshalNoEscape encodes one value without HTML escaping and without a newline.
func marshalNoEscape(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'}), nil
}
