package worker

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// lockedBuffer is an io.Writer safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf.Bytes()...)
}

// auditRun is a synthetic audit of a 3-step job of 4 streams on two ranks, whose
// step 1 failed in generation 1 after rank 0 applied it (rank 0 then died) and was
// recomputed in generation 2 by w1 alone.
func auditRun() []AuditRecord {
	return []AuditRecord{
		{Event: "load", Worker: "w0", Step: 0, Checksum: 10, Source: "init"},
		{Event: "load", Worker: "w1", Step: 0, Checksum: 10, Source: "init"},
		{Event: "contribute", Worker: "w0", Generation: 1, Rank: 0, World: 2, Step: 0, Streams: []int{0, 1}},
		{Event: "contribute", Worker: "w1", Generation: 1, Rank: 1, World: 2, Step: 0, Streams: []int{2, 3}},
		{Event: "apply", Worker: "w0", Generation: 1, Rank: 0, World: 2, Step: 0, Before: 10, Checksum: 11},
		{Event: "apply", Worker: "w1", Generation: 1, Rank: 1, World: 2, Step: 0, Before: 10, Checksum: 11},
		{Event: "contribute", Worker: "w0", Generation: 1, Rank: 0, World: 2, Step: 1, Streams: []int{0, 1}},
		{Event: "contribute", Worker: "w1", Generation: 1, Rank: 1, World: 2, Step: 1, Streams: []int{2, 3}},
		{Event: "apply", Worker: "w0", Generation: 1, Rank: 0, World: 2, Step: 1, Before: 11, Checksum: 99},
		{Event: "state", Worker: "w1", Generation: 2, Rank: 0, World: 1, Step: 1, Checksum: 11},
		{Event: "contribute", Worker: "w1", Generation: 2, Rank: 0, World: 1, Step: 1, Streams: []int{0, 1, 2, 3}},
		{Event: "apply", Worker: "w1", Generation: 2, Rank: 0, World: 1, Step: 1, Before: 11, Checksum: 12},
		{Event: "contribute", Worker: "w1", Generation: 2, Rank: 0, World: 1, Step: 2, Streams: []int{0, 1, 2, 3}},
		{Event: "apply", Worker: "w1", Generation: 2, Rank: 0, World: 1, Step: 2, Before: 12, Checksum: 13},
		{Event: "done", Worker: "w1", Generation: 2, Rank: 0, World: 1, Step: 3, Checksum: 13},
	}
}

func TestVerifyAudit(t *testing.T) {
	rep, err := VerifyAudit(auditRun(), 4)
	if err != nil {
		t.Fatalf("a sound audit failed: %v", err)
	}
	if rep.Steps != 3 || rep.Recomputed != 1 || rep.Generations != 2 || rep.Final != 13 || rep.Lost != 0 || rep.Repeated != 0 {
		t.Fatalf("report %+v", rep)
	}

	// A full restart from the checkpoint of step 1 recomputes step 1 and 2 in
	// generation 3 with the same bits: sound, and counted as recomputed.
	restart := append(auditRun(),
		AuditRecord{Event: "load", Worker: "w1", Step: 1, Checksum: 11, Source: "ckpt"},
		AuditRecord{Event: "contribute", Worker: "w1", Generation: 3, Rank: 0, World: 1, Step: 1, Streams: []int{0, 1, 2, 3}},
		AuditRecord{Event: "apply", Worker: "w1", Generation: 3, Rank: 0, World: 1, Step: 1, Before: 11, Checksum: 12},
		AuditRecord{Event: "contribute", Worker: "w1", Generation: 3, Rank: 0, World: 1, Step: 2, Streams: []int{0, 1, 2, 3}},
		AuditRecord{Event: "apply", Worker: "w1", Generation: 3, Rank: 0, World: 1, Step: 2, Before: 12, Checksum: 13},
		AuditRecord{Event: "done", Worker: "w1", Generation: 3, Rank: 0, World: 1, Step: 3, Checksum: 13})
	if rep, err := VerifyAudit(restart, 4); err != nil || rep.Recomputed != 3 || rep.Generations != 2 {
		t.Fatalf("a run restarted from a checkpoint: %v, %+v", err, rep)
	}

	for _, tc := range []struct {
		name   string
		mutate func([]AuditRecord) []AuditRecord
		want   string
	}{
		{"a stream lost", func(r []AuditRecord) []AuditRecord {
			r[10].Streams = []int{0, 1, 2}
			return r
		}, "1 (step, stream) pairs lost"},
		{"a stream added twice", func(r []AuditRecord) []AuditRecord {
			r[3].Streams = []int{1, 2, 3}
			return r
		}, "0 (step, stream) pairs lost and 1 repeated"},
		{"a rank's contribution missing", func(r []AuditRecord) []AuditRecord {
			return append(r[:3:3], r[4:]...)
		}, "1 of 2 ranks"},
		{"ranks finish apart", func(r []AuditRecord) []AuditRecord {
			return append(r, AuditRecord{Event: "done", Worker: "w0", Step: 3, Checksum: 14})
		}, "finished at step"},
		{"a step with no update", func(r []AuditRecord) []AuditRecord {
			r[11].Checksum = 77
			return r
		}, "no applied update of step 1"},
		{"weights from nowhere", func(r []AuditRecord) []AuditRecord {
			r[0].Checksum, r[1].Checksum = 5, 5
			return r
		}, "not initialised or restored"},
		{"nobody finished", func(r []AuditRecord) []AuditRecord { return r[:len(r)-1] }, "no worker finished"},
	} {
		_, err := VerifyAudit(tc.mutate(auditRun()), 4)
		if !errors.Is(err, ErrAudit) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrAudit with %q", tc.name, err, tc.want)
		}
	}
}

func TestReadAuditTornLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.jsonl")
	body := `{"event":"load","worker":"w0","rank":0,"step":0,"before":0,"checksum":10}` + "\n" + `{"event":"cont`
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadAudit(path)
	if err != nil || len(recs) != 1 {
		t.Fatalf("torn last line: %v, %d records", err, len(recs))
	}
	if err := os.WriteFile(path, []byte(`{"event"`+"\n"+body), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadAudit(path); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("a corrupt line in the middle: %v", err)
	}
}
