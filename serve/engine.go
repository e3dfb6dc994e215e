package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/ringtrain/ringtrain/model"
)

// Request is one generation for an Engine.
type Request struct {
	// Prompt is what to continue, from Model.EncodeText or Model.EncodeExample.
	Prompt Prompt
	// Opts are the sampling options. MaxTokens must be set; the engine sets StopAtEOT
	// and EOT (the tokenizer's) and OnToken.
	Opts model.GenerateOptions
}

// Finish reasons, as OpenAI names them.
const (
	FinishStop   = "stop"   // EOT or a stop string
	FinishLength = "length" // max_tokens
)

// Result is a finished request.
type Result struct {
	// Text is the answer, cut before a stop string.
	Text string
	// PromptTokens counts the prompt's tokens; CompletionTokens the generated ones
	// (those of a stop string included, EOT not).
	PromptTokens, CompletionTokens int
	// Finish is FinishStop or FinishLength; "" with Err.
	Finish string
	// Err is what ended the request early: its context's error, or ErrStopped.
	Err error
}

// Stream is a request in progress.
type Stream struct {
	deltas chan string
	done   chan struct{}
	res    Result
}

// Deltas returns the answer's text as it becomes final, piece by piece; the channel is
// closed when the request ends. Reading it is optional: it holds the whole answer.
func (s *Stream) Deltas() <-chan string { return s.deltas }

// Done is closed when the request has ended.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Result waits for the request to end and returns its result.
func (s *Stream) Result() Result {
	<-s.done
	return s.res
}

// job is a request inside the engine.
type job struct {
	ctx    context.Context
	req    Request
	text   *textStream
	stream *Stream
	added  chan error // Add's outcome, buffered
}

// Engine runs a Model's GPT for concurrent requests: Run is the one goroutine that
// decodes, Submit hands it requests from any goroutine. Requests join the batch between
// steps while there is room and leave when they end (EOT, a stop string, max tokens,
// their context), so a request waits only for a free row, never for the whole batch.
type Engine struct {
	m      *Model
	bd     *model.BatchDecoder
	submit chan *job
	done   chan struct{}
	log    *slog.Logger
	met    *Metrics
	jobs   map[int]*job // by sequence id; owned by Run
}

// NewEngine returns an engine decoding up to batch sequences per step. log and met may
// be nil.
func NewEngine(m *Model, batch int, log *slog.Logger, met *Metrics) (*Engine, error) {
	bd, err := m.GPT.NewBatchDecoder(batch)
	if err != nil {
		return nil, fmt.Errorf("batch size: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Engine{
		m: m, bd: bd, submit: make(chan *job), done: make(chan struct{}),
		log: log, met: met, jobs: map[int]*job{},
	}, nil
}

// Model returns the engine's model.
func (e *Engine) Model() *Model { return e.m }

// Submit hands req to the engine and returns once it has joined the batch (its prompt
// processed), or with an error: req's options or prompt are invalid (ErrBadRequest),
// ctx ended while waiting for a free row (its error), or the engine stopped
// (ErrStopped). ctx stays the request's: when it ends, the request ends at the next
// step with ctx's error in its Result. Safe for concurrent use.
func (e *Engine) Submit(ctx context.Context, req Request) (*Stream, error) {
	req.Opts.StopAtEOT, req.Opts.EOT = true, int32(e.m.Tok.EOT())
	j := &job{
		ctx: ctx, req: req,
		text:   newTextStream(e.m.Tok, req.Prompt.Stops),
		stream: &Stream{deltas: make(chan string, max(req.Opts.MaxTokens, 0)+1), done: make(chan struct{})},
		added:  make(chan error, 1),
	}
	select {
	case e.submit <- j:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-e.done:
		return nil, ErrStopped
	}
	if err := <-j.added; err != nil {
		return nil, err
	}
	return j.stream, nil
}

// Run decodes until ctx ends, then ends the requests in progress with ErrStopped and
// refuses new ones. It returns nil. Call it once, on its own goroutine.
func (e *Engine) Run(ctx context.Context) error {
	defer close(e.done)
	for {
		if e.bd.Len() == 0 {
			select {
			case j := <-e.submit:
				e.add(j)
			case <-ctx.Done():
				return e.stop()
			}
		}
	accept:
		for e.bd.Len() < e.bd.Cap() {
			select {
			case j := <-e.submit:
				e.add(j)
			case <-ctx.Done():
				return e.stop()
			default:
				break accept
			}
		}
		if e.bd.Len() == 0 {
			continue
		}
		e.met.step(e.bd.Len())
		for _, r := range e.bd.Step() {
			e.finish(r)
		}
		e.met.setActive(e.bd.Len())
	}
}

// add starts j in the batch and reports the outcome to its Submit.
func (e *Engine) add(j *job) {
	opts := j.req.Opts
	opts.OnToken = func(tok int32) error {
		delta, stop := j.text.push(tok)
		if delta != "" {
			j.stream.deltas <- delta // never blocks: one delta per token at most, and room for all
		}
		if stop {
			return model.ErrStopGeneration
		}
		return nil
	}
	id, err := e.bd.Add(j.ctx, j.req.Prompt.IDs, opts)
	if err != nil {
		if errors.Is(err, model.ErrBadOption) || errors.Is(err, model.ErrShape) {
			err = fmt.Errorf("%w: %w", ErrBadRequest, err)
		}
		j.added <- err
		return
	}
	e.jobs[id] = j
	e.met.setActive(e.bd.Len())
	e.log.Debug("request joined", "seq", id, "prompt_tokens", len(j.req.Prompt.IDs), "batch", e.bd.Len())
	j.added <- nil
}

// finish ends the request of a finished sequence.
func (e *Engine) finish(r model.BatchResult) {
	j := e.jobs[r.ID]
	delete(e.jobs, r.ID)
	res := Result{PromptTokens: len(j.req.Prompt.IDs), CompletionTokens: len(r.Gen.Tokens), Err: r.Err}
	if r.Err == nil {
		if d := j.text.flush(); d != "" {
			j.stream.deltas <- d
		}
		res.Finish = FinishStop
		if r.Gen.Reason == model.StopMaxTokens {
			res.Finish = FinishLength
		}
	}
	res.Text = j.text.text
	e.met.tokens(res.PromptTokens, res.CompletionTokens)
	e.log.Debug("request ended", "seq", r.ID, "tokens", res.CompletionTokens, "finish", res.Finish, "err", r.Err)
	j.stream.res = res
	close(j.stream.deltas)
	close(j.stream.done)
}

// stop ends every request in progress with ErrStopped.
func (e *Engine) stop() error {
	for id, j := range e.jobs {
		j.stream.res = Result{PromptTokens: len(j.req.Prompt.IDs), Text: j.text.text, Err: ErrStopped}
		close(j.stream.deltas)
		close(j.stream.done)
		delete(e.jobs, id)
	}
	e.met.setActive(0)
	return nil
}

func itoa(n int) string { return strconv.Itoa(n) }
