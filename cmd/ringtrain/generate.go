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
	var (
		ckpt, prompt, tokSpec string
		opts                  = model.GenerateOptions{StopAtEOT: true}
	)
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Generate text from a checkpoint",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ck, err := model.LoadCheckpoint(ckpt)
			if err != nil {
				return err
			}
			tok, err := checkpointTokenizer(ck, tokSpec)
			if err != nil {
				return fmt.Errorf("checkpoint %s: %w", ckpt, err)
			}
			m, err := model.New(ck.Config, nil)
			if err != nil {
				return err
			}
			copy(m.Params.Slab, ck.Params)
			return generate(cmd, g.notes(cmd, slog.LevelInfo), m, tok, prompt, opts, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&ckpt, "checkpoint", "", "checkpoint directory (ringtrain's or a Hugging Face GPT-2 directory)")
	fl.StringVar(&prompt, "prompt", "\n", "text to continue")
	fl.StringVar(&tokSpec, "tokenizer", "gpt2", "tokenizer for checkpoints that carry none (Hugging Face directories)")
	fl.IntVar(&opts.MaxTokens, "max-tokens", 200, "most new tokens")
	fl.Float64Var(&opts.Temperature, "temperature", 0.8, "sampling temperature (0: greedy)")
	fl.IntVar(&opts.TopK, "top-k", 40, "sample from the k most probable tokens (0: off)")
	fl.Float64Var(&opts.TopP, "top-p", 0, "nucleus sampling mass (0 or 1: off)")
	fl.Uint64Var(&opts.Seed, "seed", 1, "sampling seed")
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
