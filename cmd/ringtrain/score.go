package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/chat"
	"github.com/ringtrain/ringtrain/model"
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
			ck, err := model.LoadCheckpoint(ckpt)
			if err != nil {
				return err
			}
			name := template
			if name == "" {
				name = ck.Trainer.ChatTemplate
			}
			tmpl, err := chat.Lookup(name)
			if err != nil {
				return usageError(fmt.Errorf("--template: %w", err))
			}
			tok, err := checkpointTokenizer(ck, "")
			if err != nil {
				return fmt.Errorf("--checkpoint %s: %w", ckpt, err)
			}
			m, err := model.New(ck.Config, nil)
			if err != nil {
				return err
			}
			copy(m.Params.Slab, ck.Params)
			raw, err := os.ReadFile(in)
			if err != nil {
				return fmt.Errorf("--in: %w", err)
			}
			var examples []chat.Example
			var lines []int
			sc := bufio.NewScanner(bytes.NewReader(raw))
			sc.Buffer(make([]byte, 1<<20), 64<<20)
			for line := 1; sc.Scan(); line++ {
				if len(bytes.TrimSpace(sc.Bytes())) == 0 {
					continue
				}
				ex, err := chat.ParseRow(sc.Bytes(), cols, true)
				if err != nil {
					return fmt.Errorf("--in %s:%d: %w", in, line, err)
				}
				examples, lines = append(examples, ex), append(lines, line)
			}
			rewards, err := trainer.Score(cmd.Context(), m, tok, tmpl, examples)
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
