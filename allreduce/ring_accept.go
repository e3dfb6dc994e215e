package allreduce

import (
	"context"
	"errors"
	"fmt"
)

// recvFrame receives the data frame want into into, skipping heartbeats, and
// gives up when nothing arrives for the progress timeout. The payload is read
// only once ready returns: when the elements it overwrites have been sent.
func (r *Ring) recvFrame(ctx context.Context, want Header, into []byte, ready func() error) error {
	accept := func(h Header) ([]byte, error) {
		dst, err := r.accept(h, want, into)
		if err != nil || h.Kind == KindHeartbeat {
			return dst, err
		}
		if err := ready(); err != nil {
			return nil, err
		}
		return dst, nil
	}
	for {
		rctx, rcancel := context.WithTimeoutCause(ctx, r.timeout, r.timeoutErr)
		h, err := r.t.Recv(rctx, accept)
		rcancel()
		if err != nil {
			if errors.Is(err, ErrTimeout) {
				return err
			}
			return fmt.Errorf("receive from left neighbour %s: %w", r.peer(-1), err)
		}
		if h.Kind != KindHeartbeat {
			r.received++
			return nil
		}
	}
}

// accept checks an arriving header against the expected one and says where
// its payload goes.
func (r *Ring) accept(h, want Header, into []byte) ([]byte, error) {
	if h.Generation != r.gen {
		return nil, fmt.Errorf("%w: frame of generation %d, this ring is generation %d", ErrStaleGeneration, h.Generation, r.gen)
	}
	if h.Kind == KindHeartbeat {
		if h.Len != 0 {
			return nil, fmt.Errorf("%w: heartbeat with %d payload bytes", ErrProtocol, h.Len)
		}
		if h.Seq > r.received {
			return nil, fmt.Errorf("%w: left neighbour sent %d data frames, %d arrived", ErrProtocol, h.Seq, r.received)
		}
		return nil, nil
	}
	if h.Kind != want.Kind || h.Seq != want.Seq || h.Total != want.Total || h.Root != want.Root {
		return nil, fmt.Errorf("%w: got operation %d (%s of %d elements, root %d), want operation %d (%s of %d elements, root %d)",
			ErrProtocol, h.Seq, h.Kind, h.Total, h.Root, want.Seq, want.Kind, want.Total, want.Root)
	}
	if h.Step != want.Step || h.Segment != want.Segment {
		return nil, fmt.Errorf("%w: operation %d: got step %d segment %d, want step %d segment %d",
			ErrProtocol, h.Seq, h.Step, h.Segment, want.Step, want.Segment)
	}
	if h.DType != want.DType {
		return nil, fmt.Errorf("%w: operation %d: payload encoded as %s, want %s", ErrProtocol, h.Seq, h.DType, want.DType)
	}
	if h.Len != want.Len {
		return nil, fmt.Errorf("%w: operation %d step %d segment %d: payload of %d bytes, want %d",
			ErrProtocol, h.Seq, h.Step, h.Segment, h.Len, want.Len)
	}
	return into, nil
}
