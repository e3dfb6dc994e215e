package allreduce

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// InmemNetwork connects in-memory transports into a ring of world ranks: link
// r carries frames from rank r to rank r+1 (mod world). It is meant for tests,
// and has fault hooks to drop, delay or rewrite frames, cut links, kill ranks
// and stall them, in the manner of hashicorp/raft's fuzzy transport hooks.
type InmemNetwork struct {
	world int
	links []*inmemLink
	ranks []*inmemRank

	mu   sync.Mutex
	hook Hook
}

// Event describes a frame about to enter a link, as a Hook sees it. Payload
// must not be changed or kept.
type Event struct {
	From, To int
	Header   Header
	Payload  []byte
}

// Action is what a Hook wants done with a frame. The zero Action delivers it.
type Action struct {
	Drop    bool                                   // the frame vanishes; Send reports success
	Delay   time.Duration                          // Send blocks this long before delivering
	Cut     bool                                   // the link is cut before the frame enters it
	Kill    bool                                   // the sending rank dies before the frame leaves
	Stall   bool                                   // the sending rank freezes (see Stall) with the frame
	Rewrite func(h *Header, payload []byte) []byte // replaces the frame's header and payload
}

// Hook is called by a sending transport before each frame (heartbeats
// included) enters a link, from the sender's goroutine.
type Hook func(Event) Action

type inmemFrame struct {
	h       Header
	payload []byte
}

type inmemLink struct {
	from, to int
	frames   chan inmemFrame
	back     chan Header // control frames from to back to from
	done     chan struct{}
	once     sync.Once
	why      string
}

func (l *inmemLink) close(why string) {
	l.once.Do(func() {
		l.why = why
		close(l.done)
	})
}

func (l *inmemLink) lost() error {
	return fmt.Errorf("%w: link %d->%d: %s", ErrPeerLost, l.from, l.to, l.why)
}

type inmemRank struct {
	mu      sync.Mutex
	gate    chan struct{} // non-nil while stalled; closed on resume
	killed  chan struct{}
	killOne sync.Once
}

// NewInmemNetwork returns a ring of world in-memory links, each holding up to
// buffer frames (at least 1) before a Send blocks.
func NewInmemNetwork(world, buffer int) *InmemNetwork {
	buffer = max(buffer, 1)
	n := &InmemNetwork{world: world, links: make([]*inmemLink, world), ranks: make([]*inmemRank, world)}
	for r := range world {
		n.links[r] = &inmemLink{from: r, to: (r + 1) % world, frames: make(chan inmemFrame, buffer), back: make(chan Header, 4), done: make(chan struct{})}
		n.ranks[r] = &inmemRank{killed: make(chan struct{})}
	}
	return n
}

// SetHook installs h (nil removes it) for every frame sent from now on.
func (n *InmemNetwork) SetHook(h Hook) {
	n.mu.Lock()
	n.hook = h
	n.mu.Unlock()
}

// Transport returns rank's transport: it sends on link rank and receives on
// link rank-1. Call it once per rank.
func (n *InmemNetwork) Transport(rank int) *InmemTransport {
	return &InmemTransport{
		net:    n,
		rank:   rank,
		out:    n.links[rank],
		in:     n.links[(rank-1+n.world)%n.world],
		closed: make(chan struct{}),
	}
}

// Cut breaks the link from rank from to its right neighbour: both ends fail
// with ErrPeerLost, frames already in it are still delivered.
func (n *InmemNetwork) Cut(from int) {
	n.links[from].close(fmt.Sprintf("cut from %d", from))
}

// Kill makes rank die as a process would: its links break and its own
// transport fails every call with ErrPeerLost.
func (n *InmemNetwork) Kill(rank int) {
	rk := n.ranks[rank]
	rk.killOne.Do(func() { close(rk.killed) })
	why := fmt.Sprintf("rank %d killed", rank)
	n.links[rank].close(why)
	n.links[(rank-1+n.world)%n.world].close(why)
}

// Stall freezes rank as a stopped process: its transport's calls block (its
// heartbeats stop) until Resume, while its links stay open.
func (n *InmemNetwork) Stall(rank int) {
	rk := n.ranks[rank]
	rk.mu.Lock()
	if rk.gate == nil {
		rk.gate = make(chan struct{})
	}
	rk.mu.Unlock()
}

// Resume lets a stalled rank go on.
func (n *InmemNetwork) Resume(rank int) {
	rk := n.ranks[rank]
	rk.mu.Lock()
	if rk.gate != nil {
		close(rk.gate)
		rk.gate = nil
	}
	rk.mu.Unlock()
}

// InmemTransport is one rank's Transport on an InmemNetwork. Send copies the
// payload into the link; Recv copies it into the slice accept names.
type InmemTransport struct {
	net     *InmemNetwork
	rank    int
	out, in *inmemLink
	closed  chan struct{}
	once    sync.Once
}

var _ Transport = (*InmemTransport)(nil)

func (t *InmemTransport) check() error {
	select {
	case <-t.closed:
		return ErrClosed
	case <-t.net.ranks[t.rank].killed:
		return fmt.Errorf("%w: rank %d killed", ErrPeerLost, t.rank)
	default:
		return nil
	}
}

