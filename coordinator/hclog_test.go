package coordinator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/ringtrain/ringtrain/internal/logcheck"
)

// jsonRecords splits JSON log output into records, failing the test on a line that
// is not one JSON object or that repeats a key.
func jsonRecords(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for line := range strings.Lines(out) {
		if strings.TrimSpace(line) == "" {
			continue
		}
		if dup := logcheck.DuplicateKeys([]byte(line)); dup != nil {
			t.Errorf("record repeats a key: %v\n%s", dup, line)
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not a JSON record: %v\n%s", err, line)
		}
		recs = append(recs, rec)
	}
	return recs
}

// node is a value raft passes to its logger: it has a String method and fields a
// JSON encoder cannot print, like *raft.Raft.
type node struct {
	id string
	ch chan int
}

func (n *node) String() string { return "node at " + n.id }

func TestHCLogArguments(t *testing.T) {
	servers := []raft.Server{{Suffrage: raft.Voter, ID: "c0", Address: "127.0.0.1:7000"}}
	cases := []struct {
		name string
		log  func(hclog.Logger)
		msg  string
		want map[string]any // attributes besides time, level, msg
	}{
		{"key/value pairs", func(l hclog.Logger) { l.Info("entering follower state", "term", 3, "leader-id", "c1", "ok", true) },
			"entering follower state", map[string]any{"term": 3.0, "leader-id": "c1", "ok": true}},
		{"hclog.Fmt formats its value", func(l hclog.Logger) {
			l.Info("initial configuration", "index", uint64(1), "servers", hclog.Fmt("%+v", servers))
		}, "initial configuration", map[string]any{"index": 1.0, "servers": fmt.Sprintf("%+v", servers)}},
		{"hclog.Fmt with several verbs", func(l hclog.Logger) {
			l.Info("snapshot progress", "received", hclog.Fmt("%d / %d", 5, 10), "percent-complete", hclog.Fmt("%0.2f%%", 50.0))
		}, "snapshot progress", map[string]any{"received": "5 / 10", "percent-complete": "50.00%"}},
		{"a message is printed as it is", func(l hclog.Logger) { l.Warn("100% of %s done", "n", 2) },
			"100% of %s done", map[string]any{"n": 2.0}},
		{"named scalar types", func(l hclog.Logger) {
			l.Info("vote", "id", raft.ServerID("c2"), "addr", raft.ServerAddress("h:1"), "state", raft.Candidate)
		}, "vote", map[string]any{"id": "c2", "addr": "h:1", "state": "Candidate"}},
		{"a Stringer that JSON cannot print", func(l hclog.Logger) {
			l.Info("entering candidate state", "node", &node{id: "c0", ch: make(chan int)})
		},
			"entering candidate state", map[string]any{"node": "node at c0"}},
		{"errors", func(l hclog.Logger) { l.Error("failed to append", "error", errors.New("disk full")) },
			"failed to append", map[string]any{"error": "disk full"}},
		{"hex, octal, binary and quote", func(l hclog.Logger) {
			l.Info("bits", "h", hclog.Hex(255), "o", hclog.Octal(8), "b", hclog.Binary(5), "q", hclog.Quote(`a "b"`))
		}, "bits", map[string]any{"h": "0xff", "o": "010", "b": "0b101", "q": `"a \"b\""`}},
		{"a key that is not a string", func(l hclog.Logger) { l.Info("m", 7, "seven") },
			"m", map[string]any{"7": "seven"}},
		{"keys slog writes itself", func(l hclog.Logger) { l.Warn("failed to contact", "server-id", "c1", "time", time.Second, "msg", "x") },
			"failed to contact", map[string]any{"server-id": "c1", "raft_time": float64(time.Second), "raft_msg": "x"}},
		{"an odd value at the end", func(l hclog.Logger) { l.Info("m", "a", 1, "dangling") },
			"m", map[string]any{"a": 1.0, hclog.MissingKey: "dangling"}},
		{"a captured stack trace at the end", func(l hclog.Logger) { l.Error("m", "a", 1, hclog.CapturedStacktrace("goroutine 1")) },
			"m", map[string]any{"a": 1.0, "stacktrace": "goroutine 1"}},
		{"durations and slices", func(l hclog.Logger) { l.Info("m", "d", 1500*time.Millisecond, "xs", []int{1, 2}) },
			"m", map[string]any{"d": float64(1500 * time.Millisecond), "xs": "[1 2]"}},
		{"implied arguments of With", func(l hclog.Logger) {
			l.With("snapshot-id", hclog.Fmt("%d-%d", 2, 40)).Info("starting snapshot up to", "index", 40)
		}, "starting snapshot up to", map[string]any{"snapshot-id": "2-40", "index": 40.0}},
		{"one component, however often named", func(l hclog.Logger) { l.Named("raft").With("k", "v").Named("transport").Info("m") },
			"m", map[string]any{"component": "raft.transport", "k": "v"}},
		{"a standard logger's lines", func(l hclog.Logger) {
			l.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}).Printf("[WARN] raft: %s %d", "lost", 3)
		}, "raft: lost 3", map[string]any{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := newSlogHCLog(slog.New(slog.NewJSONHandler(&buf, nil)), hclog.Info)
			c.log(l)
			recs := jsonRecords(t, buf.String())
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1:\n%s", len(recs), buf.String())
			}
			rec := recs[0]
			if rec["msg"] != c.msg {
				t.Errorf("msg %q, want %q", rec["msg"], c.msg)
			}
			delete(rec, "time")
			delete(rec, "level")
			delete(rec, "msg")
			if fmt.Sprint(rec) != fmt.Sprint(c.want) {
				t.Errorf("attributes %v, want %v", rec, c.want)
			}
			if strings.Contains(buf.String(), "%+v") || strings.Contains(buf.String(), "!BADKEY") || strings.Contains(buf.String(), "!ERROR") {
				t.Errorf("unformatted output: %s", buf.String())
			}
		})
	}
}

