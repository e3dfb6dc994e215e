package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringtrain/ringtrain/chat"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/tokenizer"
)

// loadTiny saves TinyCheckpoint with template and loads it as a Model named "tiny".
func loadTiny(t *testing.T, template string) *Model {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ck")
	TinyCheckpoint(t, dir, template)
	ck, err := model.LoadCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Unmarshal(ck.Tokenizer)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewModel(ck, tok, "tiny")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// testServer is a Server over a running engine behind httptest, with its registry.
type testServer struct {
	*httptest.Server
	m   *Model
	reg *prometheus.Registry
}

func startServer(t *testing.T, batch int, lim Limits) *testServer {
	t.Helper()
	ts, start := startServerPaused(t, batch, lim)
	start()
	return ts
}

// startServerPaused is startServer with the engine's decode loop started by the
// returned function: requests wait for it in Submit.
func startServerPaused(t *testing.T, batch int, lim Limits) (*testServer, func()) {
	t.Helper()
	m := loadTiny(t, chat.Plain)
	reg := prometheus.NewRegistry()
	met, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := NewEngine(m, batch, nil, met)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	started := false
	start := func() {
		started = true
		go func() { defer close(done); _ = eng.Run(ctx) }()
	}
	ts := httptest.NewServer(NewServer(eng, lim, reg, nil, met))
	t.Cleanup(func() {
		cancel()
		if !started {
			start()
		}
		ts.Close()
		<-done
	})
	return &testServer{Server: ts, m: m, reg: reg}, start
}

// post sends body to path and returns the status and the response body.
func post(t *testing.T, client *http.Client, url, body string) (int, []byte) {
	t.Helper()
	resp, err := client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// alone is what the model generates for p without any server: Generate, greedy, up
// to maxTokens, stopping at EOT, with the text cut at the first stop string.
func alone(t *testing.T, m *Model, p Prompt, maxTokens int) (text, finish string) {
	t.Helper()
	return aloneWith(t, m, p, model.GenerateOptions{MaxTokens: maxTokens})
}

// aloneWith is alone with sampling options.
func aloneWith(t *testing.T, m *Model, p Prompt, o model.GenerateOptions) (text, finish string) {
	t.Helper()
	o.StopAtEOT, o.EOT = true, int32(m.Tok.EOT())
	g, err := m.GPT.Generate(context.Background(), p.IDs, o)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int, len(g.Tokens))
	for i, id := range g.Tokens {
		ids[i] = int(id)
	}
	text = m.Tok.Decode(ids)
	finish = FinishStop
	if g.Reason == model.StopMaxTokens {
		finish = FinishLength
	}
	if cut := firstStop(text, p.Stops); cut >= 0 {
		text, finish = text[:cut], FinishStop
	}
	return text, finish
}

func TestCompletions(t *testing.T) {
	ts := startServer(t, 4, Limits{})
	code, body := post(t, ts.Client(), ts.URL+"/v1/completions", `{"model":"tiny","prompt":"The cat ","max_tokens":20}`)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var resp completionResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	text, finish := alone(t, ts.m, ts.m.EncodeText("The cat "), 20)
	if resp.Object != "text_completion" || resp.Model != "tiny" || len(resp.Choices) != 1 ||
		resp.Choices[0].Text != text || *resp.Choices[0].FinishReason != finish {
		t.Fatalf("response %s, want text %q finish %s", body, text, finish)
	}
	if u := resp.Usage; u == nil || u.PromptTokens != 8 || u.CompletionTokens < 1 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
		t.Errorf("usage %+v", resp.Usage)
	}

	// The same request streamed: the chunks add up to the same text.
	got, finishes := streamText(t, ts.Client(), ts.URL+"/v1/completions", `{"prompt":"The cat ","max_tokens":20,"stream":true}`, "text")
	if got != text || finishes != finish {
		t.Errorf("stream: %q (finish %q), want %q (%s)", got, finishes, text, finish)
	}
}

