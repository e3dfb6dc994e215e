package main

import (
	"fmt"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/serve"
)

func newServeCmd(g *globals) *cobra.Command {
	var (
		ckpt, tokSpec, addr, name string
		batch                     int
		lim                       = serve.DefaultLimits()
		grace                     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve a checkpoint over HTTP with OpenAI-style endpoints",
		Long: `Answer HTTP requests with the checkpoint's model:

  POST /v1/completions       {"prompt": "...", "max_tokens": 64}
  POST /v1/chat/completions  {"messages": [{"role": "user", "content": "..."}]}
  GET  /v1/models, GET /healthz, GET /metrics (Prometheus)

Requests and responses have OpenAI's shape ("stream": true answers with server-sent
events ending in "data: [DONE]"). Decoding is greedy unless a request sets
temperature. Concurrent requests are decoded together, up to --batch at a time;
the others wait for a free row. Chat messages are rendered with the chat template
recorded in the checkpoint. On SIGTERM or SIGINT the server stops accepting, lets
the requests in progress finish for up to --grace, and exits 0.`,
		Example: `  ringtrain serve --checkpoint sft/step-000300 --addr :8080
  curl localhost:8080/v1/chat/completions -d '{"messages":[{"role":"user","content":"Hi"}]}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if batch < 1 {
				return usageErrorf("--batch %d: must be >= 1", batch)
			}
			if lim.MaxBodyBytes < 1 || lim.MaxTokens < 1 || lim.DefaultMaxTokens < 1 || lim.MaxWaiting < 1 || lim.DefaultMaxTokens > lim.MaxTokens {
				return usageErrorf("--max-body-bytes, --max-tokens-limit, --default-max-tokens and --max-waiting must be >= 1, and --default-max-tokens <= --max-tokens-limit")
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			m, err := loadModel(ckpt, tokSpec, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if name != "" {
				m.Name = name
			}
			reg := newRegistry()
			met, err := serve.NewMetrics(reg)
			if err != nil {
				return err
			}
			eng, err := serve.NewEngine(m, batch, log, met)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("--addr %s: %w", addr, err)
			}
			log.Info("serving", "model", m.Name, "url", "http://"+ln.Addr().String()+"/v1", "batch", batch,
				"context", m.Context(), "chat_template", m.Template.Name())
			return serve.NewServer(eng, lim, reg, log, met).Serve(cmd.Context(), ln, grace)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&ckpt, "checkpoint", "", "checkpoint directory (ringtrain's or a Hugging Face GPT-2 directory)")
	fl.StringVar(&tokSpec, "tokenizer", "gpt2", "tokenizer for checkpoints that carry none (Hugging Face directories)")
	fl.StringVar(&addr, "addr", ":8080", "host:port to listen on")
	fl.StringVar(&name, "model-name", "", `the model id of requests and responses (default: the checkpoint directory's name)`)
	fl.IntVar(&batch, "batch", 8, "most requests decoded together")
	fl.Int64Var(&lim.MaxBodyBytes, "max-body-bytes", lim.MaxBodyBytes, "largest request body (413 beyond)")
	fl.IntVar(&lim.MaxTokens, "max-tokens-limit", lim.MaxTokens, "largest max_tokens a request may ask for")
	fl.IntVar(&lim.DefaultMaxTokens, "default-max-tokens", lim.DefaultMaxTokens, "max_tokens of a request that leaves it out")
	fl.IntVar(&lim.MaxWaiting, "max-waiting", lim.MaxWaiting, "most requests waiting for a free row (429 beyond)")
	fl.DurationVar(&grace, "grace", 30*time.Second, "how long requests in progress may run on after SIGTERM")
	requireFlags(cmd, "checkpoint")
	return cmd
}
