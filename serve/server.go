package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ringtrain/ringtrain/chat"
	"github.com/ringtrain/ringtrain/model"
)

// Limits bound what one request may ask. Zero fields take the defaults of
// DefaultLimits.
type Limits struct {
	// MaxBodyBytes is the largest request body (413 beyond).
	MaxBodyBytes int64
	// MaxTokens is the largest max_tokens a request may ask for.
	MaxTokens int
	// DefaultMaxTokens is max_tokens for a request that leaves it out.
	DefaultMaxTokens int
	// MaxStops is the most stop strings a request may give.
	MaxStops int
	// MaxWaiting is the most requests that may wait for a free row of the batch; one
	// more is refused with 429 at once rather than queued without bound.
	MaxWaiting int
}

// DefaultLimits: 1 MiB bodies, max_tokens up to 1024 (default 128), 4 stop strings,
// 64 requests waiting for a row.
func DefaultLimits() Limits {
	return Limits{MaxBodyBytes: 1 << 20, MaxTokens: 1024, DefaultMaxTokens: 128, MaxStops: 4, MaxWaiting: 64}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = d.MaxBodyBytes
	}
	if l.MaxTokens <= 0 {
		l.MaxTokens = d.MaxTokens
	}
	if l.DefaultMaxTokens <= 0 {
		l.DefaultMaxTokens = min(d.DefaultMaxTokens, l.MaxTokens)
	}
	if l.MaxStops <= 0 {
		l.MaxStops = d.MaxStops
	}
	if l.MaxWaiting <= 0 {
		l.MaxWaiting = d.MaxWaiting
	}
	return l
}

// Server is the HTTP face of an Engine, an http.Handler with OpenAI-style endpoints:
//
//	POST /v1/completions       raw text in, its continuation out
//	POST /v1/chat/completions  messages in, the assistant's answer out (the model's template)
//	GET  /v1/models            the one model served
//	GET  /healthz              200 "ok" while the engine runs
//	GET  /metrics              Prometheus, when a gatherer is given
//
// Sampling is greedy unless the request sets temperature above 0. Errors are JSON in
// OpenAI's shape with 4xx codes for bad requests. A request's context is its
// sequence's: a client that goes away ends its sequence at the next step.
type Server struct {
	eng      *Engine
	lim      Limits
	log      *slog.Logger
	met      *Metrics
	mux      *http.ServeMux
	created  int64
	ids      atomic.Uint64
	waiting  atomic.Int64   // requests in Submit
	handlers sync.WaitGroup // requests being answered
}

// NewServer returns the handler for eng. gather serves /metrics (nil: no /metrics);
// log and met may be nil.
func NewServer(eng *Engine, lim Limits, gather prometheus.Gatherer, log *slog.Logger, met *Metrics) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{eng: eng, lim: lim.withDefaults(), log: log, met: met, mux: http.NewServeMux(), created: time.Now().Unix()}
	s.route("POST /v1/completions", "completions", s.completions)
	s.route("POST /v1/chat/completions", "chat_completions", s.chatCompletions)
	s.route("GET /v1/models", "models", s.models)
	s.route("GET /healthz", "healthz", s.healthz)
	if gather != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{}))
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found_error", "", fmt.Sprintf("no endpoint %s %s", r.Method, r.URL.Path))
	})
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handlers.Add(1)
	defer s.handlers.Done()
	s.mux.ServeHTTP(w, r)
}

// statusWriter records the status code written, and passes Flush on.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) route(pattern, endpoint string, h http.HandlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h(sw, r)
		s.met.request(endpoint, sw.code, time.Since(start).Seconds())
	})
	method, path, _ := strings.Cut(pattern, " ")
	s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", method)
		writeError(w, http.StatusMethodNotAllowed, "invalid_request_error", "", fmt.Sprintf("%s %s: use %s", r.Method, path, method))
	})
}

