package tbtest

import (
	"bytes"
	"errors"
	"testing"
)

// realFile is an event file TensorFlow wrote for tf.summary.scalar("accuracy", 0.99,
// step=77), as TensorBoard's own TFRecord reader tests quote it: the file_version
// record, then a summary whose value is a tensor (not a simple_value).
var realFile = []byte("" +
	"\x18\x00\x00\x00\x00\x00\x00\x00" + "\xa3\x7f\x4b\x22" +
	"\x09\x00\x00\x80\x38\x99\xd6\xd7\x41\x1a\x0dbrain.Event:2" +
	"\x12\x4b\x36\xab" +
	"\x32\x00\x00\x00\x00\x00\x00\x00" + "\x24\x19\x56\xec" +
	"\x09\xc4\x05\xb7\x3d\x99\xd6\xd7\x41" +
	"\x10\x4d\x2a\x25" +
	"\x0a\x23\x0a\x08accuracy" +
	"\x42\x0a\x08\x01\x12\x00\x22\x04\xa4\x70\x7d\x3f\x4a" +
	"\x0b\x0a\x09\x0a\x07scalars" +
	"\xa5\x5b\x64\x33")

// TestReadsTensorFlowsFile reads a file TensorFlow wrote: both checksums of both
// records hold, and the events decode to what TensorFlow put in them.
func TestReadsTensorFlowsFile(t *testing.T) {
	recs, err := ReadRecords(bytes.NewReader(realFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2", len(recs))
	}
	first, err := ParseEvent(recs[0])
	if err != nil {
		t.Fatal(err)
	}
	if first.FileVersion != "brain.Event:2" || first.WallTime != 1599759586 || first.Step != 0 || first.HasSummary {
		t.Errorf("first event %+v, want the file_version event at wall time 1599759586", first)
	}
	second, err := ParseEvent(recs[1])
	if err != nil {
		t.Fatal(err)
	}
	if second.Step != 77 || !second.HasSummary || second.FileVersion != "" || len(second.Scalars) != 0 || second.WallTime != 1599759606.859727 {
		t.Errorf("second event %+v, want a summary at step 77 without simple values", second)
	}
}

// TestMaskedCRC32C checks the checksum against published values: RFC 3720's CRC32C
// of 32 zero bytes, masked, and the masked CRC TensorBoard quotes from a real file.
func TestMaskedCRC32C(t *testing.T) {
	c := uint32(0x8a9136aa)
	if got, want := MaskedCRC32C(make([]byte, 32)), ((c>>15)|(c<<17))+0xa282ead8; got != want {
		t.Errorf("masked CRC32C of 32 zeros = %08x, want %08x", got, want)
	}
	if got := MaskedCRC32C([]byte("\x1a\x11CRC test, one two")); got != 0x5794d08a {
		t.Errorf("masked CRC32C = %08x, want 5794d08a", got)
	}
}

// TestReadRecordsErrors cuts and corrupts the real file: a cut anywhere inside the
// second record keeps the first and says truncated; a flipped bit in a length or in
// data says checksum.
func TestReadRecordsErrors(t *testing.T) {
	firstLen := 12 + 24 + 4
	for cut := firstLen + 1; cut < len(realFile); cut++ {
		recs, err := ReadRecords(bytes.NewReader(realFile[:cut]))
		if !errors.Is(err, ErrTruncated) || len(recs) != 1 {
			t.Fatalf("cut at %d: %d records, err %v; want 1 and ErrTruncated", cut, len(recs), err)
		}
	}
	for _, at := range []int{0, 8, 20, firstLen - 1, firstLen + 3, firstLen + 30} {
		bad := bytes.Clone(realFile)
		bad[at] ^= 0x10
		if _, err := ReadRecords(bytes.NewReader(bad)); !errors.Is(err, ErrChecksum) {
			t.Errorf("bit flipped at %d: err %v, want ErrChecksum", at, err)
		}
	}
}

// TestParseEventRejectsBadWireTypes: a known field with the wrong wire type, or a
// length past the end, is an error, not a guess.
func TestParseEventRejectsBadWireTypes(t *testing.T) {
	for name, b := range map[string][]byte{
		"step as fixed64":   {0x11, 1, 2, 3, 4, 5, 6, 7, 8},
		"long length":       {0x1a, 0x20, 'a'},
		"cut varint":        {0x10, 0x80},
		"group":             {0x13},
		"summary as varint": {0x28, 1},
	} {
		if _, err := ParseEvent(b); !errors.Is(err, ErrProto) {
			t.Errorf("%s: err %v, want ErrProto", name, err)
		}
	}
}
