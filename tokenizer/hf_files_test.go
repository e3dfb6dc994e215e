package tokenizer

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// hfFiles returns HFFiles(t, 1024), failing the test on an error.
func hfFiles(tb testing.TB, t Tokenizer) map[string][]byte {
	tb.Helper()
	files, err := HFFiles(t, 1024)
	if err != nil {
		tb.Fatalf("HFFiles(%s): %v", t.Name(), err)
	}
	return files
}

func newGPT2T(tb testing.TB) *GPT2 {
	tb.Helper()
	g, err := NewGPT2()
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// readVocabMerges parses vocab.json and merges.txt.
func readVocabMerges(t *testing.T, files map[string][]byte) (map[string]int, []string) {
	t.Helper()
	var vocab map[string]int
	if err := json.Unmarshal(files[HFVocabFile], &vocab); err != nil {
		t.Fatalf("vocab.json: %v", err)
	}
	text := string(files[HFMergesFile])
	header, body, ok := strings.Cut(text, "\n")
	if !ok || header != "#version: 0.2" || !strings.HasSuffix(text, "\n") {
		t.Fatalf("merges.txt starts %q, want the #version: 0.2 header and a final newline", text[:min(len(text), 40)])
	}
	var merges []string
	if body != "" {
		merges = strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	}
	return vocab, merges
}

// TestHFGPT2PublishedFiles checks the GPT-2 vocab.json and merges.txt derived from the
// embedded ranks against facts of GPT-2's published encoder.json and vocab.bpe.
func TestHFGPT2PublishedFiles(t *testing.T) {
	files := hfFiles(t, newGPT2T(t))
	vocab, merges := readVocabMerges(t, files)
	if len(vocab) != 50257 {
		t.Errorf("vocab.json has %d entries, want 50257", len(vocab))
	}
	for tok, id := range map[string]int{"!": 0, "\"": 1, "Ġ": 220, "Ċ": 198, "Ġt": 256, "Ġa": 257, "he": 258, "Ġthe": 262, "<|endoftext|>": 50256, "Ġgazed": 50255} {
		if got, ok := vocab[tok]; !ok || got != id {
			t.Errorf("vocab.json[%q] = %d (%v), want %d", tok, got, ok, id)
		}
	}
	if len(merges) != 50000 {
		t.Errorf("merges.txt has %d merges, want 50000", len(merges))
	}
	first := []string{"Ġ t", "Ġ a", "h e", "i n", "r e", "o n", "Ġt he", "e r", "Ġ s", "a t", "Ġ w", "Ġ o",
		"e n", "Ġ c", "i t", "i s", "a n", "o r", "e s", "Ġ b", "e d", "Ġ f", "in g", "Ġ p", "o u", "Ġa n",
		"a l", "a r", "Ġt o", "Ġ m", "Ġo f", "Ġ in", "Ġ d", "Ġ h", "Ġan d"}
	if !slices.Equal(merges[:len(first)], first) {
		t.Errorf("merges.txt begins %q, want %q", merges[:len(first)], first)
	}
	if last := []string{"ĠColl ider", "Ġinform ants", "Ġg azed"}; !slices.Equal(merges[len(merges)-3:], last) {
		t.Errorf("merges.txt ends %q, want %q", merges[len(merges)-3:], last)
	}
	// Merge i makes id 256+i, as in GPT-2's files.
	for i, m := range merges {
		if id := vocab[strings.Replace(m, " ", "", 1)]; id != 256+i {
			t.Fatalf("merge %d %q makes id %d, want %d", i, m, id, 256+i)
		}
	}

	var cfg map[string]any
	if err := json.Unmarshal(files[HFConfigFile], &cfg); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"tokenizer_class": "GPT2Tokenizer", "model_max_length": 1024.0, "bos_token": EndOfText,
		"eos_token": EndOfText, "unk_token": EndOfText, "add_prefix_space": false, "clean_up_tokenization_spaces": false} {
		if cfg[k] != want {
			t.Errorf("tokenizer_config.json %s = %v, want %v", k, cfg[k], want)
		}
	}
	if _, ok := cfg["mask_token"]; ok {
		t.Error("gpt2 tokenizer_config.json has a mask_token")
	}
	var special map[string]string
	if err := json.Unmarshal(files[HFSpecialTokensFile], &special); err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"bos_token": EndOfText, "eos_token": EndOfText, "unk_token": EndOfText}; !mapsEqual(special, want) {
		t.Errorf("special_tokens_map.json = %v, want %v", special, want)
	}

	// tokenizer.json holds the same vocabulary and merges.
	f := parseRefTokenizerJSON(t, files[HFTokenizerFile])
	if !mapsEqual(f.Model.Vocab, vocab) || !slices.Equal(f.Model.Merges, merges) {
		t.Error("tokenizer.json's vocab or merges differ from vocab.json / merges.txt")
	}
	if f.Model.UnkToken != nil {
		t.Errorf("unk_token %q, want null as GPT-2's file has", *f.Model.UnkToken)
	}
	if len(f.AddedTokens) != 1 || f.AddedTokens[0].ID != 50256 || f.AddedTokens[0].Content != EndOfText {
		t.Errorf("added_tokens %+v, want <|endoftext|> = 50256 only", f.AddedTokens)
	}
}

