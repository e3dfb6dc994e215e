package trainer

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/model"
)

// RestoreCommitted restores the committed checkpoint, and refuses files whose digest
// is not the committed one, naming SHA256SUMS, with the trainer left as it was.
func TestRestoreCommitted(t *testing.T) {
	data := prepareData(t)
	spec := tinySpec(data, t.TempDir())
	tr, p := newTrainer(t, spec)
	tr.Step = 3
	dir, err := SaveCheckpoint(tr, p, 1.5, math.NaN())
	if err != nil {
		t.Fatal(err)
	}
	digest, err := model.CheckpointDigest(dir)
	if err != nil {
		t.Fatal(err)
	}

	fresh, _ := newTrainer(t, spec)
	if err := RestoreCommitted(fresh, p, dir, digest); err != nil || fresh.Step != 3 {
		t.Fatalf("restore of the committed checkpoint: step %d, %v", fresh.Step, err)
	}

	// The same directory rewritten by another save (other weights): refused.
	tr.Model.Params.Slab[0] += 1
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := SaveCheckpoint(tr, p, 1.5, math.NaN()); err != nil {
		t.Fatal(err)
	}
	other, _ := newTrainer(t, spec)
	before := other.Model.Params.Slab[0]
	err = RestoreCommitted(other, p, dir, digest)
	if !errors.Is(err, model.ErrChecksum) || !strings.Contains(err.Error(), filepath.Join(dir, "SHA256SUMS")) {
		t.Fatalf("restore of different files: %v, want ErrChecksum naming SHA256SUMS", err)
	}
	if other.Step != 0 || other.Model.Params.Slab[0] != before {
		t.Fatalf("a refused restore changed the trainer: step %d", other.Step)
	}
}
