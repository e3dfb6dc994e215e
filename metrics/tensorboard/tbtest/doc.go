// Package tbtest reads TensorBoard event files back, for tests. It shares no code
// with the writer in package tensorboard: it has its own TFRecord reader, which
// checks both CRC32C checksums of every record (hash/crc32's Castagnoli table and the
// TFRecord mask written out again here), and its own protobuf field walker, which
// knows the few fields of TensorBoard's Event, Summary, Summary.Value and SessionLog
// messages that ringtrain writes and skips the others. A test that writes files with
// package tensorboard and reads them with this package therefore checks the format,
// not the writer against itself.
//
// # Usage
//
//	files, events, err := tbtest.ReadDir(filepath.Join(out, "tb"))
//	if err != nil { ... } // errors.Is(err, tbtest.ErrTruncated) for a torn last record
//	for _, e := range events {
//		if v, ok := e.Value("train/loss"); ok { ... e.Step ... }
//	}
package tbtest
