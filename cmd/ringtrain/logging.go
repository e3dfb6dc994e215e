package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/grpclog"

	"github.com/ringtrain/ringtrain/progress"
	"github.com/ringtrain/ringtrain/trainer"
)

// newLogger returns the process's logger: one handler, text or JSON (--log-format),
// at --log-level, writing to w. Every component logs through it, or through a logger
// derived from it (quietLogger, the coordinator's Raft adapter, gRPC's logger), so
// that standard error carries one format only.
//
// With echoed set (standard output, where the progress is printed, and standard
// error are the same terminal), the record logged after each evaluation is lowered
// to debug: the progress output has printed that evaluation already.
func newLogger(w io.Writer, level, format string, echoed bool) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
	if echoed {
		h = evalEchoHandler{h}
	}
	l := slog.New(h)
	grpcLogs.use(l)
	return l, nil
}

// notes returns the writer through which cmd tells the user something on standard
// error that is not a log record of a component: a warning (level warn) or a note
// (any lower level), one per line written. With --log-format text each line is
// printed as it is, after "warning: " or "note: "; with json each becomes a JSON
// log record of that level (msg: the line) when --log-level lets it through, so
// that standard error carries one format.
func (g *globals) notes(cmd *cobra.Command, level slog.Level) io.Writer {
	return &noteWriter{w: cmd.ErrOrStderr(), level: level, json: g.logFormat == "json", logLevel: g.logLevel}
}

// noteWriter is globals.notes' writer. It is used by one goroutine at a time.
type noteWriter struct {
	w        io.Writer
	level    slog.Level
	json     bool
	logLevel string
}

func (n *noteWriter) Write(p []byte) (int, error) {
	for line := range strings.Lines(string(p)) {
		line = strings.TrimRight(line, "\n")
		if !n.json {
			prefix := "note"
			if n.level >= slog.LevelWarn {
				prefix = "warning"
			}
			if _, err := fmt.Fprintf(n.w, "%s: %s\n", prefix, line); err != nil {
				return 0, err
			}
			continue
		}
		var min slog.Level
		if err := min.UnmarshalText([]byte(n.logLevel)); err != nil {
			min = slog.LevelInfo
		}
		slog.New(slog.NewJSONHandler(n.w, &slog.HandlerOptions{Level: min})).Log(context.Background(), n.level, line)
	}
	return len(p), nil
}

// sameTerminal reports whether a and b are both terminals, and the same one.
func sameTerminal(a, b *os.File) bool {
	if !progress.IsTerminal(a) || !progress.IsTerminal(b) {
		return false
	}
	fa, err := a.Stat()
	if err != nil {
		return false
	}
	fb, err := b.Stat()
	return err == nil && os.SameFile(fa, fb)
}

// evalEchoHandler lowers the info record of an evaluation (trainer.EvalLogMessage)
// to debug, for a process whose progress output and logs share a terminal: the
// progress output prints each evaluation as a line of its own, and the log record
// would print it a second time.
type evalEchoHandler struct{ slog.Handler }

func (h evalEchoHandler) Enabled(ctx context.Context, l slog.Level) bool {
	// An info record may be an evaluation, which Handle lowers: decided there.
	return h.Handler.Enabled(ctx, l) || l == slog.LevelInfo
}

func (h evalEchoHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelInfo && r.Message == trainer.EvalLogMessage {
		r.Level = slog.LevelDebug
	}
	if !h.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h evalEchoHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return evalEchoHandler{h.Handler.WithAttrs(as)}
}

func (h evalEchoHandler) WithGroup(name string) slog.Handler {
	return evalEchoHandler{h.Handler.WithGroup(name)}
}

// quietLogger returns log raised to warn level (or log's own level when that is
// higher), in log's format and to log's output, for chatty embedded components.
func quietLogger(log *slog.Logger) *slog.Logger {
	return slog.New(minLevelHandler{log.Handler(), slog.LevelWarn})
}

// minLevelHandler passes on the records of at least min.
type minLevelHandler struct {
	slog.Handler
	min slog.Level
}

func (h minLevelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevelHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < h.min {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h minLevelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevelHandler{h.Handler.WithAttrs(as), h.min}
}

func (h minLevelHandler) WithGroup(name string) slog.Handler {
	return minLevelHandler{h.Handler.WithGroup(name), h.min}
}

// grpcLogs is gRPC's logger for the whole process. gRPC keeps one global logger,
// to be set before gRPC is used, so it is installed once and sends its records to
// the logger the running command set up (newLogger), under component=grpc.
var grpcLogs = &grpcLogger{}

// grpcLogger adapts slog to gRPC's grpclog.LoggerV2. gRPC's own default prints
// errors only; here its errors are errors, its warnings debug and its info
// messages (very chatty: every connection state change) debug-4, shown only at
// --log-level debug-4.
type grpcLogger struct {
	once sync.Once
	l    atomic.Pointer[slog.Logger]
}

// use makes l the destination of gRPC's logs, installing the adapter on first use.
func (g *grpcLogger) use(l *slog.Logger) {
	g.l.Store(l.With("component", "grpc"))
	g.once.Do(func() { grpclog.SetLoggerV2(g) })
}

func (g *grpcLogger) log(level slog.Level, msg string) {
	l := g.l.Load()
	if l == nil {
		return
	}
	l.Log(context.Background(), level, strings.TrimRight(msg, "\n"))
}

const grpcInfoLevel = slog.LevelDebug - 4

func (g *grpcLogger) Info(args ...any)   { g.log(grpcInfoLevel, fmt.Sprint(args...)) }
func (g *grpcLogger) Infoln(args ...any) { g.log(grpcInfoLevel, fmt.Sprintln(args...)) }
func (g *grpcLogger) Infof(format string, args ...any) {
	g.log(grpcInfoLevel, fmt.Sprintf(format, args...))
}
func (g *grpcLogger) Warning(args ...any)   { g.log(slog.LevelDebug, fmt.Sprint(args...)) }
func (g *grpcLogger) Warningln(args ...any) { g.log(slog.LevelDebug, fmt.Sprintln(args...)) }
func (g *grpcLogger) Warningf(format string, args ...any) {
	g.log(slog.LevelDebug, fmt.Sprintf(format, args...))
}
func (g *grpcLogger) Error(args ...any)   { g.log(slog.LevelError, fmt.Sprint(args...)) }
func (g *grpcLogger) Errorln(args ...any) { g.log(slog.LevelError, fmt.Sprintln(args...)) }
func (g *grpcLogger) Errorf(format string, args ...any) {
	g.log(slog.LevelError, fmt.Sprintf(format, args...))
}

// Fatal, Fatalln and Fatalf log at error level and exit with status 1, as gRPC's
// contract for them requires.
func (g *grpcLogger) Fatal(args ...any) { g.log(slog.LevelError, fmt.Sprint(args...)); os.Exit(1) }
func (g *grpcLogger) Fatalln(args ...any) {
	g.log(slog.LevelError, fmt.Sprintln(args...))
	os.Exit(1)
}
func (g *grpcLogger) Fatalf(format string, args ...any) {
	g.log(slog.LevelError, fmt.Sprintf(format, args...))
	os.Exit(1)
}

// V reports whether gRPC's verbosity level v is enabled: 0 always, higher levels
// when the logger takes debug-4 records.
func (g *grpcLogger) V(v int) bool {
	if v <= 0 {
		return true
	}
	l := g.l.Load()
	return l != nil && l.Enabled(context.Background(), grpcInfoLevel)
}
