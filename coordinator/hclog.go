package coordinator

import (
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// slogHCLog adapts an injected *slog.Logger to the hclog.Logger that hashicorp/raft
// logs through, so raft's messages go wherever the caller's logs go. Raft's key-value
// pairs become slog attributes; a named logger adds a "raft" attribute.
type slogHCLog struct {
	l       *slog.Logger
	name    string
	implied []any
	level   *atomic.Int32 // hclog.Level shared by loggers derived from one another
}

func newSlogHCLog(l *slog.Logger, level hclog.Level) *slogHCLog {
	lv := &atomic.Int32{}
	lv.Store(int32(level))
	return &slogHCLog{l: l, level: lv}
}

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (h *slogHCLog) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off || level < hclog.Level(h.level.Load()) {
		return
	}
	h.l.Log(context.Background(), slogLevel(level), msg, args...)
}

func (h *slogHCLog) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *slogHCLog) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *slogHCLog) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *slogHCLog) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *slogHCLog) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *slogHCLog) enabled(l hclog.Level) bool { return l >= hclog.Level(h.level.Load()) }
func (h *slogHCLog) IsTrace() bool              { return h.enabled(hclog.Trace) }
func (h *slogHCLog) IsDebug() bool              { return h.enabled(hclog.Debug) }
func (h *slogHCLog) IsInfo() bool               { return h.enabled(hclog.Info) }
func (h *slogHCLog) IsWarn() bool               { return h.enabled(hclog.Warn) }
func (h *slogHCLog) IsError() bool              { return h.enabled(hclog.Error) }

func (h *slogHCLog) ImpliedArgs() []any { return h.implied }

func (h *slogHCLog) With(args ...any) hclog.Logger {
	c := *h
	c.implied = append(append([]any(nil), h.implied...), args...)
	c.l = h.l.With(args...)
	return &c
}

func (h *slogHCLog) Name() string { return h.name }

func (h *slogHCLog) Named(name string) hclog.Logger {
	if h.name != "" {
		name = h.name + "." + name
	}
	return h.ResetNamed(name)
}

func (h *slogHCLog) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	c.l = h.l.With("raft", name)
	return &c
}

func (h *slogHCLog) SetLevel(level hclog.Level) { h.level.Store(int32(level)) }
func (h *slogHCLog) GetLevel() hclog.Level      { return hclog.Level(h.level.Load()) }

func (h *slogHCLog) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *slogHCLog) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return lineWriter{h}
}

// lineWriter logs each Write (a line from a standard logger) at info level.
type lineWriter struct{ h *slogHCLog }

func (w lineWriter) Write(p []byte) (int, error) {
	w.h.Info(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