// Serve answers HTTP on ln with s until ctx ends, then shuts down gracefully: it stops
// accepting, lets the requests in progress finish for up to grace, cuts the ones still
// running, stops the engine and waits for every handler. It runs the engine itself (do
// not call eng.Run as well). It returns nil after a shutdown on ctx, or the error that
// stopped the listener.
func (s *Server) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	engCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	engDone := make(chan struct{})
	go func() {
		defer close(engDone)
		_ = s.eng.Run(engCtx)
	}()
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	var err error
	select {
	case err = <-served:
	case <-ctx.Done():
		s.log.Info("shutting down", "grace", grace)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
		if serr := srv.Shutdown(sctx); serr != nil {
			s.log.Warn("requests still running after the grace period; cutting them", "err", serr)
			_ = srv.Close()
		}
		cancel()
		<-served
	}
	stopEngine()
	<-engDone
	s.handlers.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	select {
	case <-s.eng.done:
		writeError(w, http.StatusServiceUnavailable, "server_error", "", "engine stopped")
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	}
}

func (s *Server) models(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, modelList{Object: "list", Data: []modelCard{
		{ID: s.eng.Model().Name, Object: "model", Created: s.created, OwnedBy: "ringtrain"},
	}})
}

// reqError is a request refused with an HTTP status and OpenAI's error fields.
type reqError struct {
	status     int
	typ, param string
	code, msg  string
}

func (e *reqError) Error() string { return e.msg }

func badParam(param, format string, args ...any) *reqError {
	return &reqError{status: http.StatusBadRequest, typ: "invalid_request_error", param: param, msg: fmt.Sprintf(format, args...)}
}

// decode reads the JSON body into v: one object, no unknown fields, within the body
// limit.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) *reqError {
	body := http.MaxBytesReader(w, r.Body, s.lim.MaxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			err = errors.New("data after the JSON object")
		}
	}
	if err == nil {
		return nil
	}
	var tooBig *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		return &reqError{status: http.StatusRequestEntityTooLarge, typ: "invalid_request_error",
			msg: fmt.Sprintf("request body exceeds %d bytes", s.lim.MaxBodyBytes)}
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return badParam("", "request body is not valid JSON: %v", err)
	case errors.As(err, &typ):
		return badParam(typ.Field, "%q must be of JSON type %s, not %s", typ.Field, typ.Type, typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return badParam(field, "unrecognized request argument %q", field)
	}
	return badParam("", "invalid request body: %v", err)
}

// options validates the sampling fields and returns the generation options and the
// request's stop strings.
func (s *Server) options(p samplingParams) (model.GenerateOptions, *reqError) {
	var o model.GenerateOptions
	if p.Model != "" && p.Model != s.eng.Model().Name {
		return o, &reqError{status: http.StatusNotFound, typ: "invalid_request_error", param: "model", code: "model_not_found",
			msg: fmt.Sprintf("the model %q does not exist; this server serves %q", p.Model, s.eng.Model().Name)}
	}
	if p.N != nil && *p.N != 1 {
		return o, badParam("n", "n=%d: only n=1 is supported", *p.N)
	}
	o.MaxTokens = s.lim.DefaultMaxTokens
	if p.MaxTokens != nil {
		o.MaxTokens = *p.MaxTokens
	}
	if o.MaxTokens < 1 || o.MaxTokens > s.lim.MaxTokens {
		return o, badParam("max_tokens", "max_tokens=%d must be in [1, %d]", o.MaxTokens, s.lim.MaxTokens)
	}
	if p.Temperature != nil {
		o.Temperature = *p.Temperature
	}
	if !(o.Temperature >= 0 && o.Temperature <= 2) {
		return o, badParam("temperature", "temperature=%g must be in [0, 2]", o.Temperature)
	}
	if p.TopP != nil {
		o.TopP = *p.TopP
	}
	if !(o.TopP >= 0 && o.TopP <= 1) {
		return o, badParam("top_p", "top_p=%g must be in [0, 1]", o.TopP)
	}
	if p.TopK != nil {
		o.TopK = *p.TopK
	}
	if o.TopK < 0 {
		return o, badParam("top_k", "top_k=%d must be >= 0", o.TopK)
	}
	if p.Seed != nil {
		o.Seed = *p.Seed
	}
	if len(p.Stop) > s.lim.MaxStops {
		return o, badParam("stop", "%d stop strings; at most %d", len(p.Stop), s.lim.MaxStops)
	}
	return o, nil
}