// TestHFGPT2IndependentEncoding encodes the whole corpus with an independent Hugging
// Face BPE over vocab.json and merges.txt and compares with ringtrain's ids.
func TestHFGPT2IndependentEncoding(t *testing.T) {
	g := newGPT2T(t)
	vocab, merges := readVocabMerges(t, hfFiles(t, g))
	ref := newRefBPE(t, vocab, merges, nil, true)
	corpus := loadCorpus(t)
	got, want := ref.encode(t, corpus), g.Encode(corpus)
	if !slices.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		t.Fatalf("the reference encodes the corpus to %d ids, ringtrain to %d; first difference at %d", len(got), len(want), i)
	}
	if back := ref.decode(t, want); back != corpus {
		t.Error("the reference does not decode ringtrain's ids back to the corpus")
	}
	// Every token, merged from its own bytes, is itself: the merge list reaches all.
	b2u := refBytesToUnicode()
	for id := range GPT2EOT {
		var w strings.Builder
		for _, c := range []byte(g.Decode([]int{id})) {
			w.WriteRune(b2u[c])
		}
		if got := ref.encodeWord(t, w.String()); len(got) != 1 || got[0] != id {
			t.Fatalf("token %d (%q) merges to %v", id, w.String(), got)
		}
	}
	mixed := "Hello, world! It's 2024 — naïve café 日本語 🙂\n\n  spaces\tand tabs"
	if got, want := ref.encode(t, mixed), g.Encode(mixed); !slices.Equal(got, want) {
		t.Errorf("%q: reference %v, ringtrain %v", mixed, got, want)
	}
}

// TestHFTokenizerJSONEncodesIdentically reads each kind's tokenizer.json with the
// independent reader and checks ids and decoding on corpus text.
func TestHFTokenizerJSONEncodesIdentically(t *testing.T) {
	corpus := corpusPrefix(t, 100_000)
	char, err := NewChar(corpus)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []Tokenizer{NewByte(), char, smallBPE(t), newGPT2T(t)} {
		t.Run(tok.Name(), func(t *testing.T) {
			files := hfFiles(t, tok)
			f := parseRefTokenizerJSON(t, files[HFTokenizerFile])
			ref := refFromTokenizerJSON(t, f)
			if len(f.Model.Vocab) != tok.VocabSize() {
				t.Errorf("vocab has %d entries, want %d", len(f.Model.Vocab), tok.VocabSize())
			}
			specials := specialIDs(f)
			if specials[EndOfText] != tok.EOT() {
				t.Errorf("<|endoftext|> is %d, want %d", specials[EndOfText], tok.EOT())
			}
			if id, ok := specials[MaskText]; ok != (tok.Mask() >= 0) || (ok && id != tok.Mask()) {
				t.Errorf("<|mask|> is %d (%v), want %d", id, ok, tok.Mask())
			}
			text := corpus
			if tok.Name() == "gpt2" {
				text = corpus[:20_000] // the whole corpus is TestHFGPT2IndependentEncoding's
			}
			want := tok.Encode(text)
			if got := ref.encode(t, text); !slices.Equal(got, want) {
				t.Fatalf("tokenizer.json encodes to %d ids, ringtrain to %d", len(got), len(want))
			}
			if got := ref.decode(t, append(want, tok.EOT())); got != text+EndOfText {
				t.Error("tokenizer.json does not decode ringtrain's ids back to the text")
			}
			_, hasVocab := files[HFVocabFile]
			_, hasMerges := files[HFMergesFile]
			if byteLevel := tok.Name() != "char"; hasVocab != byteLevel || hasMerges != byteLevel {
				t.Errorf("vocab.json %v, merges.txt %v; want both only for byte-level kinds", hasVocab, hasMerges)
			}
			if hasVocab {
				vocab, merges := readVocabMerges(t, files)
				if !mapsEqual(vocab, f.Model.Vocab) || !slices.Equal(merges, f.Model.Merges) {
					t.Error("vocab.json / merges.txt differ from tokenizer.json")
				}
			}
		})
	}
	// A character outside a char vocabulary is the unk token, EOT, as Encode maps it.
	f := parseRefTokenizerJSON(t, hfFiles(t, char)[HFTokenizerFile])
	if f.Model.UnkToken == nil || *f.Model.UnkToken != EndOfText {
		t.Fatalf("char unk_token %v, want %q", f.Model.UnkToken, EndOfText)
	}
	if got, want := refFromTokenizerJSON(t, f).encode(t, "a€b"), char.Encode("a€b"); !slices.Equal(got, want) {
		t.Errorf("unknown character: tokenizer.json gives %v, ringtrain %v", got, want)
	}
}

