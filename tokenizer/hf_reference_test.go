package tokenizer

// An independent reading of the Hugging Face files, written from the published formats
// and not from this package's code: GPT-2's bytes_to_unicode table, the pre-tokenizer
// pattern, and the BPE of the tokenizers library (merge the adjacent pair with the
// lowest merge rank, leftmost first, until no adjacent pair is a merge), driven by a
// vocab and merge list as vocab.json/merges.txt or tokenizer.json give them.

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/dlclark/regexp2"
)

// refBytesToUnicode is GPT-2's encoder.py bytes_to_unicode, transcribed.
func refBytesToUnicode() map[byte]rune {
	var bs []int
	for b := int('!'); b <= int('~'); b++ {
		bs = append(bs, b)
	}
	for b := 0xA1; b <= 0xAC; b++ {
		bs = append(bs, b)
	}
	for b := 0xAE; b <= 0xFF; b++ {
		bs = append(bs, b)
	}
	cs := append([]int(nil), bs...)
	in := map[int]bool{}
	for _, b := range bs {
		in[b] = true
	}
	n := 0
	for b := range 256 {
		if !in[b] {
			bs = append(bs, b)
			cs = append(cs, 256+n)
			n++
		}
	}
	m := map[byte]rune{}
	for i, b := range bs {
		m[byte(b)] = rune(cs[i])
	}
	return m
}

// refPattern is GPT-2's pre-tokenization pattern as encoder.py and the ByteLevel
// pre-tokenizer of the tokenizers library spell it.
const refPattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// refBPE is a Hugging Face BPE model: vocab and ranked merges.
type refBPE struct {
	vocab     map[string]int
	inverse   map[int]string
	ranks     map[[2]string]int
	unk       *string
	byteLevel bool // ByteLevel pre-tokenizer and decoder
	split     *regexp2.Regexp
	b2u       map[byte]rune
	u2b       map[rune]byte
	cache     map[string][]int
}

func newRefBPE(t testing.TB, vocab map[string]int, merges []string, unk *string, byteLevel bool) *refBPE {
	t.Helper()
	r := &refBPE{vocab: vocab, inverse: map[int]string{}, ranks: map[[2]string]int{}, unk: unk,
		byteLevel: byteLevel, b2u: refBytesToUnicode(), u2b: map[rune]byte{}, cache: map[string][]int{}}
	for s, id := range vocab {
		if _, dup := r.inverse[id]; dup {
			t.Fatalf("vocab id %d appears twice", id)
		}
		r.inverse[id] = s
	}
	for i, m := range merges {
		parts := strings.Split(m, " ")
		if len(parts) != 2 {
			t.Fatalf("merge %d %q is not two tokens", i, m)
		}
		r.ranks[[2]string{parts[0], parts[1]}] = i
	}
	for b, u := range r.b2u {
		r.u2b[u] = b
	}
	r.split = regexp2.MustCompile(refPattern, regexp2.None)
	r.split.MatchTimeout = time.Duration(math.MaxInt64)
	return r
}