func TestChatCompletions(t *testing.T) {
	ts := startServer(t, 4, Limits{})
	msgs := []chat.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Say hi"}}
	raw, _ := json.Marshal(msgs)
	code, body := post(t, ts.Client(), ts.URL+"/v1/chat/completions", fmt.Sprintf(`{"model":"tiny","messages":%s,"max_tokens":30}`, raw))
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var resp chatResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	p, err := ts.m.EncodeExample(chat.Example{Messages: msgs})
	if err != nil {
		t.Fatal(err)
	}
	text, finish := alone(t, ts.m, p, 30)
	if resp.Object != "chat.completion" || len(resp.Choices) != 1 || resp.Choices[0].Message == nil ||
		resp.Choices[0].Message.Role != "assistant" || resp.Choices[0].Message.Content != text || *resp.Choices[0].FinishReason != finish {
		t.Fatalf("response %s, want content %q finish %s", body, text, finish)
	}
	got, f := streamText(t, ts.Client(), ts.URL+"/v1/chat/completions", fmt.Sprintf(`{"messages":%s,"max_tokens":30,"stream":true}`, raw), "content")
	if got != text || f != finish {
		t.Errorf("stream: %q (finish %q), want %q (%s)", got, f, text, finish)
	}
}

// streamText posts a streaming request and returns the concatenated text (the choices'
// field: "text" or the delta's "content") and the finish reason, checking the event
// framing and the final [DONE].
func streamText(t *testing.T, client *http.Client, url, body, field string) (text, finish string) {
	t.Helper()
	resp, err := client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var sb strings.Builder
	sc := bufio.NewScanner(resp.Body)
	done := false
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || done {
			t.Fatalf("unexpected line %q (after [DONE]: %v)", line, done)
		}
		if data == "[DONE]" {
			done = true
			continue
		}
		var chunk struct {
			Choices []struct {
				Text         string `json:"text"`
				Delta        *struct{ Content string }
				FinishReason *string `json:"finish_reason"`
			}
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil || len(chunk.Choices) != 1 {
			t.Fatalf("chunk %s: %v", data, err)
		}
		c := chunk.Choices[0]
		if field == "text" {
			sb.WriteString(c.Text)
		} else if c.Delta != nil {
			sb.WriteString(c.Delta.Content)
		}
		if c.FinishReason != nil {
			finish = *c.FinishReason
		}
	}
	if !done {
		t.Fatal("stream did not end with data: [DONE]")
	}
	return sb.String(), finish
}

func TestRequestErrors(t *testing.T) {
	ts := startServer(t, 2, Limits{MaxBodyBytes: 4096, MaxTokens: 50})
	long := strings.Repeat("x", 64)
	tests := []struct {
		name, path, body string
		status           int
		param, code      string
		inMsg            string
	}{
		{"bad json", "/v1/completions", `{"prompt": "a",`, 400, "", "", "not valid JSON"},
		{"not an object", "/v1/completions", `[1]`, 400, "", "", "must be of JSON type"},
		{"unknown field", "/v1/completions", `{"prompt":"a","best_of":2}`, 400, "best_of", "", `unrecognized request argument "best_of"`},
		{"unknown model", "/v1/completions", `{"model":"gpt-4","prompt":"a"}`, 404, "model", "model_not_found", `"gpt-4" does not exist`},
		{"no prompt", "/v1/completions", `{"max_tokens":3}`, 400, "prompt", "", "prompt is required"},
		{"prompt too long", "/v1/completions", `{"prompt":"` + long + `"}`, 400, "prompt", "context_length_exceeded", "64 tokens; the model's context is 64"},
		{"body too big", "/v1/completions", `{"prompt":"` + strings.Repeat("y", 5000) + `"}`, 413, "", "", "exceeds 4096 bytes"},
		{"max_tokens over the limit", "/v1/completions", `{"prompt":"a","max_tokens":51}`, 400, "max_tokens", "", "must be in [1, 50]"},
		{"max_tokens zero", "/v1/completions", `{"prompt":"a","max_tokens":0}`, 400, "max_tokens", "", "must be in [1, 50]"},
		{"n", "/v1/completions", `{"prompt":"a","n":2}`, 400, "n", "", "only n=1"},
		{"temperature", "/v1/completions", `{"prompt":"a","temperature":-1}`, 400, "temperature", "", "must be in [0, 2]"},
		{"top_p", "/v1/completions", `{"prompt":"a","top_p":1.5}`, 400, "top_p", "", "must be in [0, 1]"},
		{"stop type", "/v1/completions", `{"prompt":"a","stop":3}`, 400, "", "", "stop must be a string or a list"},
		{"empty messages", "/v1/chat/completions", `{"messages":[]}`, 400, "messages", "", "empty conversation"},
		{"bad role", "/v1/chat/completions", `{"messages":[{"role":"robot","content":"x"}]}`, 400, "messages", "", `unknown role "robot"`},
		{"long conversation", "/v1/chat/completions", `{"messages":[{"role":"user","content":"` + long + `"}]}`, 400, "messages", "context_length_exceeded", "leaves no room"},
		{"unknown path", "/v1/embeddings", `{}`, 404, "", "", "no endpoint POST /v1/embeddings"},
	}
	for _, tt := range tests {
		code, body := post(t, ts.Client(), ts.URL+tt.path, tt.body)
		var e apiError
		if err := json.Unmarshal(body, &e); err != nil {
			t.Errorf("%s: body %s is not an OpenAI error: %v", tt.name, body, err)
			continue
		}
		param, ecode := "", ""
		if e.Error.Param != nil {
			param = *e.Error.Param
		}
		if e.Error.Code != nil {
			ecode = *e.Error.Code
		}
		if code != tt.status || param != tt.param || ecode != tt.code || !strings.Contains(e.Error.Message, tt.inMsg) || e.Error.Type == "" {
			t.Errorf("%s: %d %s, want %d param %q code %q message containing %q", tt.name, code, body, tt.status, tt.param, tt.code, tt.inMsg)
		}
	}
	resp, err := ts.Client().Get(ts.URL + "/v1/completions")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/completions: %d, want 405", resp.StatusCode)
	}
}

