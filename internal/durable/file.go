package durable

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFile replaces path with the bytes fill writes, atomically and durably: it
// writes a temporary file in path's directory, sets its mode to perm, fsyncs and
// closes it, renames it over path and fsyncs the directory (see SyncDir). A reader, or
// the file system after a crash, sees either the old path or the whole new one.
//
// fill's writes go to the file unbuffered; fill should buffer small writes itself and
// check ctx if it runs long. WriteFile checks ctx before it starts and again before the
// rename.
//
// On an error before the rename, the temporary file is removed and path is untouched.
// An error from fill is returned wrapped, so errors.Is sees it. If only the final
// directory fsync fails, path has been replaced but the replacement may not survive a
// crash; the error says so. WriteFile blocks for the whole write; concurrent writes to
// the same path leave one of them whole.
func WriteFile(ctx context.Context, path string, perm fs.FileMode, fill func(w io.Writer) error) (err error) {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("durable: write %s: %w", path, err)
	}
	dir, base := filepath.Split(path)
	if base == "" || base == "." || base == ".." {
		return fmt.Errorf("%w: %q", ErrBadPath, path)
	}
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("durable: write %s: %w", path, err)
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		if !renamed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("durable: write %s: %w", path, err)
	}
	if err := fill(f); err != nil {
		return fmt.Errorf("durable: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("durable: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("durable: write %s: %w", path, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("durable: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("durable: write %s: %w", path, err)
	}
	renamed = true
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("durable: %s replaced, but the rename may not survive a crash: %w", path, err)
	}
	return nil
}

// CreateFile creates path, which must not exist (an error wrapping fs.ErrExist
// otherwise), sets its mode to perm, writes it with fill, fsyncs and closes it. On
// error the partial file is removed.
//
// CreateFile alone is not atomic: a crash can leave a partial file. It is for the
// files of a directory that WriteDir is building, whose rename makes them all appear
// at once. fill's writes go to the file unbuffered.
func CreateFile(path string, perm fs.FileMode, fill func(w io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("durable: create %s: %w", path, err)
	}
	err = f.Chmod(perm)
	if err == nil {
		err = fill(f)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("durable: create %s: %w", path, err)
	}
	return nil
}
