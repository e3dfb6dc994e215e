package tensorboard

import (
	"bytes"
	"math"
	"testing"
	"time"
)

// tfFileVersionRecord is the first record of an event file TensorFlow wrote at
// wall time 1599759586 (TensorBoard's TFRecord reader tests quote it): the
// file_version event, framed.
const tfFileVersionRecord = "\x18\x00\x00\x00\x00\x00\x00\x00" + "\xa3\x7f\x4b\x22" +
	"\x09\x00\x00\x80\x38\x99\xd6\xd7\x41\x1a\x0dbrain.Event:2" + "\x12\x4b\x36\xab"

// TestFileVersionRecordMatchesTensorFlow: the writer's first record is byte for
// byte the one TensorFlow writes at the same wall time.
func TestFileVersionRecordMatchesTensorFlow(t *testing.T) {
	got := appendRecord(nil, appendFileVersionEvent(nil, time.Unix(1599759586, 0)))
	if !bytes.Equal(got, []byte(tfFileVersionRecord)) {
		t.Errorf("file_version record\n got %q\nwant %q", got, tfFileVersionRecord)
	}
}

// TestRecordFramingMatchesTensorFlow frames the data of a summary record of the same
// TensorFlow file and compares the length, both checksums and the layout.
func TestRecordFramingMatchesTensorFlow(t *testing.T) {
	data := "\x09\xc4\x05\xb7\x3d\x99\xd6\xd7\x41\x10\x4d\x2a\x25\x0a\x23\x0a\x08accuracy" +
		"\x42\x0a\x08\x01\x12\x00\x22\x04\xa4\x70\x7d\x3f\x4a\x0b\x0a\x09\x0a\x07scalars"
	want := "\x32\x00\x00\x00\x00\x00\x00\x00" + "\x24\x19\x56\xec" + data + "\xa5\x5b\x64\x33"
	if got := appendRecord([]byte("x"), []byte(data)); string(got) != "x"+want {
		t.Errorf("record\n got %q\nwant %q", got, "x"+want)
	}
	if len(want)-len(data) != recordOverhead {
		t.Errorf("overhead %d, want %d", len(want)-len(data), recordOverhead)
	}
}

// TestMaskedCRC checks the published values: RFC 3720's CRC32C of 32 zero bytes
// (masked), and the masked CRC TensorBoard quotes from a real file.
func TestMaskedCRC(t *testing.T) {
	c := uint32(0x8a9136aa)
	if got, want := maskedCRC(make([]byte, 32)), ((c>>15)|(c<<17))+0xa282ead8; got != want {
		t.Errorf("maskedCRC(32 zeros) = %08x, want %08x", got, want)
	}
	if got := maskedCRC([]byte("\x1a\x11CRC test, one two")); got != 0x5794d08a {
		t.Errorf("maskedCRC = %08x, want 5794d08a", got)
	}
}

// TestScalarsEventBytes spells out one scalars event field by field, from
// event.proto and summary.proto: wall_time, step, and the summary of two values.
func TestScalarsEventBytes(t *testing.T) {
	wall := time.Unix(1599759586, 500_000_000)
	got := appendScalarsEvent(nil, wall, 300, []Scalar{{"train/loss", 2.5}, {"lr", -1}})
	f32 := func(v float32) string {
		b := math.Float32bits(v)
		return string([]byte{byte(b), byte(b >> 8), byte(b >> 16), byte(b >> 24)})
	}
	w := math.Float64bits(1599759586.5)
	wallBytes := string([]byte{byte(w), byte(w >> 8), byte(w >> 16), byte(w >> 24), byte(w >> 32), byte(w >> 40), byte(w >> 48), byte(w >> 56)})
	value1 := "\x0a\x0atrain/loss" + "\x15" + f32(2.5) // tag (1, bytes), simple_value (2, fixed32)
	value2 := "\x0a\x02lr" + "\x15" + f32(-1)
	summary := "\x0a" + string(rune(len(value1))) + value1 + "\x0a" + string(rune(len(value2))) + value2
	want := "\x09" + wallBytes + // wall_time (1, fixed64)
		"\x10\xac\x02" + // step (2, varint) 300
		"\x2a" + string(rune(len(summary))) + summary // summary (5, bytes)
	if string(got) != want {
		t.Errorf("event\n got %q\nwant %q", got, want)
	}
}

// TestStartEventBytes: a SessionLog (7) whose status (1) is START (1), at its step.
func TestStartEventBytes(t *testing.T) {
	got := appendStartEvent(nil, time.Unix(0, 0), 5)
	if want := "\x10\x05" + "\x3a\x02\x08\x01"; string(got) != want {
		t.Errorf("start event %q, want %q", got, want)
	}
}
