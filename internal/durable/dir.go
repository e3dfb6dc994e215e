package durable

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// SyncDir fsyncs the directory dir, so that entries created, removed or renamed in it
// survive a crash. A file system that cannot fsync a directory, and says so with
// EINVAL or ENOTSUP, counts as synced (see the package doc); any other error is
// returned wrapped, naming dir.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("durable: sync directory %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err := dirSyncError(err); err != nil {
		return fmt.Errorf("durable: sync directory %s: %w", dir, err)
	}
	return nil
}

// dirSyncError applies SyncDir's rule to the error of a directory fsync: nil for
// success and for EINVAL and ENOTSUP (EOPNOTSUPP on Linux is the same number), err
// otherwise.
func dirSyncError(err error) error {
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		return nil
	}
	return err
}

// WriteDir creates the directory dir, atomically and durably, with the contents fill
// writes: fill runs on a fresh temporary directory next to dir (mode 0755), which is
// then fsynced, renamed to dir, and dir's parent fsynced. After a crash dir is either
// absent or complete. The parent is created (0755) if needed.
//
// fill must fsync every file it writes; CreateFile does. An existing dir, even an
// empty one, is never replaced: that returns an error wrapping ErrExists. A dir that
// names no directory ("." or a root) returns ErrBadPath. Two concurrent WriteDirs to
// the same dir are not supported.
//
// On error the temporary directory is removed and dir is untouched; an error from
// fill is returned as it is. WriteDir checks ctx before it starts and again before
// the rename.
func WriteDir(ctx context.Context, dir string, fill func(tmp string) error) (err error) {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("durable: write directory %s: %w", dir, err)
	}
	dir = filepath.Clean(dir)
	parent, base := filepath.Dir(dir), filepath.Base(dir)
	if base == "." || base == ".." || base == string(filepath.Separator) {
		return fmt.Errorf("%w: %q", ErrBadPath, dir)
	}
	if err := notExists(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("durable: write directory %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+base+".tmp-")
	if err != nil {
		return fmt.Errorf("durable: write directory %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("durable: write directory %s: %w", dir, err)
	}
	if err := fill(tmp); err != nil {
		return err
	}
	if err := SyncDir(tmp); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("durable: write directory %s: %w", dir, err)
	}
	if err := notExists(dir); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s", ErrExists, dir)
		}
		return fmt.Errorf("durable: write directory %s: %w", dir, err)
	}
	if err := SyncDir(parent); err != nil {
		return fmt.Errorf("durable: %s created, but the rename may not survive a crash: %w", dir, err)
	}
	return nil
}

// notExists returns nil if nothing is at path, an error wrapping ErrExists if
// something is, and the Lstat error otherwise.
func notExists(path string) error {
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return fmt.Errorf("%w: %s", ErrExists, path)
	case errors.Is(err, fs.ErrNotExist):
		return nil
	default:
		return fmt.Errorf("durable: write directory %s: %w", path, err)
	}
}
