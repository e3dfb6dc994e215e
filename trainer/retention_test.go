package trainer

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ringtrain/ringtrain/model"
)

// TestRetain checks which checkpoints retention deletes: all are kept at keep 0;
// otherwise the newest keep, the best by validation loss, the committed one and any
// newer one stay.
func TestRetain(t *testing.T) {
	nan := math.NaN()
	// cks builds checkpoints at steps 100, 200, ... with the given validation losses.
	cks := func(losses ...float64) []SavedCheckpoint {
		var out []SavedCheckpoint
		for i, l := range losses {
			step := int64(100 * (i + 1))
			out = append(out, SavedCheckpoint{Dir: fmt.Sprintf("step-%06d", step), Step: step, ValLoss: l})
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		cks       []SavedCheckpoint
		keep      int
		committed int64
		deleted   string // steps, oldest first
	}{
		{"keep 0 keeps all", cks(nan, nan, nan), 0, 300, "[]"},
		{"none", nil, 2, 0, "[]"},
		{"fewer than keep", cks(nan, nan), 3, 200, "[]"},
		{"newest 2 without evaluations", cks(nan, nan, nan, nan), 2, 400, "[100 200]"},
		{"newest 1", cks(nan, nan, nan, nan), 1, 400, "[100 200 300]"},
		{"the best stays", cks(3, 2, 2.5, 2.6), 1, 400, "[100 300]"},
		{"the best is also the newest", cks(3, 2.5, 2.4, 2), 1, 400, "[100 200 300]"},
		{"the earliest of equal bests stays", cks(3, 2, 2, 2.6), 1, 400, "[100 300]"},
		{"NaN is never the best", cks(nan, 3, nan, nan), 1, 400, "[100 300]"},
		{"the committed one stays", cks(nan, nan, nan, nan, nan), 1, 300, "[100 200]"},
		{"newer than committed stay", cks(nan, nan, nan, nan, nan), 2, 200, "[100]"},
		{"nothing committed yet", cks(nan, nan, nan), 1, 0, "[]"},
		{"committed, best and newest together", cks(2, 3, 3, 3, 3, 3), 2, 400, "[200 300]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.cks)
			slices.Reverse(in) // the order of the input does not matter
			var steps []int64
			for _, c := range Retain(in, tc.keep, tc.committed) {
				steps = append(steps, c.Step)
			}
			if got := fmt.Sprint(steps); got != tc.deleted && !(tc.deleted == "[]" && steps == nil) {
				t.Errorf("Retain(keep %d, committed %d) deletes %s, want %s", tc.keep, tc.committed, got, tc.deleted)
			}
		})
	}
}

// fakeCheckpoint writes the files retention reads of a checkpoint of step under root:
// SHA256SUMS (what makes it complete) and trainer_state.json with valLoss (none when
// NaN).
func fakeCheckpoint(t *testing.T, root string, step int64, valLoss float64) string {
	t.Helper()
	dir := model.CheckpointDir(root, step)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	state := fmt.Sprintf(`{"format_version": 1, "step": %d}`, step)
	if !math.IsNaN(valLoss) {
		state = fmt.Sprintf(`{"format_version": 1, "step": %d, "val_loss": %v}`, step, valLoss)
	}
	for name, text := range map[string]string{"trainer_state.json": state, "SHA256SUMS": "", "model.safetensors": "weights"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// entries returns the names under dir.
func entries(t *testing.T, dir string) string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return fmt.Sprint(names)
}

// TestPruneCheckpoints deletes checkpoints on disk: it reads each one's validation
// loss from its trainer state, keeps what Retain keeps, leaves alone what is not a
// complete checkpoint (a torn directory, a save in progress) and clears the hidden
// remains of an interrupted deletion.
func TestPruneCheckpoints(t *testing.T) {
	root := filepath.Join(t.TempDir(), "ckpt")
	fakeCheckpoint(t, root, 100, 2.5)
	fakeCheckpoint(t, root, 200, 2.0) // the best
	fakeCheckpoint(t, root, 300, 2.2)
	fakeCheckpoint(t, root, 400, math.NaN())
	fakeCheckpoint(t, root, 500, 2.3)
	// Not checkpoints: a save in progress, a directory without SHA256SUMS, and what
	// a deletion interrupted by a crash leaves.
	for _, d := range []string{".step-000600.tmp-123", "step-000050", ".step-000020.deleting"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	saved, err := SavedCheckpoints(root)
	if err != nil {
		t.Fatal(err)
	}
	var losses []string
	for _, c := range saved {
		losses = append(losses, fmt.Sprintf("%d:%v", c.Step, c.ValLoss))
	}
	if got := fmt.Sprint(losses); got != "[100:2.5 200:2 300:2.2 400:NaN 500:2.3]" {
		t.Errorf("SavedCheckpoints: %s", got)
	}

	deleted, err := PruneCheckpoints(context.Background(), root, 2, 500)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprint([]string{model.CheckpointDir(root, 100), model.CheckpointDir(root, 300)}); fmt.Sprint(deleted) != want {
		t.Errorf("deleted %v, want %s", deleted, want)
	}
	if got, want := entries(t, root), "[.step-000600.tmp-123 step-000050 step-000200 step-000400 step-000500]"; got != want {
		t.Errorf("left %s, want %s", got, want)
	}
	if latest, err := model.LatestCheckpoint(root); err != nil || latest != model.CheckpointDir(root, 500) {
		t.Errorf("LatestCheckpoint after pruning: %q, %v", latest, err)
	}

	// keep 0 deletes nothing; a missing root is no error.
	if deleted, err := PruneCheckpoints(context.Background(), root, 0, 500); err != nil || deleted != nil {
		t.Errorf("keep 0: deleted %v, %v", deleted, err)
	}
	if deleted, err := PruneCheckpoints(context.Background(), filepath.Join(root, "none"), 1, 1); err != nil || deleted != nil {
		t.Errorf("missing root: deleted %v, %v", deleted, err)
	}
}
