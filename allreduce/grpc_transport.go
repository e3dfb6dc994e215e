package allreduce

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// linkProtocol is the version of the RingLink protocol this package speaks.
const linkProtocol = 1

// errorDomain and the reasons below are the ErrorInfo details of RingLink errors.
const (
	errorDomain    = "ringtrain.allreduce"
	reasonStaleGen = "STALE_GENERATION"
)

// Sizes of RingLink gRPC connections, for frames that travel on the stream.
const (
	streamWindowBytes   = 16 << 20 // HTTP/2 flow-control window of a stream
	connWindowBytes     = 32 << 20 // and of a connection
	grpcIOBufferBytes   = 1 << 20  // gRPC's socket read and write buffers
	maxGRPCMessageBytes = MaxPayload + headerSize
)

// Connect builds the gRPC transport of member cfg.Rank of the ring described
// by cfg (Generation, Members and Rank are used): it dials the right
// neighbour's peer server and opens a link to it, and waits for the left
// neighbour's link to arrive at s. ctx bounds both; Connect returns when both
// links are up. Pass the result to NewRing with the same cfg. For a ring of one
// member it returns a nil Transport.
//
// The right neighbour refuses a link of an older generation than it has
// reached (ErrStaleGeneration); links older than cfg.Generation that are
// waiting in s are refused from now on.
func (s *Service) Connect(ctx context.Context, cfg Config, opts LinkOptions) (Transport, error) {
	w := len(cfg.Members)
	if w == 0 || cfg.Rank < 0 || cfg.Rank >= w {
		return nil, fmt.Errorf("%w: rank %d of %d members", ErrBadConfig, cfg.Rank, w)
	}
	if w == 1 {
		return nil, nil
	}
	if opts.Resolve == nil {
		return nil, fmt.Errorf("%w: LinkOptions.Resolve is nil", ErrBadConfig)
	}
	self := cfg.Members[cfg.Rank]
	left, right := cfg.Members[(cfg.Rank+w-1)%w], cfg.Members[(cfg.Rank+1)%w]
	s.noteGeneration(cfg.Generation, cfg.Members)

	t := &GRPCTransport{
		gen:    cfg.Generation,
		left:   fmt.Sprintf("%q (rank %d)", left, (cfg.Rank+w-1)%w),
		right:  fmt.Sprintf("%q (rank %d)", right, (cfg.Rank+1)%w),
		closed: make(chan struct{}),
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	var dialErr, takeErr error
	wg.Go(func() {
		if dialErr = t.dial(ctx, cfg.Generation, self, right, opts); dialErr != nil {
			cancel(dialErr)
		}
	})
	wg.Go(func() {
		l, err := s.take(ctx, linkKey{gen: cfg.Generation, from: left, to: self})
		if err != nil {
			takeErr = err
			cancel(err)
			return
		}
		t.in = l
		if len(l.lanes) > 0 {
			t.inLanes = newLaneReader(l.lanes)
		}
	})
	wg.Wait()
	if err := errors.Join(dialErr, takeErr); err != nil {
		t.Close()
		if dialErr != nil && takeErr != nil && errors.Is(takeErr, context.Canceled) {
			err = dialErr // the take only stopped because the dial failed
		}
		return nil, fmt.Errorf("allreduce: generation %d: connecting %q: %w", cfg.Generation, self, err)
	}
	return t, nil
}

// GRPCTransport is the Transport of one rank over gRPC: a RingLink stream to
// the right neighbour, whose data frames travel on the stream or on dedicated
// TCP lanes, and the left neighbour's stream held by the Service. Build it
// with Service.Connect.
type GRPCTransport struct {
	gen         uint64
	left, right string // neighbours, for messages

	// Link to the right neighbour.
	cc       *grpc.ClientConn
	out      grpc.ClientStream
	cancel   context.CancelFunc // ends out
	outLanes *laneWriter        // nil: frames on out

	// Link from the left neighbour.
	in      *serverLink
	inLanes *laneReader // nil: frames on in.stream

	once   sync.Once
	closed chan struct{}
	why    error // set before closed is closed
}

var _ Transport = (*GRPCTransport)(nil)

// Lanes reports how many TCP lanes carry this rank's outgoing and incoming
// data frames (0: the gRPC stream).
func (t *GRPCTransport) Lanes() (out, in int) {
	if t.outLanes != nil {
		out = len(t.outLanes.conns)
	}
	if t.inLanes != nil {
		in = len(t.inLanes.conns)
	}
	return out, in
}

// abortOn closes the transport if ctx ends before the returned stop is
// called: gRPC streams and sockets cannot be interrupted otherwise. Calls on
// other goroutines then fail with ErrClosed wrapping why ctx ended.
func (t *GRPCTransport) abortOn(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() { t.closeWith(context.Cause(ctx)) })
}

