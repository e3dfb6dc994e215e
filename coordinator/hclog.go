package coordinator

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// slogHCLog adapts an injected *slog.Logger to the hclog.Logger that hashicorp/raft
// logs through, so raft's messages go wherever the caller's logs go, in the caller's
// format (text or JSON). A named logger adds a "component" attribute (raft,
// transport, snapshot); naming it again replaces that attribute rather than adding a
// second one.
//
// Arguments follow hclog's contract: alternating keys and values, each pair one slog
// attribute (see hclogAttrs for how values are rendered). The message is hclog's
// message, printed as it is: hclog has no format string, and raft formats a value
// with hclog.Fmt, which becomes the attribute's formatted text.
//
// Levels map one to one (Trace is slog's debug-4), except the one message that
// electionLevel lowers.
type slogHCLog struct {
	base    *slog.Logger // the caller's logger with the implied arguments, without the name
	l       *slog.Logger // base with the "component" attribute when named
	name    string
	implied []any
	level   *atomic.Int32 // hclog.Level shared by loggers derived from one another
	// elected is set by the first election message any logger derived from this
	// one logs (see electionLevel).
	elected *atomic.Bool
}

func newSlogHCLog(l *slog.Logger, level hclog.Level) *slogHCLog {
	lv := &atomic.Int32{}
	lv.Store(int32(level))
	return &slogHCLog{base: l, l: l, level: lv, elected: &atomic.Bool{}}
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

// electionMsg is what hashicorp/raft logs at WARN when a follower's heartbeat timeout
// fires and it becomes a candidate.
const electionMsg = "heartbeat timeout reached, starting election"

// electionLevel returns the level to log raft's message at, given its attributes
// and whether this replica has logged an election before.
//
// Raft logs every election a follower starts at WARN, because a follower that stops
// hearing from its leader usually means the leader failed or was cut off. But every
// cluster's life begins with such a timeout: a replica that has never known a
// leader (a bootstrapped replica alone, which elects itself, or the replicas of a
// new static cluster electing their first leader) has no failure to report. So the
// election message is logged at INFO when both hold:
//
//   - its last-leader-id is empty: no leader was known when the timeout fired, and
//   - it is the first election message of this replica.
//
// Every later election, and any election after a known leader went silent, stays
// at WARN. Other messages keep their level.
func electionLevel(level hclog.Level, msg string, attrs []slog.Attr, first bool) hclog.Level {
	if level != hclog.Warn || msg != electionMsg || !first {
		return level
	}
	for _, a := range attrs {
		if a.Key == "last-leader-id" && a.Value.String() != "" {
			return level
		}
	}
	return hclog.Info
}

func (h *slogHCLog) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	if level == hclog.Off || !h.enabled(level) {
		return
	}
	attrs := hclogAttrs(args)
	if msg == electionMsg {
		level = electionLevel(level, msg, attrs, !h.elected.Swap(true))
	}
	h.l.LogAttrs(context.Background(), slogLevel(level), msg, attrs...)
}

// hclogAttrs turns hclog's alternating keys and values into slog attributes, as
// hclog's own formatter reads them:
//
//   - a key that is not a string is formatted with fmt.Sprint;
//   - a key that slog's handlers write themselves (time, level, msg, source) gets
//     the prefix "raft_", so that no record has a key twice: raft logs the time
//     since a peer's last contact as "time";
//   - an odd value at the end is a hclog.CapturedStacktrace, kept as "stacktrace",
//     or else gets hclog's key EXTRA_VALUE_AT_END;
//   - values are rendered by hclogValue.
func hclogAttrs(args []any) []slog.Attr {
	attrs := make([]slog.Attr, 0, len(args)/2+1)
	for i := 0; i+1 < len(args); i += 2 {
		key, ok := args[i].(string)
		if !ok {
			key = fmt.Sprint(args[i])
		}
		switch key {
		case slog.TimeKey, slog.LevelKey, slog.MessageKey, slog.SourceKey:
			key = "raft_" + key
		}
		attrs = append(attrs, slog.Attr{Key: key, Value: hclogValue(args[i+1])})
	}
	if len(args)%2 != 0 {
		last := args[len(args)-1]
		if st, ok := last.(hclog.CapturedStacktrace); ok {
			attrs = append(attrs, slog.String("stacktrace", string(st)))
		} else {
			attrs = append(attrs, slog.Attr{Key: hclog.MissingKey, Value: hclogValue(last)})
		}
	}
	return attrs
}

