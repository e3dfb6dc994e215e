package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/examples"
	"github.com/ringtrain/ringtrain/shard"
	"github.com/ringtrain/ringtrain/tokenizer"
)

func newPrepareCmd(g *globals) *cobra.Command {
	var (
		inputs    []string
		tokSpec   string
		out       string
		valFrac   float64
		minShards int
		overwrite bool
		shipped   bool
		ifMissing bool
		sft       sftFlags
	)
	cmd := &cobra.Command{
		Use:   "prepare",
		Short: "Tokenize text into token shards (llm.c .bin) with a manifest",
		Long: `Tokenize text files, directories of them, or JSONL files ({"text": ...} per line)
into llm.c-format token shards, a train/val split, tokenizer.json and manifest.json.

Tokenizers: char (the corpus' characters), byte, bpe:N (byte-level BPE with N ids,
trained on the inputs), gpt2 (GPT-2's own encoding).

--format sft reads instruction rows instead (JSONL: prompt/completion, Alpaca's
instruction/input/output, or messages; --columns renames keys), renders each with
--template and writes one example per row of --seq+1 tokens with a loss mask that
trains the answers (--train-on-prompt: every token). The tokenizer is then byte, gpt2,
or a tokenizer file such as the pre-training dataset's tokenizer.json, so the tuned
model reads the same ids. --synthetic TASK[,TASK] writes generated tasks (arith,
reverse, sort, upper) with exact answers instead of reading --input. See docs/sft.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			if sft.used(cmd) {
				return sft.run(cmd, log, inputs, tokSpec, out, valFrac, minShards, overwrite, ifMissing)
			}
			if err := sft.checkText(cmd); err != nil {
				return err
			}
			if len(inputs) == 0 && !shipped {
				return usageErrorf("--input is required (or --shipped)")
			}
			if err := tokenizer.CheckSpec(tokSpec); err != nil {
				return usageError(fmt.Errorf("--tokenizer: %w", err))
			}
			if ifMissing {
				if _, err := os.Stat(filepath.Join(out, shard.ManifestFile)); err == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "%s already holds a dataset: nothing to do\n", out)
					return nil
				}
			}
			if shipped {
				text, cleanup, err := writeShipped(out)
				if err != nil {
					return err
				}
				defer cleanup()
				inputs = append(inputs, text)
			}
			m, err := shard.PrepareText(cmd.Context(), tokSpec, shard.PrepareOptions{
				Inputs: inputs, OutDir: out, ValFraction: valFrac, MinShards: minShards,
				Overwrite: overwrite, Logger: log,
			})
			switch {
			case errors.Is(err, shard.ErrDatasetExists):
				return reworded(fmt.Sprintf("--out %s already holds a dataset: --overwrite replaces it, --if-missing keeps it", out), err)
			case errors.Is(err, tokenizer.ErrBadCorpus):
				return usageError(fmt.Errorf("--tokenizer: %w", err))
			case err != nil:
				return err
			}
			var train, val int64
			for _, n := range m.TrainTokens() {
				train += n
			}
			for _, n := range m.ValTokens() {
				val += n
			}
			fmt.Fprintf(cmd.OutOrStdout(), "prepared %s: tokenizer %s (vocab %d), %d train tokens in %d shards, %d val tokens\n",
				out, m.Tokenizer.Name, m.Tokenizer.VocabSize, train, len(m.Train), val)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&inputs, "input", nil, "text file, directory or .jsonl file (repeatable)")
	fl.StringVar(&tokSpec, "tokenizer", "bpe:4096", "char, byte, bpe:N or gpt2")
	fl.StringVar(&out, "out", "", "output directory")
	fl.Float64Var(&valFrac, "val-fraction", shard.DefaultValFraction, "share of tokens, from the end, kept for validation")
	fl.IntVar(&minShards, "min-shards", 16, "least number of train shards (the most data streams a job can use)")
	fl.BoolVar(&overwrite, "overwrite", false, "replace a dataset already in --out")
	fl.BoolVar(&ifMissing, "if-missing", false, "do nothing when --out already holds a dataset (a manifest), so a rerun is harmless")
	fl.BoolVar(&shipped, "shipped", false, "add the tiny shakespeare corpus shipped inside the binary to the inputs")
	sft.register(cmd)
	requireFlags(cmd, "out")
	return cmd
}

// writeShipped writes the shipped corpus to a temporary directory beside out (the
// one place prepare must be able to write, also in a container with a read-only
// root) and returns its path and a function that removes it.
func writeShipped(out string) (string, func(), error) {
	parent := filepath.Dir(filepath.Clean(out))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", nil, fmt.Errorf("--shipped: %w", err)
	}
	dir, err := os.MkdirTemp(parent, ".ringtrain-shipped-")
	if err != nil {
		return "", nil, fmt.Errorf("--shipped: %w", err)
	}
	cleanup := func() { os.RemoveAll(dir) }
	text := filepath.Join(dir, "tinyshakespeare.txt")
	if err := os.WriteFile(text, []byte(examples.TinyShakespeare), 0o644); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("--shipped: %w", err)
	}
	return text, cleanup, nil
}