// callErr reports the failure of a call on a link: why ctx ended, ErrClosed,
// or the link's failure wrapped in ErrPeerLost.
func (t *GRPCTransport) callErr(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	select {
	case <-t.closed:
		if t.why != nil {
			return fmt.Errorf("%w by %w", ErrClosed, t.why)
		}
		return ErrClosed
	default:
	}
	if errors.Is(err, ErrProtocol) {
		return err
	}
	return fmt.Errorf("%w: %s: %w", ErrPeerLost, what, err)
}

// Send implements Transport.
func (t *GRPCTransport) Send(ctx context.Context, h Header, payload []byte) error {
	stop := t.abortOn(ctx)
	defer stop()
	var err error
	if t.outLanes != nil {
		err = t.outLanes.write(h, payload)
	} else {
		err = t.out.SendMsg(&outFrame{h: h, payload: payload})
	}
	if err != nil {
		return t.callErr(ctx, "link to right neighbour "+t.right, err)
	}
	return nil
}

// Recv implements Transport.
func (t *GRPCTransport) Recv(ctx context.Context, accept func(Header) ([]byte, error)) (Header, error) {
	stop := t.abortOn(ctx)
	defer stop()
	if t.inLanes != nil {
		h, err := t.inLanes.read(accept)
		if err != nil {
			return h, t.callErr(ctx, "link from left neighbour "+t.left, err)
		}
		return h, nil
	}
	var f inFrame
	if err := t.in.stream.RecvMsg(&f); err != nil {
		return Header{}, t.callErr(ctx, "link from left neighbour "+t.left, err)
	}
	h, err := readFrame(f, false, accept)
	if err != nil {
		return h, t.callErr(ctx, "link from left neighbour "+t.left, err)
	}
	return h, nil
}

// SendBack implements Transport: control frames always travel on the gRPC
// stream, from its server end.
func (t *GRPCTransport) SendBack(ctx context.Context, h Header) error {
	stop := t.abortOn(ctx)
	defer stop()
	if err := t.in.stream.SendMsg(&outFrame{h: h}); err != nil {
		return t.callErr(ctx, "link from left neighbour "+t.left, err)
	}
	return nil
}

// RecvBack implements Transport.
func (t *GRPCTransport) RecvBack(ctx context.Context) (Header, error) {
	stop := t.abortOn(ctx)
	defer stop()
	var f inFrame
	if err := t.out.RecvMsg(&f); err != nil {
		return Header{}, t.callErr(ctx, "link to right neighbour "+t.right, err)
	}
	h, err := readFrame(f, true, nil)
	if err != nil {
		return h, t.callErr(ctx, "link to right neighbour "+t.right, err)
	}
	return h, nil
}

// Close implements Transport: it ends both streams, closes the lanes and the
// connection to the right neighbour, and waits for the left link's handler to
// return.
func (t *GRPCTransport) Close() error { return t.closeWith(nil) }

// closeWith closes the transport, recording why if it is the first close.
func (t *GRPCTransport) closeWith(why error) error {
	t.once.Do(func() {
		t.why = why
		close(t.closed)
		if t.cancel != nil {
			t.cancel()
		}
		if t.outLanes != nil {
			t.outLanes.close()
		}
		if t.inLanes != nil {
			t.inLanes.close()
		}
		if t.in != nil {
			t.in.end(status.Error(codes.Canceled, "ring link closed"))
		}
		if t.cc != nil {
			t.cc.Close()
		}
	})
	if t.in != nil {
		<-t.in.stopped
	}
	return nil
}
