package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/chat"
	"github.com/ringtrain/ringtrain/shard"
	"github.com/ringtrain/ringtrain/tokenizer"
	"github.com/ringtrain/ringtrain/trainer"
)

// sftFlags are prepare's flags for instruction data (--format sft, --synthetic).
type sftFlags struct {
	format        string
	columns       string
	template      string
	trainOnPrompt bool
	seq           int
	overflow      string
	valInputs     []string
	synthetic     string
	synTrain      int
	synVal        int
	seed          uint64
	pack          bool
}

func (f *sftFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.format, "format", "text", "input format: text (documents), sft (instruction rows, one example per row with a loss mask) or preference (prompt/chosen/rejected rows, each pair two adjacent rows)")
	fl.StringVar(&f.columns, "columns", "", "sft: rename row keys, field=key,... (fields: prompt, completion, instruction, input, output, messages, role, content)")
	fl.StringVar(&f.template, "template", chat.Plain, "sft: chat template")
	fl.BoolVar(&f.trainOnPrompt, "train-on-prompt", false, "sft: train every token of an example, not only the answers")
	fl.IntVar(&f.seq, "seq", 64, "sft: sequence length T of the job; every example becomes one row of T+1 tokens")
	fl.StringVar(&f.overflow, "overflow", shard.OverflowSkip, "sft: an example longer than T+1 tokens is skipped (skip) or cut to its first T+1 tokens (truncate)")
	fl.StringArrayVar(&f.valInputs, "val-input", nil, "sft: validation rows (repeatable); without it every 1/--val-fraction-th example is held out")
	fl.StringVar(&f.synthetic, "synthetic", "", "sft: generate these tasks instead of reading --input, comma-separated: "+strings.Join(chat.SyntheticTasks(), ", ")+"; with --format preference, pairs whose rejected answer is a corrupted one")
	fl.IntVar(&f.synTrain, "synthetic-examples", 2000, "sft: train examples per synthetic task")
	fl.IntVar(&f.synVal, "synthetic-val", 200, "sft: validation examples per synthetic task (prompts also in train are left out)")
	fl.Uint64Var(&f.seed, "seed", 1337, "sft: seed of the synthetic examples")
	fl.BoolVar(&f.pack, "pack", false, "sft: fill each row with several whole examples (first fit in example order); training restarts positions and blocks attention per example")
}

// used reports whether the command prepares instruction data.
func (f *sftFlags) used(cmd *cobra.Command) bool {
	return f.format == "sft" || f.format == "preference" || f.synthetic != ""
}

// sftOnly are the flags that mean something only with --format sft or --synthetic.
var sftOnly = []string{"columns", "template", "train-on-prompt", "seq", "overflow", "val-input", "synthetic-examples", "synthetic-val", "seed", "pack"}

// checkText refuses instruction-data flags on a plain-text prepare, which would ignore
// them.
func (f *sftFlags) checkText(cmd *cobra.Command) error {
	if f.format != "text" {
		return usageErrorf("--format %q: want text, sft or preference", f.format)
	}
	for _, name := range sftOnly {
		if cmd.Flags().Changed(name) {
			return usageErrorf("--%s applies to instruction data: add --format sft (or --synthetic)", name)
		}
	}
	return nil
}