// checkContext refuses a prompt that leaves no room for an answer.
func (s *Server) checkContext(param string, p Prompt) *reqError {
	if n, ctxLen := len(p.IDs), s.eng.Model().Context(); n >= ctxLen {
		return &reqError{status: http.StatusBadRequest, typ: "invalid_request_error", param: param, code: "context_length_exceeded",
			msg: fmt.Sprintf("the prompt has %d tokens; the model's context is %d tokens, which leaves no room for an answer", n, ctxLen)}
	}
	return nil
}

func (s *Server) completions(w http.ResponseWriter, r *http.Request) {
	var req completionRequest
	if e := s.decode(w, r, &req); e != nil {
		writeReqError(w, e)
		return
	}
	if req.Prompt == nil {
		writeReqError(w, badParam("prompt", "prompt is required"))
		return
	}
	opts, e := s.options(req.samplingParams)
	if e != nil {
		writeReqError(w, e)
		return
	}
	p := s.eng.Model().EncodeText(string(*req.Prompt))
	p.Stops = append(p.Stops, req.Stop...)
	if e := s.checkContext("prompt", p); e != nil {
		writeReqError(w, e)
		return
	}
	id := fmt.Sprintf("cmpl-%d-%d", s.created, s.ids.Add(1))
	s.run(w, r, Request{Prompt: p, Opts: opts}, req.Stream, completionFormat{id: id, model: s.eng.Model().Name, created: time.Now().Unix()})
}

func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if e := s.decode(w, r, &req); e != nil {
		writeReqError(w, e)
		return
	}
	opts, e := s.options(req.samplingParams)
	if e != nil {
		writeReqError(w, e)
		return
	}
	p, err := s.eng.Model().EncodeExample(chat.Example{Messages: req.Messages})
	if err != nil {
		writeReqError(w, badParam("messages", "%s", strings.TrimPrefix(err.Error(), chat.ErrBadRow.Error()+": ")))
		return
	}
	p.Stops = append(p.Stops, req.Stop...)
	if e := s.checkContext("messages", p); e != nil {
		writeReqError(w, e)
		return
	}
	id := fmt.Sprintf("chatcmpl-%d-%d", s.created, s.ids.Add(1))
	s.run(w, r, Request{Prompt: p, Opts: opts}, req.Stream, chatFormat{id: id, model: s.eng.Model().Name, created: time.Now().Unix()})
}

// format shapes the responses of one endpoint.
type format interface {
	whole(res Result) any   // the non-streaming response
	first() any             // the first chunk of a stream, or nil
	chunk(delta string) any // a chunk of text
	last(finish string) any // the chunk that carries the finish reason
}

