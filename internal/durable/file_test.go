package durable

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func writeString(s string) func(w io.Writer) error {
	return func(w io.Writer) error {
		_, err := io.WriteString(w, s)
		return err
	}
}

// entries returns the names in dir.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func checkFile(t *testing.T, path, want string, perm fs.FileMode) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s holds %q, want %q", path, got, want)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != perm {
		t.Fatalf("%s has mode %v, want %v", path, st.Mode().Perm(), perm)
	}
}

func TestWriteFileCreatesAndReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "manifest.json")
	if err := WriteFile(context.Background(), path, 0o644, writeString("old")); err != nil {
		t.Fatal(err)
	}
	checkFile(t, path, "old", 0o644)
	if err := WriteFile(context.Background(), path, 0o600, writeString("new")); err != nil {
		t.Fatal(err)
	}
	checkFile(t, path, "new", 0o600)
	if names := entries(t, dir); len(names) != 1 {
		t.Fatalf("dir holds %v, want only manifest.json", names)
	}
}

// A write that fails at any point before the rename leaves the old file as it was and
// no temporary file behind.
func TestWriteFileFailureKeepsOldFile(t *testing.T) {
	boom := errors.New("disk full")
	cases := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		fill func(cancel context.CancelFunc) func(w io.Writer) error
		want error
	}{
		{
			name: "fill fails after a partial write",
			ctx:  func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			fill: func(context.CancelFunc) func(w io.Writer) error {
				return func(w io.Writer) error {
					if _, err := io.WriteString(w, "partial"); err != nil {
						return err
					}
					return boom
				}
			},
			want: boom,
		},
		{
			name: "canceled before the write",
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx, cancel
			},
			fill: func(context.CancelFunc) func(w io.Writer) error { return writeString("new") },
			want: context.Canceled,
		},
		{
			name: "canceled during the write",
			ctx:  func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			fill: func(cancel context.CancelFunc) func(w io.Writer) error {
				return func(w io.Writer) error {
					cancel()
					return writeString("new")(w)
				}
			},
			want: context.Canceled,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "tokenizer.json")
			if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := tc.ctx()
			defer cancel()
			err := WriteFile(ctx, path, 0o600, tc.fill(cancel))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			checkFile(t, path, "old", 0o644)
			if names := entries(t, dir); len(names) != 1 {
				t.Fatalf("dir holds %v after a failed write, want only tokenizer.json", names)
			}
		})
	}
}

func TestWriteFileErrors(t *testing.T) {
	dir := t.TempDir()
	err := WriteFile(context.Background(), filepath.Join(dir, "absent", "f"), 0o644, writeString("x"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing directory: err %v, want fs.ErrNotExist", err)
	}
	for _, p := range []string{dir + "/", dir + "/.", dir + "/.."} {
		if err := WriteFile(context.Background(), p, 0o644, writeString("x")); !errors.Is(err, ErrBadPath) {
			t.Errorf("WriteFile(%q): err %v, want ErrBadPath", p, err)
		}
	}
}

func TestCreateFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	if err := CreateFile(path, 0o644, writeString("{}")); err != nil {
		t.Fatal(err)
	}
	checkFile(t, path, "{}", 0o644)
	if err := CreateFile(path, 0o644, writeString("[]")); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second create: err %v, want fs.ErrExist", err)
	}
	checkFile(t, path, "{}", 0o644)

	boom := errors.New("disk full")
	failed := filepath.Join(dir, "model.safetensors")
	err := CreateFile(failed, 0o644, func(w io.Writer) error {
		if _, err := io.WriteString(w, "partial"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want the fill error", err)
	}
	if _, err := os.Lstat(failed); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a failed create left %s behind (%v)", failed, err)
	}
}