// run prepares an SFT dataset and prints what was written, truncated and skipped.
func (f *sftFlags) run(cmd *cobra.Command, log *slog.Logger, inputs []string, tokSpec, out string, valFrac float64, minShards int, overwrite, ifMissing bool) error {
	if f.format != "sft" && f.format != "text" && f.format != "preference" {
		return usageErrorf("--format %q: want text, sft or preference", f.format)
	}
	pref := f.format == "preference"
	if pref && f.pack {
		return usageErrorf("--pack: the rows of a preference pair are not packed")
	}
	if cmd.Flags().Changed("shipped") {
		return usageErrorf("--shipped is text: instruction data comes from --input rows or --synthetic")
	}
	if f.synthetic != "" && len(inputs) > 0 {
		return usageErrorf("--synthetic generates the rows: leave out --input")
	}
	if f.synthetic == "" && len(inputs) == 0 {
		return usageErrorf("--format sft needs --input (JSONL rows) or --synthetic")
	}
	cols, err := chat.ParseColumns(f.columns)
	if err != nil {
		return usageError(fmt.Errorf("--columns: %w", err))
	}
	if _, err := chat.Lookup(f.template); err != nil {
		return usageError(fmt.Errorf("--template: %w", err))
	}
	if ifMissing {
		if _, err := os.Stat(filepath.Join(out, shard.ManifestFile)); err == nil {
			fmt.Fprintf(cmd.OutOrStdout(), "%s already holds a dataset: nothing to do\n", out)
			return nil
		}
	}
	if !cmd.Flags().Changed("tokenizer") {
		return usageErrorf("--format sft needs --tokenizer: the pre-training dataset's tokenizer.json (or byte, gpt2), so the tuned model reads the same ids")
	}
	tok, err := trainer.NamedTokenizer(tokSpec)
	if err != nil {
		return usageError(fmt.Errorf("--tokenizer: %w", err))
	}
	tokJSON, err := tokenizer.Marshal(tok)
	if err != nil {
		return err
	}
	valInputs := f.valInputs
	if f.synthetic != "" {
		train, val, err := f.writeSynthetic(out)
		if err != nil {
			return err
		}
		inputs, valInputs = []string{train}, []string{val}
	}
	m, err := shard.PrepareSFT(cmd.Context(), shard.SFTOptions{
		Inputs: inputs, ValInputs: valInputs, Tokenizer: tok, TokenizerJSON: tokJSON,
		OutDir: out, MinShards: minShards, Overwrite: overwrite, Logger: log,
		Columns: cols, Template: f.template, TrainOnPrompt: f.trainOnPrompt,
		SeqLen: f.seq, Overflow: f.overflow, ValFraction: valFrac, Pack: f.pack, Preference: pref,
	})
	switch {
	case errors.Is(err, shard.ErrDatasetExists):
		return reworded(fmt.Sprintf("--out %s already holds a dataset: --overwrite replaces it, --if-missing keeps it", out), err)
	case errors.Is(err, shard.ErrBadOptions):
		return usageError(err)
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
	row := int64(m.SFT.RowTokens)
	if pref {
		fmt.Fprintf(cmd.OutOrStdout(), "prepared %s: preference, template %s, tokenizer %s (vocab %d), %d pairs: %d train pairs in %d shards, %d val pairs, rows of %d tokens (--seq %d)\n",
			out, m.SFT.Template, m.Tokenizer.Name, m.Tokenizer.VocabSize, m.SFT.Pairs, train/row/2, len(m.Train), val/row/2, row, row-1)
	} else if m.SFT.Packed {
		fmt.Fprintf(cmd.OutOrStdout(), "prepared %s: sft packed, template %s, tokenizer %s (vocab %d), %d examples in %d rows (%.2f a row): %d train rows in %d shards, %d val rows, rows of %d tokens (--seq %d)\n",
			out, m.SFT.Template, m.Tokenizer.Name, m.Tokenizer.VocabSize, m.SFT.Examples, m.SFT.PackedRows, float64(m.SFT.Examples)/float64(max(1, m.SFT.PackedRows)),
			train/row, len(m.Train), val/row, row, row-1)
	} else {
		fmt.Fprintf(cmd.OutOrStdout(), "prepared %s: sft, template %s, tokenizer %s (vocab %d), %d train examples in %d shards, %d val examples, rows of %d tokens (--seq %d)\n",
			out, m.SFT.Template, m.Tokenizer.Name, m.Tokenizer.VocabSize, train/row, len(m.Train), val/row, row, row-1)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "longer than a row (--overflow %s): %d truncated, %d skipped\n", m.SFT.Overflow, m.SFT.Truncated, m.SFT.Skipped)
	return nil
}

// writeSynthetic writes the synthetic tasks' rows to <out>/synthetic/train.jsonl and
// val.jsonl (the tasks interleaved) and returns their paths. A validation prompt that
// is also a train prompt is left out, so the validation rows are held out.
func (f *sftFlags) writeSynthetic(out string) (train, val string, err error) {
	tasks := strings.Split(f.synthetic, ",")
	if f.synTrain < 1 || f.synVal < 0 {
		return "", "", usageErrorf("--synthetic-examples %d must be >= 1 and --synthetic-val %d >= 0", f.synTrain, f.synVal)
	}
	// draw returns n rows of task from seed with their prompts: examples, or
	// preference pairs under --format preference.
	draw := func(task string, n int, seed uint64) (rows [][]byte, prompts []string, err error) {
		if f.format == "preference" {
			pairs, err := chat.SyntheticPairs(task, n, seed)
			if err != nil {
				return nil, nil, err
			}
			for _, p := range pairs {
				row, err := chat.MarshalPair(p)
				if err != nil {
					return nil, nil, err
				}
				rows, prompts = append(rows, row), append(prompts, p.Chosen.Messages[0].Content)
			}
			return rows, prompts, nil
		}
		exs, err := chat.Synthetic(task, n, seed)
		if err != nil {
			return nil, nil, err
		}
		for _, ex := range exs {
			row, err := chat.MarshalRow(ex)
			if err != nil {
				return nil, nil, err
			}
			rows, prompts = append(rows, row), append(prompts, ex.Messages[0].Content)
		}
		return rows, prompts, nil
	}
	var trainSets, valSets [][][]byte
	for _, task := range tasks {
		tr, trPrompts, err := draw(strings.TrimSpace(task), f.synTrain, f.seed)
		if err != nil {
			return "", "", usageError(fmt.Errorf("--synthetic: %w", err))
		}
		// The validation draw uses another seed stream: mix the seed.
		va, vaPrompts, err := draw(strings.TrimSpace(task), f.synVal, ^f.seed)
		if err != nil {
			return "", "", usageError(fmt.Errorf("--synthetic: %w", err))
		}
		seen := map[string]bool{}
		for _, p := range trPrompts {
			seen[p] = true
		}
		var held [][]byte
		for i, row := range va {
			if !seen[vaPrompts[i]] {
				seen[vaPrompts[i]] = true
				held = append(held, row)
			}
		}
		trainSets, valSets = append(trainSets, tr), append(valSets, held)
	}
	dir := filepath.Join(out, "synthetic")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	train, val = filepath.Join(dir, "train.jsonl"), filepath.Join(dir, "val.jsonl")
	for _, file := range []struct {
		path string
		sets [][][]byte
	}{{train, trainSets}, {val, valSets}} {
		var b bytes.Buffer
		for i := 0; ; i++ {
			wrote := false
			for _, set := range file.sets {
				if i < len(set) {
					b.Write(set[i])
					b.WriteByte('\n')
					wrote = true
				}
			}
			if !wrote {
				break
			}
		}
		if err := os.WriteFile(file.path, b.Bytes(), 0o644); err != nil {
			return "", "", err
		}
	}
	return train, val, nil
}
