package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/examples"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/shard"
)

func newLocalCmd(g *globals) *cobra.Command {
	f := &specFlags{}
	var (
		dir      string
		sample   int
		noResume bool
	)
	cmd := &cobra.Command{
		Use:   "local",
		Short: "Train a small GPT on the shipped tiny shakespeare corpus, end to end",
		Long: `Prepare the shipped tiny shakespeare corpus (character level), train a small GPT on
it, write a checkpoint and print a generated sample. With no flags it trains the
4-layer, 128-wide recipe for 600 steps, a few minutes on 2 cores. Every training
flag of 'ringtrain train' applies; --data trains on another prepared dataset.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			spec, err := f.resolve(cmd)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("out") {
				spec.Out = filepath.Join(dir, "run")
			}
			if spec.Data == "" {
				spec.Data = filepath.Join(dir, "data")
				if err := prepareShipped(cmd, dir, spec.Data); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "training %d-layer %d-wide GPT for %d steps on %s; checkpoints in %s\n",
				spec.Model.Layers, spec.Model.Embd, spec.Steps, spec.Data, spec.Out)
			res, err := runTraining(cmd, log, spec, noResume)
			if err != nil {
				return err
			}
			if sample <= 0 || res.Checkpoint == "" {
				return nil
			}
			ck, err := model.LoadCheckpoint(res.Checkpoint)
			if err != nil {
				return err
			}
			tok, err := checkpointTokenizer(ck, "")
			if err != nil {
				return err
			}
			m, err := model.New(ck.Config, nil)
			if err != nil {
				return err
			}
			copy(m.Params.Slab, ck.Params)
			fmt.Fprintln(cmd.OutOrStdout(), "--- sample ---")
			return generate(cmd, m, tok, "ROMEO:", model.GenerateOptions{MaxTokens: sample, Temperature: 0.8, TopK: 40, Seed: 1, StopAtEOT: true}, cmd.OutOrStdout())
		},
	}
	f.register(cmd)
	f.spec.Steps = 600
	f.spec.EvalInterval = 200
	f.spec.CheckpointInterval = 200
	f.spec.LogInterval = 25
	cmd.Flags().Lookup("steps").DefValue = "600"
	cmd.Flags().Lookup("eval-interval").DefValue = "200"
	cmd.Flags().Lookup("checkpoint-interval").DefValue = "200"
	cmd.Flags().Lookup("log-interval").DefValue = "25"
	cmd.Flags().StringVar(&dir, "dir", "ringtrain-local", "working directory for the prepared corpus and the run")
	cmd.Flags().IntVar(&sample, "sample-tokens", 300, "tokens to generate at the end (0: none)")
	cmd.Flags().BoolVar(&noResume, "no-resume", false, "ignore checkpoints already in the run directory")
	return cmd
}

// prepareShipped writes the embedded corpus under dir and prepares it, character level,
// into data unless a dataset is already there.
func prepareShipped(cmd *cobra.Command, dir, data string) error {
	if _, err := os.Stat(filepath.Join(data, shard.ManifestFile)); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	text := filepath.Join(dir, "tinyshakespeare.txt")
	if err := os.WriteFile(text, []byte(examples.TinyShakespeare), 0o644); err != nil {
		return err
	}
	m, err := shard.PrepareText(cmd.Context(), "char", shard.PrepareOptions{Inputs: []string{text}, OutDir: data, Overwrite: true})
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "prepared the shipped tiny shakespeare corpus: %d characters of vocabulary, %d train shards in %s\n",
		m.Tokenizer.VocabSize, len(m.Train), data)
	return nil
}
