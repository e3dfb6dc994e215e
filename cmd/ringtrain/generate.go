package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/tokenizer"
)

func newGenerateCmd(g *globals) *cobra.Command {
	var backend backendFlags
	var (
		ckpt, prompt, tokSpec string
		opts                  = model.GenerateOptions{StopAtEOT: true}
		file                  promptsFile
	)
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Generate text from a checkpoint: continue --prompt, or answer every row of --prompts",
		Long: `Continue --prompt, streaming the text as it is sampled; or, with --prompts, answer
every row of a JSONL file and write the rows with the answers to --out.

--prompts reads any row shape of the SFT data (prompt/completion, Alpaca's
instruction/input/output, messages of role/content; --columns renames keys); the
answer is optional. Each prompt is rendered with the chat template recorded in the
checkpoint, exactly as in fine-tuning (a prompt/completion row's prompt is raw text),
and decoded greedily unless --temperature is given, up to --batch rows at a time. Each
output row is the input row with every key kept and "completion" added (or
"generated" when the row has a "completion" key of its own, its reference answer);
a row that carries a reference answer also gets "exact_match", true when the answer
and the reference are equal after trimming surrounding white space. The exact-match
rate is printed at the end. With sampling, row i (from 0) is sampled with seed
--seed+i, so a row's answer does not depend on the batch it ran in.`,
		Example: `  ringtrain generate --checkpoint run/step-000500 --prompt "ROMEO:"
  ringtrain generate --checkpoint sft/step-000300 --prompts heldout.jsonl --out answers.jsonl --batch 16`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file.in != "" {
				if cmd.Flags().Changed("prompt") {
					return usageErrorf("--prompt and --prompts: give one of them")
				}
				if file.out == "" {
					return usageErrorf("--prompts needs --out")
				}
				if !cmd.Flags().Changed("temperature") {
					opts.Temperature = 0
				}
				log, err := g.logger()
				if err != nil {
					return err
				}
				be, err := backend.open()
				if err != nil {
					return err
				}
				err = generateFile(cmd, ckpt, tokSpec, be, file, opts, log)
				if err != nil && cmd.Context().Err() != nil {
					return interruptedError(err) // the rows written so far are in --out
				}
				return err
			}
			be, err := backend.open()
			if err != nil {
				return err
			}
			ck, err := model.LoadCheckpoint(ckpt)
			if err != nil {
				return err
			}
			tok, err := checkpointTokenizer(ck, tokSpec)
			if err != nil {
				return fmt.Errorf("checkpoint %s: %w", ckpt, err)
			}
			m, err := model.New(ck.Config, be)
			if err != nil {
				return err
			}
			copy(m.Params.Slab, ck.Params)
			return generate(cmd, g.notes(cmd, slog.LevelInfo), m, tok, prompt, opts, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	backend.register(fl)
	fl.StringVar(&ckpt, "checkpoint", "", "checkpoint directory (ringtrain's or a Hugging Face GPT-2 directory)")
	fl.StringVar(&prompt, "prompt", "\n", "text to continue")
	fl.StringVar(&tokSpec, "tokenizer", "gpt2", "tokenizer for checkpoints that carry none (Hugging Face directories)")
	fl.IntVar(&opts.MaxTokens, "max-tokens", 200, "most new tokens")
	fl.Float64Var(&opts.Temperature, "temperature", 0.8, "sampling temperature (0: greedy)")
	fl.IntVar(&opts.TopK, "top-k", 40, "sample from the k most probable tokens (0: off)")
	fl.Float64Var(&opts.TopP, "top-p", 0, "nucleus sampling mass (0 or 1: off)")
	fl.Uint64Var(&opts.Seed, "seed", 1, "sampling seed")
	fl.StringVar(&file.in, "prompts", "", "JSONL file of prompts to answer (greedy unless --temperature is given)")
	fl.StringVar(&file.out, "out", "", "JSONL file to write the --prompts rows with their answers to")
	fl.StringVar(&file.columns, "columns", "", `renamed keys of --prompts rows, e.g. "prompt=question,completion=answer"`)
	fl.IntVar(&file.batch, "batch", 8, "--prompts rows decoded together")
	requireFlags(cmd, "checkpoint")
	return cmd
}

// checkpointTokenizer returns the checkpoint's own tokenizer or, for a checkpoint
// without one, the tokenizer named by spec (which must not need a training corpus).
func checkpointTokenizer(ck *model.Checkpoint, spec string) (tokenizer.Tokenizer, error) {
	if len(ck.Tokenizer) > 0 {
		return tokenizer.Unmarshal(ck.Tokenizer)
	}
	if spec != "gpt2" && spec != "byte" {
		return nil, fmt.Errorf("it carries no tokenizer; --tokenizer must be gpt2 or byte, not %q", spec)
	}
	return tokenizer.Build(spec, "")
}

// generate continues prompt with m, streaming the decoded text to w as it is sampled;
// a prompt cut to the context is said to notes (globals.notes).
func generate(cmd *cobra.Command, notes io.Writer, m *model.GPT, tok tokenizer.Tokenizer, prompt string, opts model.GenerateOptions, w io.Writer) error {
	ids, err := tokenizer.EncodeChecked(tok, prompt)
	if err != nil {
		return usageError(fmt.Errorf("--prompt: %w", err))
	}
	if len(ids) == 0 {
		ids = []int{tok.EOT()}
	}
	if tok.VocabSize() > m.Config.VocabSize {
		return fmt.Errorf("tokenizer has %d ids but the model only %d", tok.VocabSize(), m.Config.VocabSize)
	}
	in := make([]int32, len(ids))
	for i, id := range ids {
		in[i] = int32(id)
	}
	if len(in) >= m.Config.MaxSeqLen {
		fmt.Fprintf(notes, "the prompt has %d tokens; only the last %d fit the model's context of %d\n",
			len(in), m.Config.MaxSeqLen-1, m.Config.MaxSeqLen)
	}
	opts.EOT = int32(tok.EOT())
	// Decode the whole continuation so far and print what is new, so that multi-byte
	// characters split over tokens come out whole.
	var out []int
	printed := 0
	fmt.Fprint(w, prompt)
	opts.OnToken = func(t int32) error {
		out = append(out, int(t))
		text := tok.Decode(out)
		if n := validPrefix(text); n > printed {
			fmt.Fprint(w, text[printed:n])
			printed = n
		}
		return nil
	}
	if _, err := m.Generate(cmd.Context(), in, opts); err != nil {
		return err
	}
	if text := tok.Decode(out); len(text) > printed {
		fmt.Fprint(w, text[printed:])
	}
	fmt.Fprintln(w)
	return nil
}

// validPrefix returns the length of s without a trailing incomplete UTF-8 sequence.
func validPrefix(s string) int {
	for cut := 0; cut < 4 && cut < len(s); cut++ {
		if strings.ToValidUTF8(s[:len(s)-cut], "\uFFFD") == s[:len(s)-cut] {
			return len(s) - cut
		}
	}
	return len(s)
}
