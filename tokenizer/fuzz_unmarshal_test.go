package tokenizer

import (
	"errors"
	"testing"
)

// FuzzUnmarshal: a tokenizer file of any bytes (ringtrain's own schema or a Hugging
// Face tokenizer.json) is refused with an error wrapping ErrCorrupt, or is a
// tokenizer that encodes and decodes text without panicking, whose ids lie in its
// vocabulary, and that marshals to a file that unmarshals to the same tokenizer.
func FuzzUnmarshal(f *testing.F) {
	seeds := []Tokenizer{NewByte()}
	if c, err := NewChar("hello, world\n"); err == nil {
		seeds = append(seeds, c)
	}
	if b, err := TrainBPE("the cat sat on the mat; the cat ate the rat", 256+12); err == nil {
		seeds = append(seeds, b)
	}
	for _, t := range seeds {
		b, err := Marshal(t)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		if files, err := HFFiles(t, 64); err == nil {
			f.Add(files["tokenizer.json"])
		}
	}
	f.Add([]byte(`{"version":1,"kind":"bpe","merges":[[1,2],[300,4]]}`))
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0},"merges":["a a"]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := Unmarshal(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		v := tok.VocabSize()
		if v < 1 {
			t.Fatalf("%s tokenizer with vocab size %d", tok.Name(), v)
		}
		const text = "hello, the cat\n"
		ids, err := EncodeChecked(tok, text)
		if err == nil {
			for _, id := range ids {
				if id < 0 || id >= v {
					t.Fatalf("id %d outside the vocabulary of %d", id, v)
				}
			}
			_ = tok.Decode(ids)
		}
		again, err := Marshal(tok)
		if err != nil {
			return // a Hugging Face tokenizer ringtrain reads but does not write
		}
		back, err := Unmarshal(again)
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		h1, err1 := Hash(tok)
		h2, err2 := Hash(back)
		if err1 != nil || err2 != nil || h1 != h2 {
			t.Fatalf("round trip changed the tokenizer: %s %v, %s %v", h1, err1, h2, err2)
		}
	})
}
