package tokenizer

import (
	"errors"
	"strings"
	"testing"
)

func TestBuildKinds(t *testing.T) {
	corpus := corpusPrefix(t, 100_000)
	cases := []struct {
		spec      string
		name      string
		vocabSize int
	}{
		{"byte", "byte", 258},
		{"char", "char", 0}, // depends on the corpus
		{"gpt2", "gpt2", 50257},
		{"bpe:300", "bpe", 300},
		{"bpe:259", "bpe", 259},
	}
	for _, c := range cases {
		tok, err := Build(c.spec, corpus)
		if err != nil {
			t.Fatalf("Build(%q): %v", c.spec, err)
		}
		if tok.Name() != c.name || c.vocabSize != 0 && tok.VocabSize() != c.vocabSize {
			t.Fatalf("Build(%q) = %s with %d ids", c.spec, tok.Name(), tok.VocabSize())
		}
		if err := CheckSpec(c.spec); err != nil {
			t.Fatalf("CheckSpec(%q): %v", c.spec, err)
		}
	}
}

func TestBuildBadSpec(t *testing.T) {
	for _, spec := range []string{"", "bpe", "bpe:", "bpe:abc", "bpe:258", "bpe:-5", "bpe:+300", "bpe:99999999", "BPE:300", "gpt3", " byte", "bpe:300 "} {
		_, err := Build(spec, "some corpus")
		if !errors.Is(err, ErrBadSpec) {
			t.Errorf("Build(%q) err = %v, want ErrBadSpec", spec, err)
			continue
		}
		if !strings.Contains(err.Error(), `"`+spec+`"`) {
			t.Errorf("Build(%q) err = %v does not name the spec", spec, err)
		}
		if err := CheckSpec(spec); !errors.Is(err, ErrBadSpec) {
			t.Errorf("CheckSpec(%q) err = %v, want ErrBadSpec", spec, err)
		}
	}
}

func TestBuildBadCorpus(t *testing.T) {
	for _, spec := range []string{"char", "bpe:4096"} {
		_, err := Build(spec, "")
		if !errors.Is(err, ErrBadCorpus) || !strings.Contains(err.Error(), spec) {
			t.Errorf("Build(%q, \"\") err = %v, want ErrBadCorpus naming the spec", spec, err)
		}
	}
	if _, err := Build("bpe:4096", "tiny corpus"); !errors.Is(err, ErrBadCorpus) {
		t.Errorf("bpe:4096 on a tiny corpus: err = %v, want ErrBadCorpus", err)
	}
}
