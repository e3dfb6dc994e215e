package serve

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/chat"
	"github.com/ringtrain/ringtrain/model"
)

// TestEngineSubmit checks Submit's errors (bad options, a context that ends while the
// request waits for a row, a stopped engine) and that streamed pieces add up to the
// result.
func TestEngineSubmit(t *testing.T) {
	m := loadTiny(t, chat.Plain)
	if _, err := NewEngine(m, 0, nil, nil); !errors.Is(err, model.ErrBadOption) {
		t.Fatalf("batch 0: %v", err)
	}
	eng, err := NewEngine(m, 1, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = eng.Run(ctx) }()

	if _, err := eng.Submit(context.Background(), Request{Prompt: m.EncodeText("a"), Opts: model.GenerateOptions{MaxTokens: 0}}); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "max_tokens=0") {
		t.Errorf("max_tokens 0: %v, want ErrBadRequest naming max_tokens", err)
	}

	// Hold the one row, then a second request waits until its context ends.
	busy, err := eng.Submit(context.Background(), Request{Prompt: m.EncodeText(busyPrompt(t, m)), Opts: model.GenerateOptions{MaxTokens: 5000}})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := eng.Submit(wctx, Request{Prompt: m.EncodeText("b"), Opts: model.GenerateOptions{MaxTokens: 3}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting past the deadline: %v", err)
	}
	var streamed strings.Builder
	for d := range busy.Deltas() {
		streamed.WriteString(d)
	}
	res := busy.Result()
	if res.Err != nil || res.Finish != FinishLength || res.CompletionTokens != 5000 || streamed.String() != res.Text {
		t.Errorf("busy request: %+v; streamed text equal: %v", res.Err, streamed.String() == res.Text)
	}

	stop()
	<-done
	if _, err := eng.Submit(context.Background(), Request{Prompt: m.EncodeText("a"), Opts: model.GenerateOptions{MaxTokens: 1}}); !errors.Is(err, ErrStopped) {
		t.Errorf("after Run returned: %v, want ErrStopped", err)
	}
}

// TestModelPrompts checks the prompts of text, pairs and conversations, and the note
// of a checkpoint without a template.
func TestModelPrompts(t *testing.T) {
	tuned, plain := loadTiny(t, chat.Plain), loadTiny(t, "")
	if tuned.TemplateNote() != "" || !strings.Contains(plain.TemplateNote(), "records no chat template") {
		t.Errorf("notes: %q, %q", tuned.TemplateNote(), plain.TemplateNote())
	}
	conv := chat.Example{Messages: []chat.Message{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "ref"}}}
	p, err := plain.EncodeExample(conv)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int, len(p.IDs))
	for i, id := range p.IDs {
		ids[i] = int(id)
	}
	if got := plain.Tok.Decode(ids); got != "### User:\nHi\n\n### Assistant:\n" || len(p.Stops) != 1 || p.Stops[0] != "### User:" {
		t.Errorf("conversation prompt %q, stops %q", got, p.Stops)
	}
	pair, err := tuned.EncodeExample(chat.Example{Prompt: "2+2=", Completion: "4", IsPair: true})
	if err != nil || len(pair.IDs) != 4 || pair.Stops != nil {
		t.Errorf("pair prompt: %+v, %v", pair, err)
	}
	if e := tuned.EncodeText(""); len(e.IDs) != 1 || int(e.IDs[0]) != tuned.Tok.EOT() {
		t.Errorf("empty text: %v, want [EOT]", e.IDs)
	}
}
