package allreduce

import (
	"encoding/binary"
	"fmt"
	"unsafe"
)

// Kind says what a frame belongs to.
type Kind uint8

// Frame kinds.
const (
	// KindAllReduce frames carry a segment of an all-reduce: reduce-scatter
	// partial sums at steps 0..W-2, reduced values at steps W-1..2W-3.
	KindAllReduce Kind = 1
	// KindBroadcast frames carry a segment of a broadcast; Root names its root.
	KindBroadcast Kind = 2
	// KindBarrier frames are the empty messages of a barrier, which runs the
	// all-reduce schedule over no data.
	KindBarrier Kind = 3
	// KindHeartbeat frames keep an idle link alive. Seq is the number of data
	// frames sent on the link before it, so a receiver can tell a lost frame.
	KindHeartbeat Kind = 4
)

func (k Kind) String() string {
	switch k {
	case KindAllReduce:
		return "all-reduce"
	case KindBroadcast:
		return "broadcast"
	case KindBarrier:
		return "barrier"
	case KindHeartbeat:
		return "heartbeat"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// DType is the element encoding of a frame's payload.
type DType uint8

// Payload encodings.
const (
	// F32 is little-endian IEEE float32, 4 bytes an element.
	F32 DType = 1
	// BF16 is bfloat16 (the upper half of a float32, rounded to nearest even),
	// little-endian, 2 bytes an element.
	BF16 DType = 2
	// I64 is little-endian two's-complement int64, 8 bytes an element: the
	// payload of an integer all-reduce (Ring.StartInt64), never compressed.
	I64 DType = 3
)

func (d DType) String() string {
	switch d {
	case F32:
		return "f32"
	case BF16:
		return "bf16"
	case I64:
		return "i64"
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

func (d DType) size() int {
	switch d {
	case BF16:
		return 2
	case I64:
		return 8
	}
	return 4
}

// Header is the fixed part of every frame. A frame of an operation is
// identified by (Generation, Seq, Step, Segment); a receiver knows from the ring
// schedule which frame comes next and refuses any other.
type Header struct {
	Kind       Kind
	DType      DType  // payload encoding; zero for frames without payload
	Generation uint64 // ring generation of the sender
	Seq        uint64 // operation sequence number within the generation (heartbeats: data frames sent before)
	Step       uint32 // schedule step
	Segment    uint32 // segment within the step's chunk
	Total      uint64 // elements in the operation's buffer
	Root       uint32 // broadcast root rank
	Len        uint32 // payload bytes that follow the header
}

// Wire layout of a header: 48 bytes, little-endian.
//
//	0  magic "RT" (0x52, 0x54)   2 version   3 kind   4 dtype   5..7 zero
//	8  generation u64   16 seq u64   24 step u32   28 segment u32
//	32 total u64        40 root u32  44 payload length u32
const (
	headerSize   = 48
	frameMagic0  = 'R'
	frameMagic1  = 'T'
	frameVersion = 1
)

// MaxPayload is the largest frame payload any transport accepts; larger
// lengths are refused as malformed before anything is allocated.
const MaxPayload = 256 << 20

func (h *Header) encode(b []byte) {
	_ = b[headerSize-1]
	b[0], b[1], b[2], b[3], b[4] = frameMagic0, frameMagic1, frameVersion, byte(h.Kind), byte(h.DType)
	b[5], b[6], b[7] = 0, 0, 0
	le := binary.LittleEndian
	le.PutUint64(b[8:], h.Generation)
	le.PutUint64(b[16:], h.Seq)
	le.PutUint32(b[24:], h.Step)
	le.PutUint32(b[28:], h.Segment)
	le.PutUint64(b[32:], h.Total)
	le.PutUint32(b[40:], h.Root)
	le.PutUint32(b[44:], h.Len)
}

// decodeHeader parses a wire header. It checks the magic, version, kind,
// reserved bytes and the length limit, not whether the frame is the expected one.
func decodeHeader(b []byte) (Header, error) {
	if len(b) < headerSize {
		return Header{}, fmt.Errorf("%w: frame of %d bytes is shorter than a header", ErrProtocol, len(b))
	}
	if b[0] != frameMagic0 || b[1] != frameMagic1 {
		return Header{}, fmt.Errorf("%w: bad frame magic %#x %#x", ErrProtocol, b[0], b[1])
	}
	if b[2] != frameVersion {
		return Header{}, fmt.Errorf("%w: frame version %d, want %d", ErrProtocol, b[2], frameVersion)
	}
	if b[5]|b[6]|b[7] != 0 {
		return Header{}, fmt.Errorf("%w: reserved header bytes are not zero", ErrProtocol)
	}
	le := binary.LittleEndian
	h := Header{
		Kind:       Kind(b[3]),
		DType:      DType(b[4]),
		Generation: le.Uint64(b[8:]),
		Seq:        le.Uint64(b[16:]),
		Step:       le.Uint32(b[24:]),
		Segment:    le.Uint32(b[28:]),
		Total:      le.Uint64(b[32:]),
		Root:       le.Uint32(b[40:]),
		Len:        le.Uint32(b[44:]),
	}
	if h.Kind < KindAllReduce || h.Kind > KindHeartbeat {
		return Header{}, fmt.Errorf("%w: unknown frame kind %d", ErrProtocol, b[3])
	}
	if h.Len > MaxPayload {
		return Header{}, fmt.Errorf("%w: frame payload of %d bytes exceeds the limit of %d", ErrProtocol, h.Len, MaxPayload)
	}
	return h, nil
}

// littleEndian reports whether the host stores a float32 in the wire's byte
// order, which lets payloads be views of the caller's buffer.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// f32Bytes views a float32 slice as its bytes (no copy).
func f32Bytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), 4*len(f))
}

// i64AsF32 views an int64 slice as twice as many float32 slots (no copy), so
// that integer payloads travel through the same exchange as float32 ones.
func i64AsF32(v []int64) []float32 {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&v[0])), 2*len(v))
}

// f32AsI64 views a float32 slice of even length, 8-byte aligned, as int64s
// (no copy): the inverse of i64AsF32.
func f32AsI64(f []float32) []int64 {
	if len(f) < 2 {
		return nil
	}
	return unsafe.Slice((*int64)(unsafe.Pointer(&f[0])), len(f)/2)
}

// bytesU16 views a 2-byte aligned byte slice as uint16s (no copy).
func bytesU16(b []byte) []uint16 {
	if len(b) < 2 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2)
}
