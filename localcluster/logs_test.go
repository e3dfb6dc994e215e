package localcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/internal/logcheck"
	"github.com/ringtrain/ringtrain/worker"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// TestLogKeys runs a job with every component logging JSON at debug level into one
// stream: no record repeats a key, and each replica's records carry its id once,
// under "replica". Every replica and worker runs TLS with its own certificate.
func TestLogKeys(t *testing.T) {
	dir := t.TempDir()
	spec := tinyJob(t, dir, 2)
	spec.EvalBatches = 1

	var buf lockedBuffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if _, err := Run(context.Background(), Options{
		Spec: spec, Workers: 2, Coordinators: 3, Dir: dir,
		Replica: coordinator.Config{Logger: log, Settle: 100 * time.Millisecond},
		Client:  coordinator.ClientOptions{Logger: log},
		Worker:  worker.Config{Logger: log},
	}); err != nil {
		t.Fatal(err)
	}
	replicas := map[string]bool{}
	tlsOf := map[string]string{} // replica or worker → the "tls" of its start record
	for line := range strings.Lines(buf.b.String()) {
		if dup := logcheck.DuplicateKeys([]byte(line)); dup != nil {
			t.Errorf("record repeats %v: %s", dup, line)
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if id, ok := rec["replica"].(string); ok {
			if !strings.HasPrefix(id, "c") {
				t.Errorf("replica %q, want the replica's id: %s", id, line)
			}
			replicas[id] = true
		}
		if v, ok := rec["tls"].(string); ok {
			id, _ := rec["replica"].(string)
			if w, ok := rec["worker"].(string); ok {
				id = w
			}
			tlsOf[id] = v
		}
	}
	for _, id := range []string{"c0", "c1", "c2", "w0", "w1"} {
		role := "coordinator"
		if id[0] == 'w' {
			role = "worker"
		}
		if want := "ringtrain://" + role + "/" + id; tlsOf[id] != want {
			t.Errorf("%s runs with tls %q, want %q", id, tlsOf[id], want)
		}
	}
	if len(replicas) != 3 {
		t.Errorf("records of replicas %v, want c0, c1 and c2", replicas)
	}
}
