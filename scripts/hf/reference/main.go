// Command reference writes what ringtrain computes for a text, for
// scripts/hf/check_export.py to compare with transformers: the token ids of the whole
// text under the model directory's own tokenizer, and the causal logits of its first
// tokens.
//
//	go run ./scripts/hf/reference --model EXPORT --text-file sample.txt --out ref.safetensors
//
// The output is a safetensors file with "ids" (I32, [n]: every id of the text) and
// "logits" (F32, [T, vocab_size]: the logits at the first T = min(n, --max-tokens,
// n_positions) ids, attention causal).
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/safetensors"
	"github.com/ringtrain/ringtrain/tokenizer"
)

func main() {
	dir := flag.String("model", "", "checkpoint or export directory (with its tokenizer)")
	textFile := flag.String("text-file", "", "UTF-8 text to encode")
	out := flag.String("out", "", "safetensors file to write")
	maxTokens := flag.Int("max-tokens", 64, "positions whose logits are written")
	flag.Parse()
	if err := run(*dir, *textFile, *out, *maxTokens); err != nil {
		fmt.Fprintln(os.Stderr, "reference:", err)
		os.Exit(1)
	}
}

func run(dir, textFile, out string, maxTokens int) error {
	if dir == "" || textFile == "" || out == "" || maxTokens < 1 {
		return errors.New("--model, --text-file, --out and a positive --max-tokens are required")
	}
	text, err := os.ReadFile(textFile)
	if err != nil {
		return err
	}
	ids, logits, T, err := reference(dir, string(text), maxTokens)
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	ids32 := make([]int32, len(ids))
	for i, id := range ids {
		ids32[i] = int32(id)
	}
	tensors := []safetensors.Tensor{
		{Name: "ids", DType: safetensors.I32, Shape: []int{len(ids32)}, Encode: func(w io.Writer) error {
			return binary.Write(w, binary.LittleEndian, ids32)
		}},
		safetensors.FromFloat32("logits", []int{T, len(logits) / T}, logits),
	}
	if err := safetensors.Write(f, tensors, nil); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// reference returns the ids of text under dir's tokenizer and the (T, V) causal
// logits of its first T ids.
func reference(dir, text string, maxTokens int) (ids []int, logits []float32, T int, err error) {
	ck, err := model.LoadCheckpoint(dir)
	if err != nil {
		return nil, nil, 0, err
	}
	if len(ck.Tokenizer) == 0 {
		return nil, nil, 0, fmt.Errorf("%s carries no tokenizer", dir)
	}
	tok, err := tokenizer.Unmarshal(ck.Tokenizer)
	if err != nil {
		return nil, nil, 0, err
	}
	if ids, err = tokenizer.EncodeChecked(tok, text); err != nil {
		return nil, nil, 0, err
	}
	T = min(len(ids), maxTokens, ck.Config.MaxSeqLen)
	if T == 0 {
		return nil, nil, 0, errors.New("the text encodes to no tokens")
	}
	m, err := model.New(ck.Config, nil)
	if err != nil {
		return nil, nil, 0, err
	}
	copy(m.Params.Slab, ck.Params)
	in := make([]int32, T)
	for i := range in {
		in[i] = int32(ids[i])
	}
	if _, _, err := m.Forward(in, nil, 1, T, true); err != nil {
		return nil, nil, 0, err
	}
	return ids, append([]float32(nil), m.Logits()...), T, nil
}
