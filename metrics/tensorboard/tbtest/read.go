package tbtest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Errors of the reader.
var (
	// ErrTruncated says that a file ends inside a record: the writer was stopped in
	// the middle of it, or is still writing it. The records before it are good.
	ErrTruncated = errors.New("tbtest: truncated record")
	// ErrChecksum says that a record's length or data does not match its CRC.
	ErrChecksum = errors.New("tbtest: checksum mismatch")
	// ErrProto says that a record's data is not a well-formed Event.
	ErrProto = errors.New("tbtest: malformed event")
)

// Scalar is one Summary.Value with a simple_value.
type Scalar struct {
	Tag   string
	Value float32
}

// Event is the part of a tensorboard.Event that ringtrain writes.
type Event struct {
	WallTime      float64  // seconds since the Unix epoch
	Step          int64    // 0 when absent
	FileVersion   string   // set on a file's first event
	SessionStatus int      // SessionLog.status (1 START); 0 when the event has none
	Scalars       []Scalar // the summary's simple values, in file order
	HasSummary    bool     // the event carries a summary (field 5)
}

// Value returns the simple value of tag in e, and whether e has one.
func (e Event) Value(tag string) (float32, bool) {
	for _, s := range e.Scalars {
		if s.Tag == tag {
			return s.Value, true
		}
	}
	return 0, false
}

// table is the Castagnoli table of the record checksums.
var table = crc32.MakeTable(crc32.Castagnoli)

// MaskedCRC32C is the TFRecord checksum of b: CRC32C rotated right by 15 bits plus
// 0xa282ead8.
func MaskedCRC32C(b []byte) uint32 {
	c := crc32.Checksum(b, table)
	return ((c >> 15) | (c << 17)) + 0xa282ead8
}

// ReadRecords reads TFRecords from r until its end. It returns the data of every
// whole, checksummed record and then nil at a clean end; ErrTruncated when r ends
// inside a record (the records before it are returned); ErrChecksum, wrapped with
// the record's offset, at the first bad checksum.
func ReadRecords(r io.Reader) ([][]byte, error) {
	var recs [][]byte
	var off int64
	for {
		var hdr [12]byte
		n, err := io.ReadFull(r, hdr[:])
		if err == io.EOF {
			return recs, nil
		}
		if err == io.ErrUnexpectedEOF {
			return recs, fmt.Errorf("%w: %d header bytes at offset %d", ErrTruncated, n, off)
		}
		if err != nil {
			return recs, err
		}
		if got, want := MaskedCRC32C(hdr[:8]), binary.LittleEndian.Uint32(hdr[8:]); got != want {
			return recs, fmt.Errorf("%w: length of the record at offset %d: crc %08x, stored %08x", ErrChecksum, off, got, want)
		}
		length := binary.LittleEndian.Uint64(hdr[:8])
		if length > 1<<30 {
			return recs, fmt.Errorf("%w: record at offset %d claims %d bytes", ErrProto, off, length)
		}
		body := make([]byte, length+4)
		if n, err := io.ReadFull(r, body); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return recs, fmt.Errorf("%w: %d of %d bytes of the record at offset %d", ErrTruncated, n, len(body), off)
			}
			return recs, err
		}
		data := body[:length]
		if got, want := MaskedCRC32C(data), binary.LittleEndian.Uint32(body[length:]); got != want {
			return recs, fmt.Errorf("%w: data of the record at offset %d: crc %08x, stored %08x", ErrChecksum, off, got, want)
		}
		recs = append(recs, data)
		off += int64(12 + len(body))
	}
}

// ReadFile reads the events of one event file. Like ReadRecords it returns the
// events before a torn or bad record together with the error.
func ReadFile(path string) ([]Event, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	recs, rerr := ReadRecords(bytes.NewReader(b))
	events := make([]Event, 0, len(recs))
	for i, rec := range recs {
		e, err := ParseEvent(rec)
		if err != nil {
			return events, fmt.Errorf("%s: record %d: %w", path, i, err)
		}
		events = append(events, e)
	}
	if rerr != nil {
		return events, fmt.Errorf("%s: %w", path, rerr)
	}
	return events, nil
}

