package tensorboard_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/metrics/tensorboard"
	"github.com/ringtrain/ringtrain/metrics/tensorboard/tbtest"
)

// fixedClock returns a clock that always says t.
func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

// writeRun writes a file of a START at step 1 and three steps of two scalars.
func writeRun(t *testing.T, dir string, o tensorboard.Options) *tensorboard.Writer {
	t.Helper()
	w, err := tensorboard.Create(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	wall := time.Unix(1700000000, 0)
	if err := w.Start(1, wall); err != nil {
		t.Fatal(err)
	}
	for step := int64(1); step <= 3; step++ {
		s := []tensorboard.Scalar{{Tag: "train/loss", Value: 4 - float32(step)/4}, {Tag: "train/lr", Value: float32(step) * 1e-4}}
		if err := w.Scalars(step, wall.Add(time.Duration(step)*time.Second), s); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// TestWriterReadBack writes a file and reads it with the independent reader: the
// name, the file_version event first, the START, then each step's scalars at its
// step and wall time; every record readable before Close (nothing is buffered).
func TestWriterReadBack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tb")
	w := writeRun(t, dir, tensorboard.Options{Hostname: "host-a", Now: fixedClock(time.Unix(1700000000, 0))})
	want := filepath.Join(dir, "events.out.tfevents.1700000000.host-a")
	if w.Path() != want {
		t.Errorf("path %s, want %s", w.Path(), want)
	}
	check := func(when string) {
		evs, err := tbtest.ReadFile(want)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if len(evs) != 5 {
			t.Fatalf("%s: %d events, want 5", when, len(evs))
		}
		if evs[0].FileVersion != tensorboard.FileVersion || evs[0].WallTime != 1700000000 || evs[0].HasSummary {
			t.Errorf("%s: first event %+v, want the file_version event", when, evs[0])
		}
		if evs[1].SessionStatus != 1 || evs[1].Step != 1 {
			t.Errorf("%s: second event %+v, want START at step 1", when, evs[1])
		}
		for i, e := range evs[2:] {
			step := int64(i + 1)
			loss, ok1 := e.Value("train/loss")
			lr, ok2 := e.Value("train/lr")
			if e.Step != step || e.WallTime != float64(1700000000+step) || !ok1 || !ok2 ||
				loss != 4-float32(step)/4 || lr != float32(step)*1e-4 || len(e.Scalars) != 2 {
				t.Errorf("%s: event of step %d: %+v", when, step, e)
			}
		}
	}
	check("before Close")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	check("after Close")
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := w.Scalars(4, time.Now(), []tensorboard.Scalar{{Tag: "x", Value: 1}}); !errors.Is(err, tensorboard.ErrClosed) {
		t.Errorf("Scalars after Close: %v, want ErrClosed", err)
	}
}

// TestTruncatedLastRecord cuts the file at every byte of its last record, as a
// crash in the middle of a write would: the reader reports the torn record and
// returns every record before it intact.
func TestTruncatedLastRecord(t *testing.T) {
	dir := t.TempDir()
	w := writeRun(t, dir, tensorboard.Options{Hostname: "h"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	full, err := os.ReadFile(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	whole, err := tbtest.ReadFile(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	// The last record is step 3's: it starts after the framed records before it.
	recs, err := tbtest.ReadRecords(bytes.NewReader(full))
	if err != nil {
		t.Fatal(err)
	}
	lastStart := 0
	for _, r := range recs[:len(recs)-1] {
		lastStart += 8 + 4 + len(r) + 4
	}
	if lastStart+8+4+len(recs[len(recs)-1])+4 != len(full) {
		t.Fatalf("records add up to %d bytes, the file has %d", lastStart+16+len(recs[len(recs)-1]), len(full))
	}
	torn := filepath.Join(t.TempDir(), "events.out.tfevents.torn")
	for cut := lastStart + 1; cut < len(full); cut++ {
		if err := os.WriteFile(torn, full[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		evs, err := tbtest.ReadFile(torn)
		if !errors.Is(err, tbtest.ErrTruncated) {
			t.Fatalf("cut at byte %d of %d: err %v, want ErrTruncated", cut, len(full), err)
		}
		if len(evs) != len(whole)-1 {
			t.Fatalf("cut at byte %d: %d events, want %d", cut, len(evs), len(whole)-1)
		}
		for i := range evs {
			if evs[i].Step != whole[i].Step || len(evs[i].Scalars) != len(whole[i].Scalars) {
				t.Fatalf("cut at byte %d: event %d %+v, want %+v", cut, i, evs[i], whole[i])
			}
		}
	}
}

// TestCreateNeverReuses: two writers in the same second on the same host get two
// files, the second named after the first, so neither appends to the other.
func TestCreateNeverReuses(t *testing.T) {
	dir := t.TempDir()
	o := tensorboard.Options{Hostname: "h", Now: fixedClock(time.Unix(1700000000, 0))}
	var paths []string
	for range 3 {
		w := writeRun(t, dir, o)
		paths = append(paths, w.Path())
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	base := filepath.Join(dir, "events.out.tfevents.1700000000.h")
	if want := []string{base, base + ".1", base + ".2"}; strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Errorf("paths %v, want %v", paths, want)
	}
	files, evs, err := tbtest.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 || len(evs) != 15 {
		t.Errorf("%d files, %d events; want 3 and 15", len(files), len(evs))
	}
}

// TestScalarWithoutTag is an error naming the scalar, and writes nothing.
func TestScalarWithoutTag(t *testing.T) {
	w, err := tensorboard.Create(t.TempDir(), tensorboard.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	err = w.Scalars(7, time.Now(), []tensorboard.Scalar{{Tag: "a", Value: 1}, {Value: 2}})
	if !errors.Is(err, tensorboard.ErrBadScalar) || !strings.Contains(err.Error(), "scalar 1 of step 7") {
		t.Errorf("err %v, want ErrBadScalar naming scalar 1 of step 7", err)
	}
	evs, err := tbtest.ReadFile(w.Path())
	if err != nil || len(evs) != 1 {
		t.Errorf("%d events (%v), want only the file_version event", len(evs), err)
	}
}

// TestCreateBadFolder names the folder's problem.
func TestCreateBadFolder(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := tensorboard.Create(filepath.Join(file, "tb"), tensorboard.Options{}); err == nil || !strings.Contains(err.Error(), "event folder") {
		t.Errorf("err %v, want an event folder error", err)
	}
}
