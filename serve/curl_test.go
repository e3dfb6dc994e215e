package serve

import (
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/chat"
)

// TestCurl talks to Serve on a real listener with curl, as the docs do: a completion, a
// streamed chat answer, bad JSON and an oversized prompt.
func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed (apt-get install -y curl); the net/http client tests cover the same endpoints")
	}
	m := loadTiny(t, chat.Plain)
	eng, err := NewEngine(m, 4, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- NewServer(eng, Limits{}, nil, nil, nil).Serve(ctx, ln, 10*time.Second) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	run := func(args ...string) (body string, status string) {
		t.Helper()
		cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ccancel()
		out, err := exec.CommandContext(cctx, curl, append([]string{"-sS", "-w", "\n%{http_code}"}, args...)...).Output()
		if err != nil {
			t.Fatalf("curl %v: %v", args, err)
		}
		s := string(out)
		i := strings.LastIndexByte(s, '\n')
		return s[:i], s[i+1:]
	}

	body, status := run(base+"/v1/completions", "-H", "Content-Type: application/json",
		"-d", `{"model":"tiny","prompt":"Hello","max_tokens":12}`)
	var c completionResponse
	text, finish := alone(t, m, m.EncodeText("Hello"), 12)
	if status != "200" || json.Unmarshal([]byte(body), &c) != nil || len(c.Choices) != 1 || c.Choices[0].Text != text || *c.Choices[0].FinishReason != finish {
		t.Errorf("completion: %s %s, want text %q", status, body, text)
	}

	body, status = run("-N", base+"/v1/chat/completions", "-H", "Content-Type: application/json",
		"-d", `{"messages":[{"role":"user","content":"Hi"}],"max_tokens":12,"stream":true}`)
	p, err := m.EncodeExample(chat.Example{Messages: []chat.Message{{Role: "user", Content: "Hi"}}})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := alone(t, m, p, 12)
	var got strings.Builder
	events := strings.Split(strings.TrimSuffix(body, "\n\n"), "\n\n")
	for _, ev := range events[:len(events)-1] {
		var ch chatResponse
		if err := json.Unmarshal([]byte(strings.TrimPrefix(ev, "data: ")), &ch); err != nil || ch.Object != "chat.completion.chunk" {
			t.Fatalf("event %q: %v", ev, err)
		}
		got.WriteString(ch.Choices[0].Delta.Content)
	}
	if status != "200" || events[len(events)-1] != "data: [DONE]" || got.String() != want {
		t.Errorf("chat stream: %s, last event %q, text %q, want %q", status, events[len(events)-1], got.String(), want)
	}

	body, status = run(base+"/v1/completions", "-d", `{"prompt":`)
	if status != "400" || !strings.Contains(body, `"type":"invalid_request_error"`) || !strings.Contains(body, "not valid JSON") {
		t.Errorf("bad JSON: %s %s", status, body)
	}
	body, status = run(base+"/v1/completions", "-d", `{"prompt":"`+strings.Repeat("z", 100)+`"}`)
	if status != "400" || !strings.Contains(body, `"code":"context_length_exceeded"`) {
		t.Errorf("oversized prompt: %s %s", status, body)
	}
	body, status = run(base+"/v1/completions", "-d", `{"prompt":"a","logit_bias":{}}`)
	if status != "400" || !strings.Contains(body, `"param":"logit_bias"`) {
		t.Errorf("unknown field: %s %s", status, body)
	}
}
