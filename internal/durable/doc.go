// Package durable writes files and directories so that a crash leaves either the old
// contents or the whole new ones, never a torn file, and so that what a write returned
// success for survives a power loss.
//
// # Who calls it
//
//   - shard writes token shards, tokenizer.json and manifest.json with WriteFile.
//   - tokenizer.Save writes a tokenizer with WriteFile.
//   - model writes checkpoints and Hugging Face exports with WriteDir, creating each
//     file inside the temporary directory with CreateFile.
//
// # Usage
//
//	err := durable.WriteFile(ctx, "data/manifest.json", 0o644, func(w io.Writer) error {
//		_, err := w.Write(b)
//		return err
//	})
//
//	err := durable.WriteDir(ctx, "ckpt/step-000100", func(tmp string) error {
//		return durable.CreateFile(filepath.Join(tmp, "config.json"), 0o644, writeConfig)
//	})
//
// # Why this sequence
//
// A rename within one directory is atomic on POSIX file systems, but neither the data
// of a file nor the rename itself is on disk until fsynced. WriteFile therefore writes
// a temporary file in the destination's directory (so the rename never crosses file
// systems), fsyncs it, renames it over the destination and fsyncs the directory, which
// makes the rename durable. WriteDir does the same for a whole directory: its files are
// fsynced as they are created, then the temporary directory, then, after the rename,
// its parent.
//
// Some file systems cannot fsync a directory and say so with EINVAL or ENOTSUP (some
// network and FUSE file systems, for example). SyncDir counts those two errors as done:
// there is nothing more a program can do on such a file system, and failing every save
// there would make ringtrain unusable on it. Every other error is returned. This is the
// one rule for directory fsyncs in ringtrain; every durable write goes through it.
//
// Temporary names start with "." followed by the destination's base name and ".tmp-",
// so directory listings that skip dot files (shard.Open, model.LatestCheckpoint) never
// mistake one for the real thing. A failed write removes its temporary file or
// directory; only a crash can leave one behind.
//
// File modes are set exactly (the umask does not apply), so a file's mode does not
// depend on the process that wrote it.
package durable