// ReadDir reads every file of dir whose name contains "tfevents", in name order as
// TensorBoard does, and returns their names and their events one file after another.
func ReadDir(dir string) (files []string, events []Event, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range ents {
		if !e.IsDir() && strings.Contains(e.Name(), "tfevents") {
			files = append(files, e.Name())
		}
	}
	slices.Sort(files)
	for _, name := range files {
		evs, err := ReadFile(filepath.Join(dir, name))
		events = append(events, evs...)
		if err != nil {
			return files, events, err
		}
	}
	return files, events, nil
}

// ParseEvent decodes the fields of an Event that ringtrain writes: wall_time (1,
// double), step (2, int64), file_version (3, string), summary (5) and session_log
// (7). Other fields are skipped.
func ParseEvent(b []byte) (Event, error) {
	var e Event
	err := walk(b, func(num int, typ int, v uint64, sub []byte) error {
		switch {
		case num == 1 && typ == wireFixed64:
			e.WallTime = math.Float64frombits(v)
		case num == 2 && typ == wireVarint:
			e.Step = int64(v)
		case num == 3 && typ == wireBytes:
			e.FileVersion = string(sub)
		case num == 5 && typ == wireBytes:
			e.HasSummary = true
			return walk(sub, func(num, typ int, _ uint64, val []byte) error {
				if num != 1 || typ != wireBytes {
					return nil
				}
				s, ok, err := parseValue(val)
				if ok {
					e.Scalars = append(e.Scalars, s)
				}
				return err
			})
		case num == 7 && typ == wireBytes:
			return walk(sub, func(num, typ int, v uint64, _ []byte) error {
				if num == 1 && typ == wireVarint {
					e.SessionStatus = int(v)
				}
				return nil
			})
		case num <= 3 || num == 5 || num == 7:
			return fmt.Errorf("%w: field %d has wire type %d", ErrProto, num, typ)
		}
		return nil
	})
	return e, err
}

// parseValue decodes a Summary.Value's tag (1) and simple_value (2); ok says it
// has a simple value.
func parseValue(b []byte) (s Scalar, ok bool, err error) {
	err = walk(b, func(num, typ int, v uint64, sub []byte) error {
		switch {
		case num == 1 && typ == wireBytes:
			s.Tag = string(sub)
		case num == 2 && typ == wireFixed32:
			s.Value, ok = math.Float32frombits(uint32(v)), true
		case num == 1 || num == 2:
			return fmt.Errorf("%w: Summary.Value field %d has wire type %d", ErrProto, num, typ)
		}
		return nil
	})
	return s, ok, err
}

// Protobuf wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// walk calls f for every field of the message b, in order, with its number, wire
// type and value: the number for varint and fixed fields, the bytes for
// length-delimited ones. Groups (wire types 3 and 4) are an error.
func walk(b []byte, f func(num, typ int, v uint64, sub []byte) error) error {
	for len(b) > 0 {
		key, n := uvarint(b)
		if n == 0 {
			return fmt.Errorf("%w: bad field key", ErrProto)
		}
		b = b[n:]
		num, typ := int(key>>3), int(key&7)
		if num == 0 {
			return fmt.Errorf("%w: field number 0", ErrProto)
		}
		var v uint64
		var sub []byte
		switch typ {
		case wireVarint:
			v, n = uvarint(b)
			if n == 0 {
				return fmt.Errorf("%w: field %d: bad varint", ErrProto, num)
			}
			b = b[n:]
		case wireFixed64:
			if len(b) < 8 {
				return fmt.Errorf("%w: field %d: short fixed64", ErrProto, num)
			}
			v, b = binary.LittleEndian.Uint64(b), b[8:]
		case wireFixed32:
			if len(b) < 4 {
				return fmt.Errorf("%w: field %d: short fixed32", ErrProto, num)
			}
			v, b = uint64(binary.LittleEndian.Uint32(b)), b[4:]
		case wireBytes:
			l, n := uvarint(b)
			if n == 0 || l > uint64(len(b)-n) {
				return fmt.Errorf("%w: field %d: bad length", ErrProto, num)
			}
			sub, b = b[n:n+int(l)], b[n+int(l):]
		default:
			return fmt.Errorf("%w: field %d: wire type %d", ErrProto, num, typ)
		}
		if err := f(num, typ, v, sub); err != nil {
			return err
		}
	}
	return nil
}

// uvarint decodes a base-128 varint of at most 10 bytes from the front of b; n is 0
// when b holds none.
func uvarint(b []byte) (v uint64, n int) {
	for i := 0; i < len(b) && i < 10; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i] < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}