// TestHFRoundTrip reads each kind's tokenizer.json back with Unmarshal.
func TestHFRoundTrip(t *testing.T) {
	char, err := NewChar(corpusPrefix(t, 10_000))
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []Tokenizer{NewByte(), char, smallBPE(t), newGPT2T(t)} {
		b := hfFiles(t, tok)[HFTokenizerFile]
		if !IsHFSchema(b) {
			t.Errorf("%s: IsHFSchema = false for tokenizer.json", tok.Name())
		}
		got, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("%s: Unmarshal(tokenizer.json): %v", tok.Name(), err)
		}
		if h1, h2 := mustHash(t, tok), mustHash(t, got); h1 != h2 {
			t.Errorf("%s: read back as a different tokenizer (%s)", tok.Name(), got.Name())
		}
		own, err := Marshal(tok)
		if err != nil {
			t.Fatal(err)
		}
		if IsHFSchema(own) {
			t.Errorf("%s: IsHFSchema = true for ringtrain's own schema", tok.Name())
		}
	}
}

func TestHFUnmarshalRefuses(t *testing.T) {
	good := string(hfFiles(t, NewByte())[HFTokenizerFile])
	cases := map[string]string{
		"normalizer":     strings.Replace(good, `"normalizer": null`, `"normalizer": {"type": "NFC"}`, 1),
		"wordpiece":      strings.Replace(good, `"type": "BPE"`, `"type": "WordPiece"`, 1),
		"prefix space":   strings.Replace(good, `"add_prefix_space": false`, `"add_prefix_space": true`, 1),
		"unknown added":  strings.Replace(good, `"content": "<|mask|>"`, `"content": "<pad>"`, 1),
		"not JSON":       good[:len(good)/2],
		"no endoftext":   strings.Replace(good, `"content": "<|endoftext|>"`, `"content": "<|mask|>"`, 1),
		"shifted vocab":  strings.Replace(good, `"!": 33`, `"!": 34`, 1),
		"bad merge list": strings.Replace(good, `"merges": []`, `"merges": [["a", "b", "c"]]`, 1),
	}
	for name, data := range cases {
		if data == good {
			t.Fatalf("%s: the edit did not apply", name)
		}
		if _, err := Unmarshal([]byte(data)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Unmarshal error %v, want ErrCorrupt", name, err)
		}
	}
}

// A vocabulary with two ids for one string has no Hugging Face form.
func TestHFFilesRefuses(t *testing.T) {
	b, err := newBPE([][2]int32{{'a', 'b'}, {256, 'c'}, {'b', 'c'}, {'a', 258}}) // 257 and 259 are both "abc"
	if err != nil {
		t.Fatal(err)
	}
	if _, err := HFFiles(b, 64); !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "257 and 259") {
		t.Errorf("duplicate token strings: error %v", err)
	}
	if _, err := HFFiles(NewByte(), 0); err == nil || !strings.Contains(err.Error(), "model_max_length") {
		t.Errorf("maxLen 0: error %v", err)
	}
}

func mustHash(t *testing.T, tok Tokenizer) string {
	t.Helper()
	h, err := Hash(tok)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
