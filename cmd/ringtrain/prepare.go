package main

import (
	"fmt"

	"github.com/spf13/cobra"

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
	)
	cmd := &cobra.Command{
		Use:   "prepare",
		Short: "Tokenize text into token shards (llm.c .bin) with a manifest",
		Long: `Tokenize text files, directories of them, or JSONL files ({"text": ...} per line)
into llm.c-format token shards, a train/val split, tokenizer.json and manifest.json.

Tokenizers: char (the corpus' characters), byte, bpe:N (byte-level BPE with N ids,
trained on the inputs), gpt2 (GPT-2's own encoding).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			if len(inputs) == 0 {
				return fmt.Errorf("--input is required")
			}
			if out == "" {
				return fmt.Errorf("--out is required")
			}
			if err := tokenizer.CheckSpec(tokSpec); err != nil {
				return fmt.Errorf("--tokenizer: %w", err)
			}
			m, err := shard.PrepareText(cmd.Context(), tokSpec, shard.PrepareOptions{
				Inputs: inputs, OutDir: out, ValFraction: valFrac, MinShards: minShards,
				Overwrite: overwrite, Logger: log,
			})
			if err != nil {
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
	return cmd
}