// hclogValue renders one hclog value so that every slog handler, JSON included,
// prints it as hclog would:
//
//   - hclog.Fmt values are formatted (fmt.Sprintf of the format and its arguments);
//   - hclog.Hex, Octal and Binary as 0x…, 0… and 0b…; hclog.Quote as a quoted string;
//   - errors, durations, times, strings, booleans and numbers are kept as they are
//     (named types of those kinds, such as raft.ServerID, as their underlying value,
//     unless they have a String method);
//   - anything else as fmt's %v, a Stringer by its String: raft passes its *Raft,
//     which a JSON encoder could not print but whose String names the node.
func hclogValue(v any) slog.Value {
	switch v := v.(type) {
	case nil:
		return slog.AnyValue(nil)
	case hclog.Format:
		if len(v) == 0 {
			return slog.StringValue("")
		}
		if f, ok := v[0].(string); ok {
			return slog.StringValue(fmt.Sprintf(f, v[1:]...))
		}
		return slog.StringValue(fmt.Sprint(v...))
	case hclog.Hex:
		return slog.StringValue("0x" + strconv.FormatUint(uint64(v), 16))
	case hclog.Octal:
		return slog.StringValue("0" + strconv.FormatUint(uint64(v), 8))
	case hclog.Binary:
		return slog.StringValue("0b" + strconv.FormatUint(uint64(v), 2))
	case hclog.Quote:
		return slog.StringValue(strconv.Quote(string(v)))
	case error:
		return slog.AnyValue(v)
	case time.Duration, time.Time, string, bool,
		int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, uintptr, float32, float64:
		return slog.AnyValue(v)
	case fmt.Stringer:
		return slog.StringValue(v.String())
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.String:
		return slog.StringValue(rv.String())
	case reflect.Bool:
		return slog.BoolValue(rv.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return slog.Int64Value(rv.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return slog.Uint64Value(rv.Uint())
	case reflect.Float32, reflect.Float64:
		return slog.Float64Value(rv.Float())
	}
	return slog.StringValue(fmt.Sprintf("%v", v))
}

// attrArgs returns attrs as arguments of slog.Logger.With.
func attrArgs(attrs []slog.Attr) []any {
	out := make([]any, len(attrs))
	for i, a := range attrs {
		out[i] = a
	}
	return out
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
	c.base = h.base.With(attrArgs(hclogAttrs(args))...)
	c.l = c.base
	if c.name != "" {
		c.l = c.base.With("component", c.name)
	}
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
	c.l = h.base
	if name != "" {
		c.l = h.base.With("component", name)
	}
	return &c
}

func (h *slogHCLog) SetLevel(level hclog.Level) { h.level.Store(int32(level)) }
func (h *slogHCLog) GetLevel() hclog.Level      { return hclog.Level(h.level.Load()) }

func (h *slogHCLog) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *slogHCLog) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	w := lineWriter{h: h}
	if opts != nil {
		w.infer, w.forceLevel = opts.InferLevels, opts.ForceLevel
	}
	return w
}

// lineWriter logs each Write (a line from a standard logger): at forceLevel when
// set, else, with infer, at the level its [TRACE], [DEBUG], [INFO], [WARN] or [ERR]
// prefix names (the prefix removed), as hclog's own standard logger does; else at
// info.
type lineWriter struct {
	h          *slogHCLog
	infer      bool
	forceLevel hclog.Level
}

func (w lineWriter) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\r\n")
	level := hclog.Info
	if w.forceLevel != hclog.NoLevel {
		level = w.forceLevel
	} else if w.infer {
		level, line = inferLevel(line)
	}
	w.h.Log(level, line)
	return len(p), nil
}

// inferLevel reads the level prefix of a standard logger's line, as hclog's
// InferLevels does; a line without one is info.
func inferLevel(line string) (hclog.Level, string) {
	prefixes := []struct {
		p string
		l hclog.Level
	}{
		{"[TRACE]", hclog.Trace}, {"[DEBUG]", hclog.Debug}, {"[INFO]", hclog.Info},
		{"[WARN]", hclog.Warn}, {"[ERROR]", hclog.Error}, {"[ERR]", hclog.Error},
	}
	for _, x := range prefixes {
		if rest, ok := strings.CutPrefix(line, x.p); ok {
			return x.l, strings.TrimSpace(rest)
		}
	}
	return hclog.Info, line
}