// waitStall blocks while the rank is stalled. Like a stopped process, a
// stalled rank notices nothing, not even its context ending, until it is
// resumed or its own transport is closed; then it reports what happened.
func (t *InmemTransport) waitStall(ctx context.Context) error {
	rk := t.net.ranks[t.rank]
	for {
		rk.mu.Lock()
		gate := rk.gate
		rk.mu.Unlock()
		if gate == nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return nil
		}
		select {
		case <-gate:
		case <-t.closed:
			return ErrClosed
		}
	}
}

// Send implements Transport.
func (t *InmemTransport) Send(ctx context.Context, h Header, payload []byte) error {
	if err := t.check(); err != nil {
		return err
	}
	if err := t.waitStall(ctx); err != nil {
		return err
	}
	h.Len = uint32(len(payload))
	t.net.mu.Lock()
	hook := t.net.hook
	t.net.mu.Unlock()
	if hook != nil {
		act := hook(Event{From: t.rank, To: t.out.to, Header: h, Payload: payload})
		switch {
		case act.Kill:
			t.net.Kill(t.rank)
			return t.check()
		case act.Cut:
			t.net.Cut(t.rank)
			return t.out.lost()
		case act.Stall:
			t.net.Stall(t.rank)
			if err := t.waitStall(ctx); err != nil {
				return err
			}
		}
		if act.Delay > 0 {
			timer := time.NewTimer(act.Delay)
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
				return context.Cause(ctx)
			case <-t.closed:
				timer.Stop()
				return ErrClosed
			case <-t.out.done:
				timer.Stop()
				return t.out.lost()
			}
		}
		if act.Drop {
			return nil
		}
		if act.Rewrite != nil {
			payload = act.Rewrite(&h, append([]byte(nil), payload...))
		}
	}
	f := inmemFrame{h: h, payload: append([]byte(nil), payload...)}
	select {
	case t.out.frames <- f:
		return nil
	case <-t.out.done:
		return t.out.lost()
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.closed:
		return ErrClosed
	case <-t.net.ranks[t.rank].killed:
		return t.check()
	}
}

// Recv implements Transport.
func (t *InmemTransport) Recv(ctx context.Context, accept func(Header) ([]byte, error)) (Header, error) {
	if err := t.check(); err != nil {
		return Header{}, err
	}
	if err := t.waitStall(ctx); err != nil {
		return Header{}, err
	}
	var f inmemFrame
	select {
	case f = <-t.in.frames:
	default:
		select {
		case f = <-t.in.frames:
		case <-t.in.done:
			select { // what was sent before the link broke still arrives
			case f = <-t.in.frames:
			default:
				return Header{}, t.in.lost()
			}
		case <-ctx.Done():
			return Header{}, context.Cause(ctx)
		case <-t.closed:
			return Header{}, ErrClosed
		case <-t.net.ranks[t.rank].killed:
			return Header{}, t.check()
		}
	}
	if err := t.waitStall(ctx); err != nil {
		return Header{}, err
	}
	h := f.h
	if h.Len > MaxPayload {
		return h, fmt.Errorf("%w: frame payload of %d bytes exceeds the limit of %d", ErrProtocol, h.Len, MaxPayload)
	}
	if int(h.Len) != len(f.payload) {
		return h, fmt.Errorf("%w: header says %d payload bytes, frame has %d", ErrProtocol, h.Len, len(f.payload))
	}
	dst, err := accept(h)
	if err != nil {
		return h, err
	}
	if len(dst) != len(f.payload) {
		return h, fmt.Errorf("%w: accept gave %d bytes for a %d-byte payload", ErrProtocol, len(dst), len(f.payload))
	}
	copy(dst, f.payload)
	return h, nil
}

// SendBack implements Transport. Hooks do not see control frames, but a
// killed or stalled rank sends none.
func (t *InmemTransport) SendBack(ctx context.Context, h Header) error {
	if err := t.check(); err != nil {
		return err
	}
	if err := t.waitStall(ctx); err != nil {
		return err
	}
	h.Len = 0
	select {
	case t.in.back <- h:
		return nil
	case <-t.in.done:
		return t.in.lost()
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.closed:
		return ErrClosed
	case <-t.net.ranks[t.rank].killed:
		return t.check()
	}
}

// RecvBack implements Transport.
func (t *InmemTransport) RecvBack(ctx context.Context) (Header, error) {
	if err := t.check(); err != nil {
		return Header{}, err
	}
	if err := t.waitStall(ctx); err != nil {
		return Header{}, err
	}
	var h Header
	select {
	case h = <-t.out.back:
	case <-t.out.done:
		return Header{}, t.out.lost()
	case <-ctx.Done():
		return Header{}, context.Cause(ctx)
	case <-t.closed:
		return Header{}, ErrClosed
	case <-t.net.ranks[t.rank].killed:
		return Header{}, t.check()
	}
	if err := t.waitStall(ctx); err != nil {
		return Header{}, err
	}
	return h, nil
}

// Close implements Transport: both links of the rank break.
func (t *InmemTransport) Close() error {
	t.once.Do(func() {
		close(t.closed)
		why := fmt.Sprintf("rank %d closed its transport", t.rank)
		t.out.close(why)
		t.in.close(why)
	})
	return nil
}
