package allreduce

import "context"

// Transport carries one rank's frames round the ring: to its right neighbour
// and from its left neighbour, for one generation. Links are reliable and
// ordered: frames arrive in the order they were sent or the link fails.
//
// A Ring calls each of Send, Recv, SendBack and RecvBack from one goroutine at
// a time; the four run concurrently with each other, and Close may be called at
// any time from any goroutine.
//
// Errors wrap ErrPeerLost when the link or the neighbour went away,
// ErrProtocol when bytes arrived that are not a well-formed frame, ErrClosed
// after Close, and context.Cause(ctx) when ctx ended first. After any error the
// transport may be unusable; a Ring closes it.
type Transport interface {
	// Send transmits one frame to the right neighbour: h, with h.Len set to
	// len(payload), then the payload. It blocks until the payload has been
	// handed on (copied or written out), so the caller may change payload as
	// soon as it returns; it does not wait for the neighbour to read it. If ctx
	// ends first it returns promptly.
	Send(ctx context.Context, h Header, payload []byte) error

	// Recv receives the next frame from the left neighbour. It reads the
	// header, passes it to accept, and reads the payload into the slice accept
	// returns, which must be exactly h.Len bytes long. If accept returns an
	// error Recv returns it (wrapped) without reading the payload. Recv returns
	// the header once the payload is in place. If ctx ends first it returns
	// promptly.
	Recv(ctx context.Context, accept func(Header) ([]byte, error)) (Header, error)

	// SendBack transmits a payload-less control frame (a heartbeat) to the
	// left neighbour, against the flow of data, so that each rank also hears
	// from its right neighbour. It blocks like Send.
	SendBack(ctx context.Context, h Header) error

	// RecvBack receives the next control frame from the right neighbour. A
	// frame with a payload is an ErrProtocol error. It blocks like Recv.
	RecvBack(ctx context.Context) (Header, error)

	// Close releases the links. Both neighbours see their ends fail with
	// ErrPeerLost, and blocked calls return. It is idempotent.
	Close() error
}