// encode runs the pre-tokenizer and the model on text (valid UTF-8).
func (r *refBPE) encode(t testing.TB, text string) []int {
	t.Helper()
	var words []string
	if !r.byteLevel {
		words = []string{text}
	} else {
		m, err := r.split.FindStringMatch(text)
		for ; m != nil && err == nil; m, err = r.split.FindNextMatch(m) {
			var sb strings.Builder
			for _, b := range []byte(m.String()) {
				sb.WriteRune(r.b2u[b])
			}
			words = append(words, sb.String())
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	var ids []int
	for _, w := range words {
		if got, ok := r.cache[w]; ok {
			ids = append(ids, got...)
			continue
		}
		wordIDs := r.encodeWord(t, w)
		if len(w) < 64 {
			r.cache[w] = wordIDs
		}
		ids = append(ids, wordIDs...)
	}
	return ids
}

// encodeWord runs the model on one pre-tokenized word.
func (r *refBPE) encodeWord(t testing.TB, w string) []int {
	t.Helper()
	var syms []string
	for _, c := range w {
		syms = append(syms, string(c))
	}
	for len(syms) > 1 {
		best, at := -1, -1
		for i := 0; i+1 < len(syms); i++ {
			if rank, ok := r.ranks[[2]string{syms[i], syms[i+1]}]; ok && (best < 0 || rank < best) {
				best, at = rank, i
			}
		}
		if at < 0 {
			break
		}
		syms[at] += syms[at+1]
		syms = append(syms[:at+1], syms[at+2:]...)
	}
	var wordIDs []int
	for _, s := range syms {
		id, ok := r.vocab[s]
		if !ok {
			if r.unk == nil {
				t.Fatalf("symbol %q not in the vocabulary and no unk_token", s)
			}
			id = r.vocab[*r.unk]
		}
		wordIDs = append(wordIDs, id)
	}
	return wordIDs
}

// decode maps ids to tokens and runs the decoder: ByteLevel turns the characters back
// into bytes (special tokens, outside the alphabet, pass through as their text); Fuse
// concatenates.
func (r *refBPE) decode(t testing.TB, ids []int) string {
	t.Helper()
	var sb strings.Builder
	for _, id := range ids {
		s, ok := r.inverse[id]
		if !ok {
			t.Fatalf("id %d not in the vocabulary", id)
		}
		if !r.byteLevel || s == EndOfText || s == MaskText {
			sb.WriteString(s)
			continue
		}
		for _, c := range s {
			b, ok := r.u2b[c]
			if !ok {
				t.Fatalf("token %q has %q outside the byte-level alphabet", s, c)
			}
			sb.WriteByte(b)
		}
	}
	return sb.String()
}

// refTokenizerJSON is tokenizer.json as the tokenizers library serializes it: every
// field named, so that decoding with DisallowUnknownFields checks the schema.
type refTokenizerJSON struct {
	Version       string          `json:"version"`
	Truncation    json.RawMessage `json:"truncation"`
	Padding       json.RawMessage `json:"padding"`
	AddedTokens   []refAddedToken `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  *refByteLevel   `json:"pre_tokenizer"`
	PostProcessor *refByteLevel   `json:"post_processor"`
	Decoder       *refDecoder     `json:"decoder"`
	Model         struct {
		Type                    string         `json:"type"`
		Dropout                 *float64       `json:"dropout"`
		UnkToken                *string        `json:"unk_token"`
		ContinuingSubwordPrefix *string        `json:"continuing_subword_prefix"`
		EndOfWordSuffix         *string        `json:"end_of_word_suffix"`
		FuseUnk                 bool           `json:"fuse_unk"`
		ByteFallback            bool           `json:"byte_fallback"`
		IgnoreMerges            bool           `json:"ignore_merges"`
		Vocab                   map[string]int `json:"vocab"`
		Merges                  []string       `json:"merges"`
	} `json:"model"`
}

type refAddedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

type refByteLevel struct {
	Type           string `json:"type"`
	AddPrefixSpace bool   `json:"add_prefix_space"`
	TrimOffsets    bool   `json:"trim_offsets"`
	UseRegex       bool   `json:"use_regex"`
}

type refDecoder struct {
	Type           string `json:"type"`
	AddPrefixSpace *bool  `json:"add_prefix_space"`
	TrimOffsets    *bool  `json:"trim_offsets"`
	UseRegex       *bool  `json:"use_regex"`
}

// parseRefTokenizerJSON decodes b strictly and checks the parts every tokenizer.json
// of ringtrain must have.
func parseRefTokenizerJSON(t testing.TB, b []byte) refTokenizerJSON {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var f refTokenizerJSON
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("tokenizer.json does not fit the library's schema: %v", err)
	}
	for name, raw := range map[string]json.RawMessage{"truncation": f.Truncation, "padding": f.Padding, "normalizer": f.Normalizer} {
		if string(raw) != "null" {
			t.Errorf("%s = %s, want null", name, raw)
		}
	}
	if f.Version != "1.0" || f.Model.Type != "BPE" {
		t.Errorf("version %q model type %q, want 1.0 and BPE", f.Version, f.Model.Type)
	}
	if f.Model.Dropout != nil || f.Model.ContinuingSubwordPrefix != nil || f.Model.EndOfWordSuffix != nil ||
		f.Model.FuseUnk || f.Model.ByteFallback || f.Model.IgnoreMerges {
		t.Errorf("model options %+v, want the plain BPE", f.Model)
	}
	return f
}

// refFromTokenizerJSON builds the reference model that tokenizer.json describes.
func refFromTokenizerJSON(t testing.TB, f refTokenizerJSON) *refBPE {
	t.Helper()
	byteLevel := f.PreTokenizer != nil
	if byteLevel {
		if *f.PreTokenizer != (refByteLevel{Type: "ByteLevel", AddPrefixSpace: false, TrimOffsets: true, UseRegex: true}) {
			t.Errorf("pre_tokenizer %+v, want GPT-2's ByteLevel", *f.PreTokenizer)
		}
		if f.Decoder == nil || f.Decoder.Type != "ByteLevel" {
			t.Errorf("decoder %+v, want ByteLevel", f.Decoder)
		}
		if f.PostProcessor == nil || f.PostProcessor.Type != "ByteLevel" {
			t.Errorf("post_processor %+v, want ByteLevel", f.PostProcessor)
		}
	} else if f.Decoder == nil || f.Decoder.Type != "Fuse" {
		t.Errorf("decoder %+v, want Fuse for a tokenizer without pre-tokenizer", f.Decoder)
	}
	for _, a := range f.AddedTokens {
		if id, ok := f.Model.Vocab[a.Content]; !ok || id != a.ID || !a.Special || a.SingleWord || a.LStrip || a.RStrip {
			t.Errorf("added token %+v: vocab has it as %d (%v)", a, id, ok)
		}
	}
	return newRefBPE(t, f.Model.Vocab, f.Model.Merges, f.Model.UnkToken, byteLevel)
}

// specialIDs returns the ids of the added tokens by content.
func specialIDs(f refTokenizerJSON) map[string]int {
	m := map[string]int{}
	for _, a := range f.AddedTokens {
		m[a.Content] = a.ID
	}
	return m
}
