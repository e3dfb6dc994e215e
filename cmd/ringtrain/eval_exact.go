package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/chat"
	"github.com/ringtrain/ringtrain/trainer"
)

// exactMatchFlags are eval's flags for scoring generated answers.
type exactMatchFlags struct {
	file      string
	columns   string
	template  string
	maxTokens int
	limit     int
	asJSON    bool
}

func (f *exactMatchFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.file, "exact-match", "", "score greedy answers to the prompts of these instruction rows (JSONL) by exact match")
	fl.StringVar(&f.columns, "columns", "", "--exact-match: rename row keys, field=key,...")
	fl.StringVar(&f.template, "template", "", "--exact-match: chat template (default: the checkpoint's, else plain)")
	fl.IntVar(&f.maxTokens, "max-tokens", 32, "--exact-match: most tokens of an answer")
	fl.IntVar(&f.limit, "limit", 0, "--exact-match: score only the first N rows (0: all)")
}

// exactMatchJSON is what `eval --exact-match --json` prints.
type exactMatchJSON struct {
	Checkpoint string  `json:"checkpoint"`
	File       string  `json:"file"`
	Template   string  `json:"template"`
	Examples   int     `json:"examples"`
	Correct    int     `json:"correct"`
	ExactMatch float64 `json:"exact_match"`
}

func (f *exactMatchFlags) run(cmd *cobra.Command, ckpt string) error {
	cols, err := chat.ParseColumns(f.columns)
	if err != nil {
		return usageError(fmt.Errorf("--columns: %w", err))
	}
	if f.maxTokens < 1 {
		return usageErrorf("--max-tokens %d: must be >= 1", f.maxTokens)
	}
	tm, err := loadTuned(ckpt, f.template)
	if err != nil {
		return err
	}
	examples, _, err := readRows("--exact-match", f.file, cols)
	if err != nil {
		return err
	}
	m, tok, tmpl := tm.m, tm.tok, tm.tmpl
	r, err := trainer.ExactMatch(cmd.Context(), m, tok, examples, trainer.ExactMatchOptions{Template: tmpl, MaxTokens: f.maxTokens, Limit: f.limit})
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if f.asJSON {
		b, err := json.Marshal(exactMatchJSON{Checkpoint: ckpt, File: f.file, Template: tmpl.Name(), Examples: r.Examples, Correct: r.Correct, ExactMatch: r.Rate()})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s\n", b)
		return nil
	}
	fmt.Fprintf(out, "%s on %s (template %s): exact match %.1f%% (%d of %d)\n", ckpt, f.file, tmpl.Name(), 100*r.Rate(), r.Correct, r.Examples)
	for _, m := range r.Misses {
		fmt.Fprintf(out, "  miss: %q -> %q, want %q\n", m.Prompt, m.Got, m.Want)
	}
	return nil
}
