package durable

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// The one rule for directory fsyncs: EINVAL and ENOTSUP, however wrapped, count as
// done; every other error is an error.
func TestDirSyncErrorRule(t *testing.T) {
	cases := []struct {
		err      error
		tolerate bool
	}{
		{nil, true},
		{syscall.EINVAL, true},
		{syscall.ENOTSUP, true},
		{syscall.EOPNOTSUPP, true},
		{&fs.PathError{Op: "sync", Path: "/data", Err: syscall.EINVAL}, true},
		{fmt.Errorf("wrapped: %w", &fs.PathError{Op: "sync", Path: "/data", Err: syscall.ENOTSUP}), true},
		{syscall.EIO, false},
		{syscall.ENOSPC, false},
		{&fs.PathError{Op: "sync", Path: "/data", Err: syscall.EIO}, false},
		{fs.ErrPermission, false},
		{errors.New("sync failed"), false},
	}
	for _, tc := range cases {
		got := dirSyncError(tc.err)
		if tc.tolerate && got != nil {
			t.Errorf("dirSyncError(%v) = %v, want nil", tc.err, got)
		}
		if !tc.tolerate && got != tc.err {
			t.Errorf("dirSyncError(%v) = %v, want the error itself", tc.err, got)
		}
	}
}

func TestSyncDir(t *testing.T) {
	dir := t.TempDir()
	if err := SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir(filepath.Join(dir, "absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("absent dir: err %v, want fs.ErrNotExist", err)
	}
}

func TestWriteDir(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "ckpt", "step-000001")
	err := WriteDir(context.Background(), dir, func(tmp string) error {
		return CreateFile(filepath.Join(tmp, "config.json"), 0o644, writeString("{}"))
	})
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, filepath.Join(dir, "config.json"), "{}", 0o644)
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o755 {
		t.Fatalf("dir has mode %v, want 0755", st.Mode().Perm())
	}
	if names := entries(t, filepath.Join(root, "ckpt")); len(names) != 1 {
		t.Fatalf("parent holds %v, want only step-000001", names)
	}
}

func TestWriteDirExists(t *testing.T) {
	root := t.TempDir()
	full := filepath.Join(root, "full")
	empty := filepath.Join(root, "empty")
	for _, d := range []string{full, empty} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(full, "f"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	fill := func(tmp string) error {
		return CreateFile(filepath.Join(tmp, "f"), 0o644, writeString("new"))
	}
	for _, d := range []string{full, empty} {
		if err := WriteDir(context.Background(), d, fill); !errors.Is(err, ErrExists) {
			t.Fatalf("WriteDir(%s): err %v, want ErrExists", d, err)
		}
	}
	checkFile(t, filepath.Join(full, "f"), "old", 0o644)
	if names := entries(t, empty); len(names) != 0 {
		t.Fatalf("empty dir now holds %v", names)
	}
	if names := entries(t, root); len(names) != 2 {
		t.Fatalf("root holds %v, want only full and empty (no temp dirs left)", names)
	}
	for _, d := range []string{".", "/"} {
		if err := WriteDir(context.Background(), d, fill); !errors.Is(err, ErrBadPath) {
			t.Errorf("WriteDir(%q): err %v, want ErrBadPath", d, err)
		}
	}
}

func TestWriteDirFailureLeavesNothing(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "step-000001")
	boom := errors.New("disk full")
	err := WriteDir(context.Background(), dir, func(tmp string) error {
		if err := CreateFile(filepath.Join(tmp, "config.json"), 0o644, writeString("{}")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want the fill error", err)
	}
	if names := entries(t, root); len(names) != 0 {
		t.Fatalf("failed write left %v in root", names)
	}

	ctx, cancel := context.WithCancel(context.Background())
	err = WriteDir(ctx, dir, func(tmp string) error {
		cancel()
		return CreateFile(filepath.Join(tmp, "config.json"), 0o644, writeString("{}"))
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled write: err %v, want context.Canceled", err)
	}
	if names := entries(t, root); len(names) != 0 {
		t.Fatalf("canceled write left %v in root", names)
	}
}