func TestHCLogLevels(t *testing.T) {
	cases := []struct {
		threshold hclog.Level
		log       func(hclog.Logger)
		want      string // slog level, "" for no record
	}{
		{hclog.Info, func(l hclog.Logger) { l.Trace("m") }, ""},
		{hclog.Info, func(l hclog.Logger) { l.Debug("m") }, ""},
		{hclog.Info, func(l hclog.Logger) { l.Info("m") }, "INFO"},
		{hclog.Info, func(l hclog.Logger) { l.Warn("m") }, "WARN"},
		{hclog.Info, func(l hclog.Logger) { l.Error("m") }, "ERROR"},
		{hclog.Info, func(l hclog.Logger) { l.Log(hclog.NoLevel, "m") }, "INFO"},
		{hclog.Info, func(l hclog.Logger) { l.Log(hclog.Off, "m") }, ""},
		{hclog.Trace, func(l hclog.Logger) { l.Trace("m") }, "DEBUG-4"},
		{hclog.Trace, func(l hclog.Logger) { l.Debug("m") }, "DEBUG"},
		{hclog.Error, func(l hclog.Logger) { l.Warn("m") }, ""},
		// SetLevel on a derived logger applies to every logger of the replica.
		{hclog.Info, func(l hclog.Logger) { l.Named("raft").SetLevel(hclog.Debug); l.Debug("m") }, "DEBUG"},
		{hclog.Info, func(l hclog.Logger) {
			l.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Error}).Print("m")
		}, "ERROR"},
		{hclog.Info, func(l hclog.Logger) {
			l.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}).Print("[DEBUG] m")
		}, ""},
	}
	for i, c := range cases {
		var buf bytes.Buffer
		l := newSlogHCLog(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug - 4})), c.threshold)
		c.log(l)
		recs := jsonRecords(t, buf.String())
		switch {
		case c.want == "" && len(recs) != 0:
			t.Errorf("case %d: logged %v, want nothing", i, recs)
		case c.want != "" && (len(recs) != 1 || recs[0]["level"] != c.want):
			t.Errorf("case %d: logged %v, want one record at %s", i, recs, c.want)
		}
	}
}