// run submits req and answers with the whole result or a stream of server-sent events.
func (s *Server) run(w http.ResponseWriter, r *http.Request, req Request, stream bool, f format) {
	if n := s.waiting.Add(1); n > int64(s.lim.MaxWaiting) {
		s.waiting.Add(-1)
		writeReqError(w, &reqError{status: http.StatusTooManyRequests, typ: "server_error", code: "server_busy",
			msg: fmt.Sprintf("the server is busy: %d requests already wait for a free row; retry later", s.lim.MaxWaiting)})
		return
	}
	s.met.addWaiting(1)
	st, err := s.eng.Submit(r.Context(), req)
	s.waiting.Add(-1)
	s.met.addWaiting(-1)
	if err != nil {
		switch {
		case errors.Is(err, ErrBadRequest):
			writeReqError(w, badParam("", "%v", err))
		case errors.Is(err, ErrStopped):
			writeError(w, http.StatusServiceUnavailable, "server_error", "", "the server is shutting down")
		default: // the client went away while waiting for a free row
			s.log.Debug("request abandoned before it started", "err", err)
		}
		return
	}
	if !stream {
		res := st.Result()
		if !s.failed(w, r, res, false) {
			writeJSON(w, http.StatusOK, f.whole(res))
		}
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Connection", "keep-alive")
	w.WriteHeader(http.StatusOK)
	if c := f.first(); c != nil {
		writeEvent(w, c)
	}
	for delta := range st.Deltas() {
		writeEvent(w, f.chunk(delta))
	}
	res := st.Result()
	if s.failed(w, r, res, true) {
		return
	}
	writeEvent(w, f.last(res.Finish))
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
	flush(w)
}

// failed reports whether res ended in error, answering the client if it is still there.
func (s *Server) failed(w http.ResponseWriter, r *http.Request, res Result, streaming bool) bool {
	if res.Err == nil {
		return false
	}
	if r.Context().Err() != nil {
		s.log.Debug("client went away", "tokens", res.CompletionTokens)
		return true
	}
	msg := "the server is shutting down"
	if !errors.Is(res.Err, ErrStopped) {
		msg = res.Err.Error()
	}
	if streaming {
		writeEvent(w, apiError{Error: apiErrorBody{Message: msg, Type: "server_error"}})
		return true
	}
	writeError(w, http.StatusServiceUnavailable, "server_error", "", msg)
	return true
}

func writeEvent(w http.ResponseWriter, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	_, _ = fmt.Fprintf(w, "data: %s\n", b.Bytes()) // Encode ended the line
	flush(w)
}

func flush(w http.ResponseWriter) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeReqError(w http.ResponseWriter, e *reqError) {
	body := apiErrorBody{Message: e.msg, Type: e.typ}
	if e.param != "" {
		body.Param = &e.param
	}
	if e.code != "" {
		body.Code = &e.code
	}
	writeJSON(w, e.status, apiError{Error: body})
}

func writeError(w http.ResponseWriter, status int, typ, param, msg string) {
	writeReqError(w, &reqError{status: status, typ: typ, param: param, msg: msg})
}

func usageOf(res Result) *usage {
	return &usage{PromptTokens: res.PromptTokens, CompletionTokens: res.CompletionTokens, TotalTokens: res.PromptTokens + res.CompletionTokens}
}

type completionFormat struct {
	id, model string
	created   int64
}

func (f completionFormat) resp(choice completionChoice) completionResponse {
	return completionResponse{ID: f.id, Object: "text_completion", Created: f.created, Model: f.model, Choices: []completionChoice{choice}}
}

func (f completionFormat) whole(res Result) any {
	r := f.resp(completionChoice{Text: res.Text, FinishReason: &res.Finish})
	r.Usage = usageOf(res)
	return r
}
func (f completionFormat) first() any             { return nil }
func (f completionFormat) chunk(delta string) any { return f.resp(completionChoice{Text: delta}) }
func (f completionFormat) last(finish string) any {
	return f.resp(completionChoice{FinishReason: &finish})
}

type chatFormat struct {
	id, model string
	created   int64
}

func (f chatFormat) resp(object string, choice chatChoice) chatResponse {
	return chatResponse{ID: f.id, Object: object, Created: f.created, Model: f.model, Choices: []chatChoice{choice}}
}

func (f chatFormat) whole(res Result) any {
	r := f.resp("chat.completion", chatChoice{Message: &chat.Message{Role: chat.RoleAssistant, Content: res.Text}, FinishReason: &res.Finish})
	r.Usage = usageOf(res)
	return r
}
func (f chatFormat) first() any {
	return f.resp("chat.completion.chunk", chatChoice{Delta: &chatDelta{Role: chat.RoleAssistant}})
}
func (f chatFormat) chunk(delta string) any {
	return f.resp("chat.completion.chunk", chatChoice{Delta: &chatDelta{Content: delta}})
}
func (f chatFormat) last(finish string) any {
	return f.resp("chat.completion.chunk", chatChoice{Delta: &chatDelta{}, FinishReason: &finish})
}