func TestModelsHealthMetrics(t *testing.T) {
	ts := startServer(t, 2, Limits{})
	get := func(path string) string {
		resp, err := ts.Client().Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	var list modelList
	if err := json.Unmarshal([]byte(get("/v1/models")), &list); err != nil || list.Object != "list" || len(list.Data) != 1 || list.Data[0].ID != "tiny" {
		t.Errorf("models: %+v, %v", list, err)
	}
	if h := get("/healthz"); h != "ok\n" {
		t.Errorf("healthz: %q", h)
	}
	post(t, ts.Client(), ts.URL+"/v1/completions", `{"prompt":"a","max_tokens":5}`)
	post(t, ts.Client(), ts.URL+"/v1/completions", `{"prompt":"a","max_tokens":0}`)
	m := get("/metrics")
	for _, want := range []string{
		`ringtrain_serve_requests_total{code="200",endpoint="completions"} 1`,
		`ringtrain_serve_requests_total{code="400",endpoint="completions"} 1`,
		`ringtrain_serve_request_duration_seconds_count{endpoint="completions"} 2`,
		`ringtrain_serve_prompt_tokens_total 1`,
		`ringtrain_serve_batch_size_count`,
		`ringtrain_serve_active_sequences 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}
	if !strings.Contains(m, "ringtrain_serve_generated_tokens_total") {
		t.Error("metrics lack generated tokens")
	}
}

// TestConcurrentClientsMatchAlone sends many greedy requests at once (more than the
// batch holds) and checks each answer against the same request made alone, and that
// the engine did batch them.
func TestConcurrentClientsMatchAlone(t *testing.T) {
	ts, start := startServerPaused(t, 4, Limits{})
	prompts := []string{"a", "Hello, ", "The quick brown fox", "1 2 3 ", "xyz", "Once upon a time", "#", "~~~~ ", "q", "Roses are red"}
	type answer struct{ text, finish string }
	want := make([]answer, len(prompts))
	for i, p := range prompts {
		text, finish := alone(t, ts.m, ts.m.EncodeText(p), 10+3*i)
		want[i] = answer{text, finish}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(prompts))
	for i, p := range prompts {
		wg.Go(func() {
			body, _ := json.Marshal(map[string]any{"prompt": p, "max_tokens": 10 + 3*i, "stream": i%2 == 0})
			resp, err := ts.Client().Post(ts.URL+"/v1/completions", "application/json", bytes.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var got answer
			if i%2 == 0 {
				for _, line := range strings.Split(string(raw), "\n") {
					data, _ := strings.CutPrefix(line, "data: ")
					var c completionResponse
					if json.Unmarshal([]byte(data), &c) == nil && len(c.Choices) == 1 {
						got.text += c.Choices[0].Text
						if c.Choices[0].FinishReason != nil {
							got.finish = *c.Choices[0].FinishReason
						}
					}
				}
			} else {
				var c completionResponse
				if err := json.Unmarshal(raw, &c); err != nil || len(c.Choices) != 1 {
					errs <- fmt.Errorf("prompt %d: %s", i, raw)
					return
				}
				got = answer{c.Choices[0].Text, *c.Choices[0].FinishReason}
			}
			if got != want[i] {
				errs <- fmt.Errorf("prompt %q: got %+v, want %+v (alone)", p, got, want[i])
			}
		})
	}
	// Let the engine run once every request waits for it, so that the first steps are
	// full whatever the scheduling of the clients.
	deadline := time.Now().Add(30 * time.Second)
	for gauge(t, ts.reg, "ringtrain_serve_waiting_requests") != float64(len(prompts)) {
		if time.Now().After(deadline) {
			t.Fatal("the requests did not all reach the engine within 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	sum, count := histogram(t, ts.reg, "ringtrain_serve_batch_size")
	if count == 0 || sum <= count {
		t.Errorf("batch size: %v rows over %v steps; the concurrent requests never shared a step", sum, count)
	}
}

// histogram returns the sum and count of a histogram in reg.
func histogram(t *testing.T, reg *prometheus.Registry, name string) (sum, count float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleSum(), float64(h.GetSampleCount())
		}
	}
	t.Fatalf("no metric %s", name)
	return 0, 0
}

// gauge returns the value of an unlabelled gauge in reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// busyPrompt returns a prompt that greedy decoding continues for 5000 tokens without
// EOT, so that a request with it holds its row for the whole of a test.
func busyPrompt(t *testing.T, m *Model) string {
	t.Helper()
	for _, c := range TinyCorpus {
		p := string(c)
		g, err := m.GPT.Generate(context.Background(), m.EncodeText(p).IDs, model.GenerateOptions{
			MaxTokens: 5000, StopAtEOT: true, EOT: int32(m.Tok.EOT())})
		if err != nil {
			t.Fatal(err)
		}
		if g.Reason == model.StopMaxTokens {
			return p
		}
	}
	t.Fatal("greedy decoding of every one-character prompt meets EOT within 5000 tokens")
	return ""
}

// TestClientGoneEndsSequence starts a long streaming request, reads one chunk and goes
// away: the engine must drop the sequence.
func TestClientGoneEndsSequence(t *testing.T) {
	ts := startServer(t, 2, Limits{MaxTokens: 5000})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+"/v1/completions",
		strings.NewReader(fmt.Sprintf(`{"prompt":%q,"max_tokens":5000,"stream":true}`, busyPrompt(t, ts.m))))
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if gauge(t, ts.reg, "ringtrain_serve_active_sequences") != 1 {
		t.Fatal("the streaming request is not being decoded")
	}
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for gauge(t, ts.reg, "ringtrain_serve_active_sequences") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sequence of a client that went away is still decoded after 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServeGracefulShutdown runs Serve on a real listener, cancels its context while a
// request is in progress, and checks that the request completes, that new connections
// are refused, and that Serve returns nil.
func TestServeGracefulShutdown(t *testing.T) {
	m := loadTiny(t, chat.Plain)
	eng, err := NewEngine(m, 2, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(eng, Limits{MaxTokens: 5000}, nil, nil, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln, 30*time.Second) }()

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	code, body := post(t, client, url+"/v1/completions", `{"prompt":"abc","max_tokens":5}`)
	if code != http.StatusOK {
		t.Fatalf("before shutdown: %d %s", code, body)
	}
	// A long streaming request in flight while shutdown begins.
	resp, err := client.Post(url+"/v1/completions", "application/json",
		strings.NewReader(fmt.Sprintf(`{"prompt":%q,"max_tokens":5000,"stream":true}`, busyPrompt(t, m))))
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	cancel()
	rest, err := io.ReadAll(br)
	resp.Body.Close()
	if err != nil || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Fatalf("in-flight stream after shutdown began: %v, ends %q", err, rest[max(0, len(rest)-40):])
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return 30s after its context ended")
	}
	if _, err := client.Post(url+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"a"}`)); err == nil {
		t.Error("a request after shutdown was answered")
	}
	if _, err := eng.Submit(context.Background(), Request{Prompt: m.EncodeText("a"), Opts: model.GenerateOptions{MaxTokens: 1}}); !errors.Is(err, ErrStopped) {
		t.Errorf("Submit after shutdown: %v, want ErrStopped", err)
	}
}

