package shard

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/ringtrain/ringtrain/internal/durable"
)

// fileMode is the mode of every file shard writes: shards, tokenizer.json and
// manifest.json are writable by their owner and readable by everyone, so that
// workers running as another user (a container's uid) can read a prepared dataset.
// durable.WriteFile sets the mode explicitly, so the umask does not narrow it.
const fileMode = 0o644

// writeFileAtomic replaces path with the bytes fill writes, atomically and durably
// (durable.WriteFile: temporary file in the same directory, fsync, rename, fsync of
// the directory), and returns the hex sha256 of the bytes written. On error path is
// untouched and no temporary file is left. fill should check ctx if it runs long.
func writeFileAtomic(ctx context.Context, path string, fill func(w io.Writer) error) (string, error) {
	h := sha256.New()
	if err := durable.WriteFile(ctx, path, fileMode, func(w io.Writer) error {
		return fill(io.MultiWriter(w, h))
	}); err != nil {
		return "", fmt.Errorf("shard: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
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
