package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/grpclog"

	"github.com/ringtrain/ringtrain/internal/logcheck"
	"github.com/ringtrain/ringtrain/trainer"
)

// captureStderr points os.Stderr at a file while run runs, and returns what was
// written there.
func captureStderr(t *testing.T, run func()) string {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	saved := os.Stderr
	os.Stderr = f
	func() {
		defer func() { os.Stderr = saved }()
		run()
	}()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// jsonLines parses every line of out as one JSON object, failing the test on a line
// that is not one or that repeats a key.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for line := range strings.Lines(out) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("not a JSON record: %v\n%q", err, line)
			continue
		}
		if dup := logcheck.DuplicateKeys([]byte(line)); dup != nil {
			t.Errorf("record repeats %v: %s", dup, line)
		}
		recs = append(recs, rec)
	}
	return recs
}

func TestDuplicateKeys(t *testing.T) {
	for doc, want := range map[string]string{
		`{"a":1,"b":2}`:                "[]",
		`{"a":1,"a":2}`:                "[a]",
		`{"a":{"b":1,"b":2},"c":[{}]}`: "[b]",
		`{"a":[{"x":1,"x":1}],"a":0}`:  "[x a]",
	} {
		if got := logcheck.DuplicateKeys([]byte(doc)); strings.Join(got, " ") != strings.Trim(want, "[]") {
			t.Errorf("DuplicateKeys(%s) = %v, want %s", doc, got, want)
		}
	}
}

// TestLocalJSONLogs runs `ringtrain local --log-format json` at debug level (the
// workers, the ring, the coordinator client and the embedded replica all log):
// every line on standard error is a JSON record with no repeated key, and the
// evaluations are logged (standard error is no terminal here).
func TestLocalJSONLogs(t *testing.T) {
	data := prepareData(t)
	dir := t.TempDir()
	var out string
	stderr := captureStderr(t, func() {
		out = mustRun(t, "--log-format", "json", "--log-level", "debug", "local", "--data", data, "--dir", dir,
			"--steps", "4", "--eval-interval", "2", "--sample-tokens", "0", "--coordinators", "3",
			"--layers", "1", "--heads", "2", "--embd", "16", "--seq", "16", "--batch", "2", "--eval-batches", "1")
	})
	if !strings.Contains(out, "done: step 4,") {
		t.Errorf("local output:\n%s", out)
	}
	recs := jsonLines(t, stderr)
	var evals, workers int
	keys := map[string]bool{}
	for _, rec := range recs {
		for k := range rec {
			keys[k] = true
		}
		if rec["msg"] == trainer.EvalLogMessage && rec["level"] == "INFO" {
			evals++
		}
		if rec["worker"] != nil {
			workers++
		}
	}
	if evals != 2 || workers == 0 {
		t.Errorf("%d eval records (want 2), %d worker records (want some) in:\n%s", evals, workers, stderr)
	}
	for _, k := range []string{"member", "generation", "rank"} {
		if !keys[k] {
			t.Errorf("no record has %q (the ring's debug records are missing)", k)
		}
	}
	if strings.Contains(out, `"level"`) {
		t.Errorf("log records on standard output:\n%s", out)
	}
}

func TestEvalEchoHandler(t *testing.T) {
	cases := []struct {
		level  string
		echoed bool
		msg    string
		want   string // level of the record written, "" for none
	}{
		{"info", false, trainer.EvalLogMessage, "INFO"},
		{"info", true, trainer.EvalLogMessage, ""},
		{"debug", true, trainer.EvalLogMessage, "DEBUG"},
		{"info", true, "checkpoint written", "INFO"},
		{"warn", true, "checkpoint written", ""},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		log, err := newLogger(&buf, c.level, "json", c.echoed)
		if err != nil {
			t.Fatal(err)
		}
		log.With("worker", "w0").Info(c.msg, "step", 5, "val_loss", 2.5)
		recs := jsonLines(t, buf.String())
		switch {
		case c.want == "" && len(recs) != 0:
			t.Errorf("%+v: logged %v, want nothing", c, recs)
		case c.want != "" && (len(recs) != 1 || recs[0]["level"] != c.want || recs[0]["worker"] != "w0"):
			t.Errorf("%+v: logged %v, want one record at %s", c, recs, c.want)
		}
	}
}

func TestNewLoggerBadFlags(t *testing.T) {
	if _, err := newLogger(os.Stderr, "loud", "json", false); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Errorf("bad level: error %v", err)
	}
	if _, err := newLogger(os.Stderr, "info", "xml", false); err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Errorf("bad format: error %v", err)
	}
}

// TestQuietLogger: the embedded components' logger keeps the process's format and
// output and passes warnings and errors only.
func TestQuietLogger(t *testing.T) {
	var buf bytes.Buffer
	log, err := newLogger(&buf, "debug", "json", false)
	if err != nil {
		t.Fatal(err)
	}
	q := quietLogger(log).With("replica", "c0")
	q.Info("chatty")
	q.Debug("chattier")
	q.Warn("worth a look")
	q.Error("broken")
	recs := jsonLines(t, buf.String())
	if len(recs) != 2 || recs[0]["level"] != "WARN" || recs[1]["level"] != "ERROR" || recs[0]["replica"] != "c0" {
		t.Errorf("quiet logger wrote %v, want the warning and the error", recs)
	}
	if q.Enabled(context.Background(), slog.LevelInfo) {
		t.Error("quiet logger enabled at info")
	}
}

