package shard

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// writeFileAtomic creates path with the bytes fill writes: it writes a temporary
// file in the same directory, fsyncs it, renames it over path and fsyncs the
// directory, so a reader sees either the old file or the whole new one. It
// returns the hex sha256 of the bytes written. On error the temporary file is
// removed and path is untouched. fill should check ctx if it runs long.
func writeFileAtomic(ctx context.Context, path string, fill func(w io.Writer) error) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("shard: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	if err := fill(io.MultiWriter(tmp, h)); err != nil {
		return "", fmt.Errorf("shard: writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return "", fmt.Errorf("shard: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("shard: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("shard: %w", err)
	}
	ok = true
	if err := syncDir(dir); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// syncDir fsyncs a directory so a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("shard: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("shard: sync %s: %w", dir, err)
	}
	return nil
}

// ctxReader fails reads once ctx is done, so long copies honour cancellation.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// SHA256Hex returns the lowercase hex sha256 of b, the form the manifest records
// (for example of a marshalled tokenizer, to pass to Dataset.CheckTokenizer).
func SHA256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
