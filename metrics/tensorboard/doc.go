// Package tensorboard writes TensorBoard event files: the scalars of a training run
// (loss, learning rate, gradient norm, throughput, step times) as TensorBoard, and
// the tools that read its files (TensorBoard's own loaders, tbparse, the W&B sync),
// expect them. It is ringtrain's own small writer: no TensorFlow, no generated
// protobuf code.
//
// # Who calls it
//
// trainer.Bookkeeper writes one event per step under <out>/tb/ for `ringtrain train`
// and for rank 0 of a cluster. Anything else that has scalars per step can use it the
// same way.
//
// # Usage
//
//	w, err := tensorboard.Create(filepath.Join(out, "tb"), tensorboard.Options{})
//	if err != nil { ... }
//	defer w.Close()
//	err = w.Start(1, time.Now())                 // a (re)start at step 1
//	err = w.Scalars(1, time.Now(), []tensorboard.Scalar{{Tag: "train/loss", Value: 4.17}})
//	...
//	err = w.Close()                              // fsyncs the file
//
// # The format
//
// An event file is a sequence of TFRecords, each
//
//	uint64 length                 little-endian
//	uint32 masked CRC32C(length)  of the 8 length bytes
//	byte   data[length]           one serialized tensorboard.Event protobuf
//	uint32 masked CRC32C(data)
//
// where CRC32C is the Castagnoli CRC and masked(c) = ((c >> 15) | (c << 17)) +
// 0xa282ead8 (record.go). The Event message (event.go) has wall_time (double, field
// 1), step (int64, field 2) and one of file_version (string, 3), summary (Summary,
// 5) or session_log (SessionLog, 7). The first record of every file is the
// file_version event "brain.Event:2". A scalar is a Summary.Value (repeated field 1
// of Summary) with its tag (string, 1) and simple_value (float, 2); every tag of one
// step goes in one Summary of one event. The protobuf is encoded by hand with
// protowire; the field numbers are those of TensorBoard's event.proto and
// summary.proto.
//
// # Files, restarts and crashes
//
// A Writer creates a new file named events.out.tfevents.<unix seconds>.<hostname>,
// TensorBoard's convention, so a resumed run adds a file beside the earlier ones and
// TensorBoard merges every file of the folder into one run, reading them in name
// (that is, time) order. Start writes a SessionLog START event: TensorBoard then drops
// the points an earlier, crashed process recorded at that step and after, which the
// resumed run records again.
//
// Every record goes to the file in one write as soon as it is made, with no buffer in
// between, so a TensorBoard watching the folder sees each step as it happens; Close
// fsyncs the file and its folder. A process killed in the middle of a write leaves at
// most its last record cut short: readers (TensorBoard's and this package's tests')
// see every record before it intact and treat the torn tail as not yet written.
package tensorboard
