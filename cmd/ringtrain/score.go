package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/chat"
	"github.com/ringtrain/ringtrain/trainer"
)

func newScoreCmd() *cobra.Command {
	var ckpt, in, columns, template string
	cmd := &cobra.Command{
		Use:   "score",
		Short: "Score prompt/answer rows with a reward model",
		Long: `Score prompt/answer rows (JSONL in the shapes of 'prepare --format sft') with a reward
model (a checkpoint of 'train --objective reward'). Each row is rendered with the
template the model was trained with and scored at its answer's last token; one JSON
object a row is printed: {"line": N, "reward": R}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ckpt == "" || in == "" {
				return usageErrorf("--checkpoint and --in are required")
			}
			cols, err := chat.ParseColumns(columns)
			if err != nil {
				return usageError(fmt.Errorf("--columns: %w", err))
			}
			tm, err := loadTuned(ckpt, template)
			if err != nil {
				return err
			}
			examples, lines, err := readRows("--in", in, cols)
			if err != nil {
				return err
			}
			rewards, err := trainer.Score(cmd.Context(), tm.m, tm.tok, tm.tmpl, examples)
			if err != nil {
				return fmt.Errorf("--in %s: %w", in, err)
			}
			out := cmd.OutOrStdout()
			for i, r := range rewards {
				b, err := json.Marshal(map[string]any{"line": lines[i], "reward": r})
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "%s\n", b)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&ckpt, "checkpoint", "", "reward model checkpoint directory")
	fl.StringVar(&in, "in", "", "JSONL rows to score (prompt/completion, Alpaca or messages)")
	fl.StringVar(&columns, "columns", "", "rename row keys, field=key,...")
	fl.StringVar(&template, "template", "", "chat template (default: the checkpoint's, else plain)")
	return cmd
}
