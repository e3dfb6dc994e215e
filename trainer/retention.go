package trainer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ringtrain/ringtrain/internal/durable"
	"github.com/ringtrain/ringtrain/model"
)

// SavedCheckpoint is a complete checkpoint of a run directory, as retention sees it.
type SavedCheckpoint struct {
	Dir     string
	Step    int64
	ValLoss float64 // the validation loss recorded at Step; NaN when none was
}

// Retain decides which of a run's checkpoints to delete when keep_checkpoints is
// keep and committed is the step of the newest checkpoint that restore relies on (in
// a cluster, the newest the coordinator has committed; in a single process, the one
// just written). It keeps:
//
//   - every checkpoint when keep is 0 (or less);
//   - the keep newest;
//   - the best: the lowest validation loss among those that recorded one, the
//     earliest of equals;
//   - the committed one, and every one newer than it: a cluster commits its
//     checkpoints after writing them, so those may become the committed one.
//
// and returns the others, oldest first. It is pure: the caller deletes.
func Retain(cks []SavedCheckpoint, keep int, committed int64) []SavedCheckpoint {
	if keep <= 0 {
		return nil
	}
	byStep := slices.Clone(cks)
	slices.SortFunc(byStep, func(a, b SavedCheckpoint) int { return cmp.Compare(a.Step, b.Step) })
	best := -1
	for i, c := range byStep {
		if !math.IsNaN(c.ValLoss) && (best < 0 || c.ValLoss < byStep[best].ValLoss) {
			best = i
		}
	}
	var drop []SavedCheckpoint
	for i, c := range byStep {
		newest := i >= len(byStep)-keep
		if newest || i == best || c.Step >= committed {
			continue
		}
		drop = append(drop, c)
	}
	return drop
}

// deletingSuffix marks a checkpoint directory being deleted (".step-000100.deleting"):
// PruneCheckpoints renames a checkpoint to it before removing it, so that a crash
// mid-removal never leaves a torn directory under a checkpoint's name.
const deletingSuffix = ".deleting"

// SavedCheckpoints lists the complete checkpoints under root
// (model.ListCheckpoints) with the validation loss each recorded. A checkpoint whose
// trainer state cannot be read counts as one without a validation loss. A missing
// root holds none.
func SavedCheckpoints(root string) ([]SavedCheckpoint, error) {
	refs, err := model.ListCheckpoints(root)
	if err != nil {
		return nil, fmt.Errorf("checkpoints: %w", err)
	}
	cks := make([]SavedCheckpoint, 0, len(refs))
	for _, r := range refs {
		c := SavedCheckpoint{Dir: r.Dir, Step: r.Step, ValLoss: math.NaN()}
		if ts, err := model.ReadTrainerState(r.Dir); err == nil && ts.ValLoss != nil {
			c.ValLoss = *ts.ValLoss
		}
		cks = append(cks, c)
	}
	return cks, nil
}

// PruneCheckpoints deletes the checkpoints under root that Retain lets go (keep and
// committed as there) and returns their directories. Call it only once the newest
// checkpoint is durable (model.SaveCheckpoint has returned): then a crash at any
// point leaves every checkpoint Retain keeps whole. Each checkpoint is first renamed
// to a hidden name (which no reader takes for a checkpoint), the rename made durable,
// then removed; hidden remains of an earlier interrupted prune are removed too. keep
// 0 deletes nothing. Only the process that writes a run's checkpoints may call it.
func PruneCheckpoints(ctx context.Context, root string, keep int, committed int64) ([]string, error) {
	if keep <= 0 {
		return nil, nil
	}
	cks, err := SavedCheckpoints(root)
	if err != nil {
		return nil, err
	}
	var deleted []string
	for _, c := range Retain(cks, keep, committed) {
		if err := ctx.Err(); err != nil {
			return deleted, err
		}
		hidden := filepath.Join(root, "."+filepath.Base(c.Dir)+deletingSuffix)
		if err := os.RemoveAll(hidden); err != nil {
			return deleted, fmt.Errorf("delete checkpoint: %w", err)
		}
		if err := os.Rename(c.Dir, hidden); err != nil {
			return deleted, fmt.Errorf("delete checkpoint: %w", err)
		}
		if err := durable.SyncDir(root); err != nil {
			return deleted, fmt.Errorf("delete checkpoint %s: %w", c.Dir, err)
		}
		if err := os.RemoveAll(hidden); err != nil {
			return deleted, fmt.Errorf("delete checkpoint: %w", err)
		}
		deleted = append(deleted, c.Dir)
	}
	return deleted, removeDeleting(root)
}

// removeDeleting removes the hidden remains of deletions a crash interrupted.
func removeDeleting(root string) error {
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checkpoints: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".step-") && strings.HasSuffix(name, deletingSuffix) {
			if err := os.RemoveAll(filepath.Join(root, name)); err != nil {
				return fmt.Errorf("delete checkpoint: %w", err)
			}
		}
	}
	return nil
}