// TestHCLogElectionLevel is electionLevel's rule: the first election of a replica
// that knows no leader is INFO, every other election WARN.
func TestHCLogElectionLevel(t *testing.T) {
	noLeader := []any{"last-leader-addr", raft.ServerAddress(""), "last-leader-id", raft.ServerID("")}
	hadLeader := []any{"last-leader-addr", raft.ServerAddress("h1:7000"), "last-leader-id", raft.ServerID("c1")}
	type entry struct {
		level hclog.Level
		msg   string
		args  []any
		want  string
	}
	cases := []struct {
		name string
		seq  []entry
	}{
		{"bootstrap: the first election without a leader", []entry{
			{hclog.Warn, electionMsg, noLeader, "INFO"},
		}},
		{"a second election is a warning", []entry{
			{hclog.Warn, electionMsg, noLeader, "INFO"},
			{hclog.Warn, electionMsg, noLeader, "WARN"},
		}},
		{"the leader went silent", []entry{
			{hclog.Warn, electionMsg, hadLeader, "WARN"},
			{hclog.Warn, electionMsg, noLeader, "WARN"},
		}},
		{"after a lost leader, first or not", []entry{
			{hclog.Warn, electionMsg, noLeader, "INFO"},
			{hclog.Warn, electionMsg, hadLeader, "WARN"},
		}},
		{"other warnings keep their level", []entry{
			{hclog.Warn, "Election timeout reached, restarting election", nil, "WARN"},
			{hclog.Warn, "no known peers, aborting election", nil, "WARN"},
			{hclog.Warn, electionMsg, noLeader, "INFO"},
		}},
		{"the message at another level is left alone", []entry{
			{hclog.Error, electionMsg, noLeader, "ERROR"},
			{hclog.Warn, electionMsg, noLeader, "WARN"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			root := newSlogHCLog(slog.New(slog.NewJSONHandler(&buf, nil)), hclog.Info)
			// Raft logs through a named logger derived from the replica's: the rule
			// holds per replica, across derived loggers.
			l := root.Named("raft")
			for i, e := range c.seq {
				buf.Reset()
				l.Log(e.level, e.msg, e.args...)
				recs := jsonRecords(t, buf.String())
				if len(recs) != 1 || recs[0]["level"] != e.want {
					t.Errorf("entry %d (%s %q): logged %v, want %s", i, e.level, e.msg, recs, e.want)
				}
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for raft's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var _ io.Writer = (*syncBuffer)(nil)

// TestLoneReplicaLogs starts a replica that bootstraps a cluster of itself, with a
// JSON logger: its election is logged at INFO, nothing at WARN or above, no value
// is a format string, and no record repeats a key.
func TestLoneReplicaLogs(t *testing.T) {
	var buf syncBuffer
	n, err := Start(Config{ID: "c0", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	// Ready once the new leader has recorded its own gRPC address (after its barrier).
	ready := func() bool {
		for _, r := range n.State().GetReplicas() {
			if r.GetId() == "c0" && r.GetGrpcAddr() != "" {
				return n.IsLeader()
			}
		}
		return false
	}
	deadline := time.Now().Add(10 * time.Second)
	for !ready() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	leader := ready()
	if err := n.Close(); err != nil {
		t.Error(err)
	}
	if !leader {
		t.Fatal("a lone replica did not elect itself within 10s")
	}
	var election bool
	for _, rec := range jsonRecords(t, buf.String()) {
		if rec["replica"] != "c0" {
			t.Errorf("record without replica=c0: %v", rec)
		}
		switch rec["level"] {
		case "WARN", "ERROR":
			t.Errorf("a lone replica's bootstrap logged %v", rec)
		}
		if rec["msg"] == electionMsg {
			election = true
		}
		for k, v := range rec {
			if s, ok := v.(string); ok && strings.Contains(s, "%") {
				t.Errorf("%s=%q: an unformatted value in %v", k, s, rec)
			}
		}
	}
	if !election {
		t.Errorf("the election was not logged:\n%s", buf.String())
	}
}
