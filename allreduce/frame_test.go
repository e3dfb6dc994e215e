package allreduce

import (
	"errors"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	h := Header{Kind: KindBroadcast, DType: F32, Generation: 1<<40 + 7, Seq: 99, Step: 3, Segment: 1 << 20, Total: 1 << 33, Root: 5, Len: 4096}
	var b [headerSize]byte
	h.encode(b[:])
	got, err := decodeHeader(b[:])
	if err != nil || got != h {
		t.Fatalf("decode(encode(%+v)) = %+v, %v", h, got, err)
	}
}

func TestHeaderMalformed(t *testing.T) {
	good := Header{Kind: KindAllReduce, DType: F32, Generation: 1, Len: 8}
	mutate := map[string]func(b []byte){
		"magic":    func(b []byte) { b[0] = 'X' },
		"version":  func(b []byte) { b[2] = 9 },
		"kind":     func(b []byte) { b[3] = 0 },
		"kind2":    func(b []byte) { b[3] = 200 },
		"reserved": func(b []byte) { b[6] = 1 },
		"oversize": func(b []byte) { b[47] = 0xff },
	}
	for name, m := range mutate {
		var b [headerSize]byte
		good.encode(b[:])
		m(b[:])
		if _, err := decodeHeader(b[:]); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: err = %v, want ErrProtocol", name, err)
		}
	}
	if _, err := decodeHeader(make([]byte, 10)); !errors.Is(err, ErrProtocol) {
		t.Errorf("short header: err = %v, want ErrProtocol", err)
	}
}
