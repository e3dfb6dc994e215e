package allreduce

import (
	"fmt"
	"io"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// codecName is the gRPC content subtype of RingLink streams: its codec passes
// ring frames through as raw bytes and encodes the hello messages as protobuf.
const codecName = "ringtrain-frame"

func init() { encoding.RegisterCodecV2(frameCodec{}) }

// outFrame is a frame handed to gRPC's SendMsg. The codec copies it into a
// pooled buffer, so the caller's payload is free again when SendMsg returns.
type outFrame struct {
	h       Header
	payload []byte
}

// inFrame is a frame from gRPC's RecvMsg: the codec keeps a reference to the
// received buffers, which the receiver reads the payload from and then frees.
type inFrame struct{ data mem.BufferSlice }

// frameCodec is the gRPC codec of RingLink streams: it copies an outFrame into
// one pooled buffer, hands a received message to an inFrame without copying it,
// and encodes every other message (the hello and the welcome) as protobuf.
// gRPC calls it from the goroutine that sends or receives.
type frameCodec struct{}

// Name returns the content subtype the codec is registered under.
func (frameCodec) Name() string { return codecName }

// Marshal encodes an *outFrame or a protobuf message for SendMsg.
func (frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *outFrame:
		pool := mem.DefaultBufferPool()
		n := headerSize + len(m.payload)
		buf := pool.Get(n)
		h := m.h
		h.Len = uint32(len(m.payload))
		h.encode((*buf)[:headerSize])
		copy((*buf)[headerSize:n], m.payload)
		return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
	case proto.Message:
		b, err := proto.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return nil, fmt.Errorf("%w: cannot encode %T as a ring frame", ErrProtocol, v)
}

// Unmarshal keeps a reference to a received frame in an *inFrame, or decodes a
// protobuf message.
func (frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *inFrame:
		data.Ref()
		m.data = data
		return nil
	case proto.Message:
		return proto.Unmarshal(data.Materialize(), m)
	}
	return fmt.Errorf("%w: cannot decode a ring frame into %T", ErrProtocol, v)
}

// readFrame parses a frame received as one gRPC message, checks it (wantEmpty
// for control frames), and reads its payload into the slice accept names.
func readFrame(f inFrame, wantEmpty bool, accept func(Header) ([]byte, error)) (Header, error) {
	defer f.data.Free()
	r := f.data.Reader()
	defer r.Close()
	var hb [headerSize]byte
	if n, _ := io.ReadFull(r, hb[:]); n < headerSize {
		return Header{}, fmt.Errorf("%w: message of %d bytes is shorter than a frame header", ErrProtocol, f.data.Len())
	}
	h, err := decodeHeader(hb[:])
	if err != nil {
		return Header{}, err
	}
	if got := f.data.Len() - headerSize; got != int(h.Len) {
		return h, fmt.Errorf("%w: header says %d payload bytes, message has %d", ErrProtocol, h.Len, got)
	}
	if wantEmpty && h.Len != 0 {
		return h, fmt.Errorf("%w: control frame with %d payload bytes", ErrProtocol, h.Len)
	}
	if accept == nil {
		return h, nil
	}
	dst, err := accept(h)
	if err != nil {
		return h, err
	}
	if len(dst) != int(h.Len) {
		return h, fmt.Errorf("%w: accept gave %d bytes for a %d-byte payload", ErrProtocol, len(dst), h.Len)
	}
	io.ReadFull(r, dst) // cannot come short: the length was checked
	return h, nil
}
