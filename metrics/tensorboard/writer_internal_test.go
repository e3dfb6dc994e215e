package tensorboard

import (
	"errors"
	"os"
	"testing"
	"time"
)

// TestWriteErrorSticks: after a failed write every later call fails with the same
// error, so nothing is ever written after a record that may be cut short.
func TestWriteErrorSticks(t *testing.T) {
	w, err := Create(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.f.Close() // the next write fails
	first := w.Scalars(1, time.Now(), []Scalar{{Tag: "a", Value: 1}})
	if !errors.Is(first, os.ErrClosed) {
		t.Fatalf("write to a closed file: %v", first)
	}
	if err := w.Start(2, time.Now()); err != first {
		t.Errorf("later write: %v, want the first error %v", err, first)
	}
}