// TestStopAndSampling checks a request's stop strings and seeded sampling.
func TestStopAndSampling(t *testing.T) {
	ts := startServer(t, 4, Limits{})
	text, _ := alone(t, ts.m, ts.m.EncodeText("Hello"), 30)
	if len(text) < 8 {
		t.Fatalf("greedy answer %q too short to pick a stop string from", text)
	}
	stop := text[5:7]
	body, _ := json.Marshal(map[string]any{"prompt": "Hello", "max_tokens": 30, "stop": []string{stop}})
	code, raw := post(t, ts.Client(), ts.URL+"/v1/completions", string(body))
	var c completionResponse
	if err := json.Unmarshal(raw, &c); err != nil || code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	if want := text[:strings.Index(text, stop)]; c.Choices[0].Text != want || *c.Choices[0].FinishReason != FinishStop {
		t.Errorf("stop %q: %q (%s), want %q (stop)", stop, c.Choices[0].Text, *c.Choices[0].FinishReason, want)
	}

	o := model.GenerateOptions{MaxTokens: 25, Temperature: 0.9, TopK: 20, Seed: 42}
	want, wantFinish := aloneWith(t, ts.m, ts.m.EncodeText("Hello"), o)
	for range 2 {
		code, raw := post(t, ts.Client(), ts.URL+"/v1/completions", `{"prompt":"Hello","max_tokens":25,"temperature":0.9,"top_k":20,"seed":42}`)
		var c completionResponse
		if err := json.Unmarshal(raw, &c); err != nil || code != 200 {
			t.Fatalf("%d %s", code, raw)
		}
		if c.Choices[0].Text != want || *c.Choices[0].FinishReason != wantFinish {
			t.Errorf("seeded sampling: %q, want %q as Generate gives alone", c.Choices[0].Text, want)
		}
	}
}

