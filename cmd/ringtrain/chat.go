package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/chat"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/progress"
	"github.com/ringtrain/ringtrain/serve"
)

func newChatCmd(g *globals) *cobra.Command {
	var (
		ckpt, tokSpec, system string
		opts                  model.GenerateOptions
	)
	cmd := &cobra.Command{
		Use:   "chat",
		Short: "Chat with a checkpoint in the terminal",
		Long: `Talk with a fine-tuned model: each line read is a user message, and the model's
answer is printed as it is generated. The conversation is kept and rendered with the
chat template recorded in the checkpoint, exactly as in fine-tuning (the plain
template, with a note, for a checkpoint that records none); when it no longer fits
the model's context, the oldest turns are dropped (the --system message stays).

Commands: /reset starts a new conversation, /exit (or end of input) quits.`,
		Example: `  ringtrain chat --checkpoint sft/step-000300 --system "Answer briefly."
  echo "What is 2+2?" | ringtrain chat --checkpoint sft/step-000300 --temperature 0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			m, err := loadModel(ckpt, tokSpec, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			eng, err := serve.NewEngine(m, 1, log, nil)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			done := make(chan struct{})
			go func() { defer close(done); _ = eng.Run(ctx) }()
			defer func() { cancel(); <-done }()
			return chatLoop(cmd.Context(), eng, system, opts, cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&ckpt, "checkpoint", "", "checkpoint directory (ringtrain's or a Hugging Face GPT-2 directory)")
	fl.StringVar(&tokSpec, "tokenizer", "gpt2", "tokenizer for checkpoints that carry none (Hugging Face directories)")
	fl.StringVar(&system, "system", "", "system message that opens the conversation")
	fl.IntVar(&opts.MaxTokens, "max-tokens", 200, "most new tokens per answer")
	fl.Float64Var(&opts.Temperature, "temperature", 0.8, "sampling temperature (0: greedy)")
	fl.IntVar(&opts.TopK, "top-k", 40, "sample from the k most probable tokens (0: off)")
	fl.Float64Var(&opts.TopP, "top-p", 0, "nucleus sampling mass (0 or 1: off)")
	fl.Uint64Var(&opts.Seed, "seed", 1, "sampling seed (answer n of a session uses seed+n)")
	requireFlags(cmd, "checkpoint")
	return cmd
}

// chatLoop reads user lines from in and streams the answers to out until /exit, the end
// of in, or ctx's end.
func chatLoop(ctx context.Context, eng *serve.Engine, system string, opts model.GenerateOptions, in io.Reader, out io.Writer) error {
	m := eng.Model()
	interactive := false
	if f, ok := in.(*os.File); ok {
		interactive = progress.IsTerminal(f)
	}
	var msgs []chat.Message
	reset := func() {
		msgs = msgs[:0]
		if system != "" {
			msgs = append(msgs, chat.Message{Role: chat.RoleSystem, Content: system})
		}
	}
	reset()
	if interactive {
		fmt.Fprintln(out, "Chatting with", m.Name+". /reset starts over, /exit quits.")
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for turn := uint64(0); ; {
		if interactive {
			fmt.Fprint(out, "> ")
		}
		if !sc.Scan() {
			if interactive {
				fmt.Fprintln(out)
			}
			return sc.Err()
		}
		line := strings.TrimSpace(sc.Text())
		switch line {
		case "":
			continue
		case "/exit", "/quit":
			return nil
		case "/reset":
			reset()
			fmt.Fprintln(out, "(new conversation)")
			continue
		}
		msgs = append(msgs, chat.Message{Role: chat.RoleUser, Content: line})
		p, dropped, err := fitConversation(m, &msgs)
		if err != nil {
			fmt.Fprintln(out, "(error:", err.Error()+")")
			msgs = msgs[:len(msgs)-1]
			continue
		}
		if dropped > 0 {
			fmt.Fprintf(out, "(the %d oldest messages no longer fit the context and are dropped)\n", dropped)
		}
		o := opts
		o.Seed = opts.Seed + turn
		turn++
		st, err := eng.Submit(ctx, serve.Request{Prompt: p, Opts: o})
		if err != nil {
			if ctx.Err() != nil {
				return interruptedError(fmt.Errorf("chat interrupted"))
			}
			return err
		}
		for delta := range st.Deltas() {
			fmt.Fprint(out, delta)
		}
		fmt.Fprintln(out)
		res := st.Result()
		if res.Err != nil {
			if errors.Is(res.Err, context.Canceled) && ctx.Err() != nil {
				return interruptedError(fmt.Errorf("chat interrupted"))
			}
			return res.Err
		}
		msgs = append(msgs, chat.Message{Role: chat.RoleAssistant, Content: res.Text})
	}
}

// fitConversation renders msgs as a prompt, dropping the oldest messages after the
// system message until the prompt leaves room for an answer. It returns how many
// messages it dropped; a last message that does not fit alone is an error.
func fitConversation(m *serve.Model, msgs *[]chat.Message) (serve.Prompt, int, error) {
	first := 0
	if len(*msgs) > 0 && (*msgs)[0].Role == chat.RoleSystem {
		first = 1
	}
	dropped := 0
	for {
		p, err := m.EncodeExample(chat.Example{Messages: *msgs})
		if err != nil {
			return serve.Prompt{}, 0, err
		}
		if len(p.IDs) < m.Context() {
			return p, dropped, nil
		}
		if len(*msgs)-first <= 1 {
			return serve.Prompt{}, 0, fmt.Errorf("the message is %d tokens with the template; the model's context is %d", len(p.IDs), m.Context())
		}
		// Drop the oldest turn: its user message and the answer after it.
		*msgs = append((*msgs)[:first], (*msgs)[first+1:]...)
		dropped++
		for len(*msgs)-first > 1 && (*msgs)[first].Role == chat.RoleAssistant {
			*msgs = append((*msgs)[:first], (*msgs)[first+1:]...)
			dropped++
		}
	}
}
