// Package serve runs a trained GPT for many users at once: an Engine that owns the
// model and decodes every request in progress together (model.BatchDecoder), and an
// HTTP server with OpenAI-style endpoints on top of it.
//
// # Who calls it
//
// cmd/ringtrain's `generate --prompts` (a file of prompts, evaluated by exact match),
// `chat` (an interactive terminal) and `serve` (HTTP) all load a checkpoint into a
// Model, start an Engine and submit requests to it.
//
// # Usage
//
//	m, err := serve.NewModel(ck, tok, "my-model")            // checkpoint + its tokenizer
//	eng, err := serve.NewEngine(m, 8, log, met)              // up to 8 sequences per step
//	go eng.Run(ctx)                                          // the one decode loop (Server.Serve runs it itself)
//	p, err := m.EncodeExample(chat.Example{Messages: msgs}) // the template the model was tuned with
//	st, err := eng.Submit(ctx, serve.Request{Prompt: p, Opts: model.GenerateOptions{MaxTokens: 64}})
//	for delta := range st.Deltas() { fmt.Print(delta) }     // text as it is generated
//	res := st.Result()                                       // whole text, finish reason, token counts
//
//	reg := prometheus.NewRegistry()
//	met, err := serve.NewMetrics(reg)
//	srv := serve.NewServer(eng, serve.DefaultLimits(), reg, log, met) // an http.Handler
//	err = srv.Serve(ctx, ln, 30*time.Second) // runs eng too; graceful shutdown when ctx ends
//
// # Layers
//
// Model turns text and conversations into prompt tokens: it applies the chat template
// recorded in the checkpoint (chat.Plain for conversations when none is recorded),
// exactly as training rendered them, and names the stop strings of the template.
// textStream turns a sequence's tokens into text as they come: it holds back an
// incomplete UTF-8 character and any tail that could begin a stop string, and stops the
// sequence when a stop string appears. Engine is the single goroutine that owns the
// GPT: requests join the batch between steps when there is room (continuous batching)
// and leave when they finish or their context ends. Server validates requests (body
// size, prompt length against the context, max_tokens), maps them to Engine requests,
// and writes OpenAI-shaped JSON or server-sent events.
//
// # Why one decode loop
//
// The GPT's backend is used by one goroutine at a time, and decoding several sequences
// together reads each weight matrix once per step for all of them, which is where the
// throughput comes from. A sequence's tokens do not depend on the batch it ran in (see
// model.BatchDecoder), so a greedy request gets the same answer under load as alone.
package serve
