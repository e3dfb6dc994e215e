package localcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/examples"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/shard"
	"github.com/ringtrain/ringtrain/trainer"
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

// objectKeys returns every object's keys, in order, of the JSON document doc.
func objectKeys(t *testing.T, doc string) [][]string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(doc))
	var objs [][]string
	var walk func() error
	walk = func() error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			var keys []string
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				keys = append(keys, k.(string))
				if err := walk(); err != nil {
					return err
				}
			}
			objs = append(objs, keys)
			_, err = dec.Token()
			return err
		case json.Delim('['):
			for dec.More() {
				if err := walk(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	if err := walk(); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, doc)
	}
	return objs
}

// TestLogKeys runs a job with every component logging JSON at debug level into one
// stream: no record repeats a key, and each replica's records carry its id once,
// under "replica".
func TestLogKeys(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "input.txt")
	if err := os.WriteFile(text, []byte(examples.TinyShakespeare[:20_000]), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if _, err := shard.PrepareText(context.Background(), "char", shard.PrepareOptions{Inputs: []string{text}, OutDir: data, MinShards: 2}); err != nil {
		t.Fatal(err)
	}
	spec := trainer.DefaultSpec()
	spec.Model = model.Config{Layers: 1, Heads: 2, Embd: 16}
	spec.Data, spec.Out = data, filepath.Join(dir, "run")
	spec.SeqLen, spec.MicroBatch, spec.Streams = 16, 1, 2
	spec.Steps, spec.WarmupSteps = 2, 1
	spec.EvalInterval, spec.EvalBatches, spec.CheckpointInterval = 0, 1, 0

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
	for line := range strings.Lines(buf.b.String()) {
		objs := objectKeys(t, line)
		top := objs[len(objs)-1]
		seen := map[string]bool{}
		for _, k := range top {
			if seen[k] {
				t.Errorf("record repeats %q: %s", k, line)
			}
			seen[k] = true
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
	}
	if len(replicas) != 3 {
		t.Errorf("records of replicas %v, want c0, c1 and c2", replicas)
	}
}
