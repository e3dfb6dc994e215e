package allreduce

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	ringv1 "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// fuzzMaxPayload is the largest payload the fuzz targets' accept functions take, as
// a ring accepts only the frame it expects: it keeps each run small.
const fuzzMaxPayload = 1 << 16

func encodedHeader(h Header) []byte {
	b := make([]byte, headerSize)
	h.encode(b)
	return b
}

// FuzzDecodeHeader: any bytes decode to an error wrapping ErrProtocol or to a header
// within the limits that encodes back to the same bytes.
func FuzzDecodeHeader(f *testing.F) {
	f.Add(encodedHeader(Header{Kind: KindAllReduce, DType: F32, Generation: 1, Seq: 2, Step: 3, Len: 8}))
	f.Add(encodedHeader(Header{Kind: KindHeartbeat}))
	f.Add(encodedHeader(Header{Kind: KindBroadcast, DType: BF16, Total: 1 << 40, Root: 3, Len: MaxPayload}))
	f.Add([]byte("RT"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHeader(b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		if h.Len > MaxPayload || h.Kind < KindAllReduce || h.Kind > KindHeartbeat {
			t.Fatalf("accepted header out of bounds: %+v", h)
		}
		if back := encodedHeader(h); !bytes.Equal(back, b[:headerSize]) {
			t.Fatalf("header %+v encodes to %x, decoded from %x", h, back, b[:headerSize])
		}
	})
}

// FuzzReadFrame: a gRPC message of any bytes is read as a frame or refused with
// ErrProtocol; an accepted frame's payload is the message's bytes after the header.
func FuzzReadFrame(f *testing.F) {
	f.Add(append(encodedHeader(Header{Kind: KindAllReduce, DType: F32, Len: 4}), 1, 2, 3, 4), false)
	f.Add(encodedHeader(Header{Kind: KindHeartbeat}), true)
	f.Add(append(encodedHeader(Header{Kind: KindHeartbeat, Len: 1}), 9), true)
	f.Fuzz(func(t *testing.T, b []byte, control bool) {
		var got []byte
		accept := func(h Header) ([]byte, error) {
			if h.Len > fuzzMaxPayload {
				return nil, errors.New("unexpected frame")
			}
			got = make([]byte, h.Len)
			return got, nil
		}
		in := inFrame{data: mem.BufferSlice{mem.SliceBuffer(bytes.Clone(b))}}
		h, err := readFrame(in, control, accept)
		if err != nil {
			return
		}
		if control && h.Len != 0 {
			t.Fatalf("control frame with %d payload bytes accepted", h.Len)
		}
		if !control && !bytes.Equal(got, b[headerSize:]) {
			t.Fatalf("payload %x, message had %x", got, b[headerSize:])
		}
	})
}

// FuzzLaneReader: a frame written over 1 to 4 TCP lanes (pipes here) by laneWriter
// reads back the same on the laneReader; arbitrary bytes on the lanes are refused
// with an error, never a panic or a hang.
func FuzzLaneReader(f *testing.F) {
	f.Add(uint8(1), uint64(7), uint32(3), []byte("payload"), []byte(nil))
	f.Add(uint8(3), uint64(1), uint32(0), bytes.Repeat([]byte{1, 2, 3}, 100), []byte(nil))
	f.Add(uint8(2), uint64(0), uint32(0), []byte(nil), encodedHeader(Header{Kind: KindAllReduce, Len: 9}))
	f.Add(uint8(1), uint64(0), uint32(0), []byte(nil), []byte("garbage that is not a header at all, but long enough"))
	f.Fuzz(func(t *testing.T, lanes uint8, gen uint64, step uint32, payload, raw []byte) {
		n := int(lanes%4) + 1
		if len(payload) > fuzzMaxPayload {
			payload = payload[:fuzzMaxPayload]
		}
		readers, writers := make([]net.Conn, n), make([]net.Conn, n)
		for j := range n {
			readers[j], writers[j] = net.Pipe()
		}
		deadline := time.Now().Add(5 * time.Second)
		for j := range n {
			readers[j].SetDeadline(deadline)
			writers[j].SetDeadline(deadline)
		}
		want := Header{Kind: KindAllReduce, DType: F32, Generation: gen, Step: step, Len: uint32(len(payload))}
		wrote := make(chan error, 1)
		go func() {
			if raw != nil {
				_, err := writers[0].Write(raw)
				for _, c := range writers {
					c.Close()
				}
				wrote <- err
				return
			}
			wrote <- newLaneWriter(writers).write(want, payload)
		}()
		var got []byte
		r := newLaneReader(readers)
		h, err := r.read(func(h Header) ([]byte, error) {
			if h.Len > fuzzMaxPayload {
				return nil, errors.New("unexpected frame")
			}
			got = make([]byte, h.Len)
			return got, nil
		})
		r.close()
		werr := <-wrote
		for _, c := range writers {
			c.Close()
		}
		if raw != nil {
			if err == nil && h.Len > uint32(len(raw)) {
				t.Fatalf("read a %d-byte payload from %d raw bytes", h.Len, len(raw))
			}
			return
		}
		if werr != nil || err != nil {
			t.Fatalf("round trip over %d lanes: write %v, read %v", n, werr, err)
		}
		if h != want || !bytes.Equal(got, payload) {
			t.Fatalf("read %+v %x, wrote %+v %x", h, got, want, payload)
		}
	})
}

// FuzzHello: a RingHello decoded from any bytes by the ring's codec is refused
// (with a gRPC status) or names both ends, asks for at most maxLanes lanes and is
// addressed to this member; it survives a protobuf round trip.
func FuzzHello(f *testing.F) {
	for _, h := range []*ringv1.RingHello{
		{Protocol: linkProtocol, Generation: 3, From: "w0", To: "w1", Lanes: 2},
		{Protocol: linkProtocol, From: "w0", To: "w2"},
		{Protocol: linkProtocol + 1, From: "w0", To: "w1", Lanes: 1 << 20},
	} {
		b, _ := proto.Marshal(h)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		hello := new(ringv1.RingHello)
		if err := (frameCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(bytes.Clone(b))}, hello); err != nil {
			return
		}
		err := checkHello(hello, "w1")
		if err != nil {
			if !strings.Contains(err.Error(), "rpc error") {
				t.Fatalf("refusal %v is not a gRPC status", err)
			}
			return
		}
		if hello.From == "" || hello.To != "w1" || hello.Lanes > maxLanes || hello.Protocol != linkProtocol {
			t.Fatalf("accepted hello %v", hello)
		}
		again, err := proto.Marshal(hello)
		if err != nil {
			t.Fatal(err)
		}
		back := new(ringv1.RingHello)
		if err := proto.Unmarshal(again, back); err != nil || !proto.Equal(back, hello) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzLaneHandshake: a TCP lane's handshake of any bytes attaches the connection to
// the one waiting link only with the link's token and a lane number it expects.
func FuzzLaneHandshake(f *testing.F) {
	token := strings.Repeat("k", laneTokenBytes)
	f.Add([]byte(token + "\x00"))
	f.Add([]byte(token + "\x01"))
	f.Add([]byte(token + "\x07"))
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := NewService(ServiceOptions{})
		defer s.Close()
		l := &serverLink{token: token, lanes: make([]net.Conn, 2), ready: make(chan struct{})}
		s.mu.Lock()
		s.tokens[token] = l
		s.mu.Unlock()
		in, out := net.Pipe()
		defer in.Close()
		go func() {
			out.Write(b)
			out.Close()
		}()
		err := s.attachLane(in)
		ok := len(b) >= laneTokenBytes+1 && string(b[:laneTokenBytes]) == token && int(b[laneTokenBytes]) < 2
		if ok != (err == nil) {
			t.Fatalf("handshake %q: err %v, want accepted %v", b, err, ok)
		}
		if ok && l.lanes[b[laneTokenBytes]] != in {
			t.Fatalf("lane %d not attached", b[laneTokenBytes])
		}
	})
}