// TestBusy fills the one row of the batch and the one waiting place, and checks that
// the next request is refused with 429 while the waiting one is answered later.
func TestBusy(t *testing.T) {
	ts := startServer(t, 1, Limits{MaxWaiting: 1, MaxTokens: 5000})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+"/v1/completions",
		strings.NewReader(fmt.Sprintf(`{"prompt":%q,"max_tokens":5000,"stream":true}`, busyPrompt(t, ts.m))))
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	waited := make(chan int, 1)
	go func() {
		resp, err := ts.Client().Post(ts.URL+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"b","max_tokens":3}`))
		if err != nil {
			waited <- 0
			return
		}
		resp.Body.Close()
		waited <- resp.StatusCode
	}()
	deadline := time.Now().Add(10 * time.Second)
	for gauge(t, ts.reg, "ringtrain_serve_waiting_requests") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the second request never waited for a row")
		}
		time.Sleep(5 * time.Millisecond)
	}
	code, body := post(t, ts.Client(), ts.URL+"/v1/completions", `{"prompt":"c","max_tokens":3}`)
	if code != http.StatusTooManyRequests || !strings.Contains(string(body), `"code":"server_busy"`) {
		t.Errorf("third request: %d %s, want 429 server_busy", code, body)
	}
	cancel() // the long request goes away; the waiting one gets the row
	if code := <-waited; code != http.StatusOK {
		t.Errorf("the waiting request got %d, want 200", code)
	}
}

func jsonDecode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