// TestGRPCLogsThroughSlog: gRPC's global logger writes through the process's
// logger, in its format: errors as errors, warnings at debug, info at debug-4.
func TestGRPCLogsThroughSlog(t *testing.T) {
	var buf bytes.Buffer
	if _, err := newLogger(&buf, "debug", "json", false); err != nil {
		t.Fatal(err)
	}
	defer grpcLogs.use(slog.New(slog.DiscardHandler))
	grpclog.Errorf("addrConn.createTransport failed to connect to %q", "127.0.0.1:1")
	grpclog.Warningln("transport closing")
	grpclog.Info("state change") // below debug: dropped
	if grpclog.V(2) {
		t.Error("V(2) at debug level, want false")
	}
	recs := jsonLines(t, buf.String())
	if len(recs) != 2 {
		t.Fatalf("gRPC logged %v, want 2 records", recs)
	}
	if recs[0]["level"] != "ERROR" || recs[0]["msg"] != `addrConn.createTransport failed to connect to "127.0.0.1:1"` || recs[0]["component"] != "grpc" {
		t.Errorf("gRPC error logged as %v", recs[0])
	}
	if recs[1]["level"] != "DEBUG" || recs[1]["msg"] != "transport closing" {
		t.Errorf("gRPC warning logged as %v", recs[1])
	}
}

// TestErrorRecordJSON: with --log-format json (or RINGTRAIN_LOG_FORMAT=json), the
// error a command ends with is one JSON log record at level ERROR (the command in
// msg, the message under error, the exit status, the usage hint of a usage error)
// instead of the text line, so that standard error carries one format; with text it
// stays the line "ringtrain: <error>".
func TestErrorRecordJSON(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-checkpoint")
	run := func(args ...string) (string, int) {
		root := newRoot()
		var out, errOut bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&errOut)
		root.SetArgs(args)
		code := execute(context.Background(), root, &errOut)
		return errOut.String(), code
	}
	for _, tc := range []struct {
		name  string
		env   string
		args  []string
		code  int
		msg   string
		usage string
	}{
		{"failure", "", []string{"--log-format", "json", "generate", "--checkpoint", missing}, 1, "ringtrain generate failed", ""},
		{"bad flag", "", []string{"--log-format", "json", "train", "--no-such-flag"}, 2, "ringtrain train: bad usage", "Run 'ringtrain train --help' for usage."},
		{"missing required flag", "", []string{"--log-format", "json", "generate"}, 2, "ringtrain generate: bad usage", "Run 'ringtrain generate --help' for usage."},
		{"format from the environment", "json", []string{"train", "--no-such-flag"}, 2, "ringtrain train: bad usage", "Run 'ringtrain train --help' for usage."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("RINGTRAIN_LOG_FORMAT", tc.env)
			}
			stderr, code := run(tc.args...)
			if code != tc.code {
				t.Errorf("exit status %d, want %d", code, tc.code)
			}
			lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
			if len(lines) != 1 {
				t.Fatalf("stderr has %d lines, want one JSON record:\n%s", len(lines), stderr)
			}
			var rec map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
				t.Fatalf("stderr is not a JSON record: %v\n%s", err, stderr)
			}
			if rec["level"] != "ERROR" || rec["msg"] != tc.msg || rec["exit_status"] != float64(tc.code) || rec["time"] == nil {
				t.Errorf("record %v, want level ERROR, msg %q, exit_status %d and a time", rec, tc.msg, tc.code)
			}
			if e, _ := rec["error"].(string); e == "" || strings.HasPrefix(e, "ringtrain:") {
				t.Errorf("record's error %q, want the message alone", rec["error"])
			}
			if tc.code == 1 && !strings.Contains(fmt.Sprint(rec["error"]), missing) {
				t.Errorf("record's error %q does not name %s", rec["error"], missing)
			}
			if u, _ := rec["usage"].(string); u != tc.usage {
				t.Errorf("record's usage %q, want %q", u, tc.usage)
			}
			if dups := logcheck.DuplicateKeys([]byte(lines[0])); len(dups) > 0 {
				t.Errorf("record repeats %v", dups)
			}
		})
	}
	// The text format keeps the plain line.
	stderr, code := run("--log-format", "text", "generate", "--checkpoint", missing)
	if code != 1 || !strings.HasPrefix(stderr, "ringtrain: ") || strings.Contains(stderr, `"level"`) {
		t.Errorf("text format: status %d, stderr %q; want 1 and the line \"ringtrain: <error>\"", code, stderr)
	}
}

// TestNotes: the warnings and notes a command prints on standard error are plain
// lines after "warning: " or "note: " with the text format, and JSON records of
// their level (msg: the line) with the JSON format, filtered by --log-level.
func TestNotes(t *testing.T) {
	for _, tc := range []struct {
		format, level string
		note          slog.Level
		want          []string // the lines, or the "LEVEL msg" of each record
	}{
		{"text", "info", slog.LevelWarn, []string{"warning: first", "warning: second"}},
		{"text", "error", slog.LevelInfo, []string{"note: first", "note: second"}},
		{"json", "info", slog.LevelWarn, []string{"WARN first", "WARN second"}},
		{"json", "info", slog.LevelInfo, []string{"INFO first", "INFO second"}},
		{"json", "warn", slog.LevelInfo, nil},
	} {
		var errOut bytes.Buffer
		cmd := &cobra.Command{}
		cmd.SetErr(&errOut)
		g := &globals{logFormat: tc.format, logLevel: tc.level}
		fmt.Fprintf(g.notes(cmd, tc.note), "first\nsecond\n")
		var got []string
		for line := range strings.Lines(errOut.String()) {
			line = strings.TrimSuffix(line, "\n")
			if tc.format == "json" {
				var rec map[string]any
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("%s: not a JSON record: %q", tc.format, line)
				}
				line = fmt.Sprint(rec["level"], " ", rec["msg"])
			}
			got = append(got, line)
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("format %s, level %s, note at %v: got %q, want %q", tc.format, tc.level, tc.note, got, tc.want)
		}
	}
}
