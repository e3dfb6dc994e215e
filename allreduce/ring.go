package allreduce

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Config.
const (
	// DefaultSegmentBytes is the default largest frame payload: chunks are cut
	// into segments of at most this many bytes of float32 data.
	DefaultSegmentBytes = 4 << 20
	// DefaultProgressTimeout is the default time a rank waits for anything from
	// its left neighbour before it gives up with ErrTimeout.
	DefaultProgressTimeout = 5 * time.Second
)

// Compression selects how all-reduce payloads travel.
type Compression uint8

const (
	// NoCompression sends float32 values as they are.
	NoCompression Compression = iota
	// CompressBF16 sends all-reduce payloads as bfloat16, half the bytes, and
	// accumulates in float32: each rank adds the bfloat16 partial sum it
	// receives to its own float32 values. The reduced values are rounded to
	// bfloat16 precision on every rank alike, so results stay bit-identical.
	// Broadcasts are always exact.
	CompressBF16
)

func (c Compression) String() string {
	switch c {
	case NoCompression:
		return "none"
	case CompressBF16:
		return "bf16"
	}
	return fmt.Sprintf("compression(%d)", uint8(c))
}

// Config describes one rank of one generation of a ring.
type Config struct {
	// Generation numbers the ring's membership; every frame carries it, and
	// frames of any other generation are refused with ErrStaleGeneration.
	Generation uint64
	// Members lists the member ids in ring order: rank i sends to rank i+1
	// (mod W) and receives from rank i-1. Every member must pass the same list.
	Members []string
	// Rank is this member's index in Members.
	Rank int
	// SegmentBytes is the largest frame payload of float32 data (zero means
	// DefaultSegmentBytes). Every member must use the same value.
	SegmentBytes int
	// ProgressTimeout bounds how long a rank waits for a frame from its left
	// neighbour during an operation (zero means DefaultProgressTimeout). Links
	// carry heartbeats while idle, so a neighbour that is alive but has not yet
	// reached the operation does not trip it; a dead, stopped or cut-off one does.
	ProgressTimeout time.Duration
	// Compression selects the all-reduce wire encoding. Every member must use
	// the same value.
	Compression Compression
	// Logger receives the ring's logs; nil discards them.
	Logger *slog.Logger
}

// Ring is one rank's end of a ring all-reduce for one generation. It is safe
// for use by several goroutines; operations run one at a time in the order they
// were started, and every member must start the same operations, on buffers of
// the same length, in the same order.
//
// After an operation fails the Ring is unusable (later operations fail with
// ErrRingFailed) and its transport is closed, which makes the neighbours'
// operations fail in turn; a new generation builds a new Ring.
type Ring struct {
	gen             uint64
	members         []string
	world, rank     int
	segElems        int
	timeout         time.Duration
	compression     Compression
	t               Transport
	log             *slog.Logger
	timeoutErr      error // cause of a progress timeout, built once
	timeoutRightErr error

	ctx    context.Context // ends when the ring fails or closes
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // operation and heartbeat goroutines

	mu      sync.Mutex
	nextSeq uint64
	last    *Handle
	closed  bool
	failure error
	running int // operations started and not finished

	sendLock chan struct{} // held while a frame is being sent
	sent     uint64        // data frames sent; guarded by sendLock
	lastSend atomic.Int64  // monotonic nanoseconds of the last send

	// Used by the running operation only (operations run one at a time).
	received    uint64    // data frames received
	recvScratch []float32 // reduce-scatter and bf16 payloads as they arrive
	sendScratch []uint16  // bf16 payloads being sent
}

// NewRing builds this member's end of a ring over t, which it owns from then
// on (it is closed when the Ring is, or at once if NewRing fails). t may be nil
// for a ring of one member, whose operations move no data. NewRing starts the
// heartbeat of the link to the right neighbour; call Close to stop it.
func NewRing(cfg Config, t Transport) (*Ring, error) {
	r, err := newRing(cfg, t)
	if err != nil {
		if t != nil {
			t.Close()
		}
		return nil, err
	}
	return r, nil
}

// newRing checks cfg and builds the Ring, starting its liveness goroutines
// (ring_liveness.go) when it has neighbours. NewRing closes t if it fails.
func newRing(cfg Config, t Transport) (*Ring, error) {
	w := len(cfg.Members)
	if w == 0 {
		return nil, fmt.Errorf("%w: Members is empty", ErrBadConfig)
	}
	seen := make(map[string]int, w)
	for i, m := range cfg.Members {
		if m == "" {
			return nil, fmt.Errorf("%w: Members[%d] is empty", ErrBadConfig, i)
		}
		if j, dup := seen[m]; dup {
			return nil, fmt.Errorf("%w: Members[%d] and Members[%d] are both %q", ErrBadConfig, j, i, m)
		}
		seen[m] = i
	}
	if cfg.Rank < 0 || cfg.Rank >= w {
		return nil, fmt.Errorf("%w: Rank %d is outside [0, %d)", ErrBadConfig, cfg.Rank, w)
	}
	seg := cfg.SegmentBytes
	if seg == 0 {
		seg = DefaultSegmentBytes
	}
	if seg < 4 || seg > MaxPayload {
		return nil, fmt.Errorf("%w: SegmentBytes %d is outside [4, %d]", ErrBadConfig, cfg.SegmentBytes, MaxPayload)
	}
	timeout := cfg.ProgressTimeout
	if timeout == 0 {
		timeout = DefaultProgressTimeout
	}
	if timeout < 0 {
		return nil, fmt.Errorf("%w: ProgressTimeout %v is negative", ErrBadConfig, cfg.ProgressTimeout)
	}
	if cfg.Compression > CompressBF16 {
		return nil, fmt.Errorf("%w: Compression %d is unknown", ErrBadConfig, cfg.Compression)
	}
	if t == nil && w > 1 {
		return nil, fmt.Errorf("%w: nil Transport for a ring of %d members", ErrBadConfig, w)
	}
	if !littleEndian {
		return nil, fmt.Errorf("%w: big-endian hosts are not supported", ErrBadConfig)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r := &Ring{
		gen:         cfg.Generation,
		members:     append([]string(nil), cfg.Members...),
		world:       w,
		rank:        cfg.Rank,
		segElems:    seg / 4,
		timeout:     timeout,
		compression: cfg.Compression,
		t:           t,
		log:         log.With("generation", cfg.Generation, "rank", cfg.Rank, "member", cfg.Members[cfg.Rank]),
		sendLock:    make(chan struct{}, 1),
	}
	r.timeoutErr = fmt.Errorf("%w: nothing from left neighbour %s for %v", ErrTimeout, r.peer(-1), timeout)
	r.timeoutRightErr = fmt.Errorf("%w: nothing from right neighbour %s for %v", ErrTimeout, r.peer(1), timeout)
	r.ctx, r.cancel = context.WithCancelCause(context.Background())
	if w > 1 {
		r.recvScratch = make([]float32, max(r.segElems, 2)) // an int64 segment is at least 2 slots
		if r.compression == CompressBF16 {
			r.sendScratch = make([]uint16, r.segElems)
		}
		r.lastSend.Store(int64(monotonic()))
		r.wg.Add(3)
		go r.heartbeat()
		go r.heartbeatBack()
		go r.watchRight()
	}
	return r, nil
}

// epoch is the origin of monotonic: a fixed instant of this process.
var epoch = time.Now()

// monotonic returns the time since epoch, read from the monotonic clock;
// Ring.lastSend holds it as an integer.
func monotonic() time.Duration { return time.Since(epoch) }

// Generation returns the ring's generation.
func (r *Ring) Generation() uint64 { return r.gen }

// Rank returns this member's rank.
func (r *Ring) Rank() int { return r.rank }

// World returns the number of members.
func (r *Ring) World() int { return r.world }

// Members returns a copy of the member ids in ring order.
func (r *Ring) Members() []string { return append([]string(nil), r.members...) }

// peer names the member at offset d from this rank, for messages.
func (r *Ring) peer(d int) string {
	p := ((r.rank+d)%r.world + r.world) % r.world
	return fmt.Sprintf("%q (rank %d)", r.members[p], p)
}

// Close aborts the operations in flight or waiting, which return ErrClosed,
// stops the heartbeat, closes the transport, and waits for the ring's
// goroutines to end. The neighbours' operations fail with ErrPeerLost. It is
// idempotent.
func (r *Ring) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.cancel(ErrClosed)
	var err error
	if r.t != nil {
		err = r.t.Close()
	}
	r.wg.Wait()
	return err
}

// unusable returns why no operation may run, or nil. r.mu must be held.
func (r *Ring) unusable() error {
	if r.failure != nil {
		return fmt.Errorf("%w: %w", ErrRingFailed, r.failure)
	}
	if r.closed {
		return fmt.Errorf("allreduce: generation %d: %w", r.gen, ErrClosed)
	}
	return nil
}

// fail records the ring's first failure, aborts everything in flight and
// closes the transport, which tells the neighbours. Failures of operations
// are logged as warnings; those found by the heartbeats (often a neighbour
// closing its ring at the end of a generation) only at debug level, since the
// next operation reports them.
func (r *Ring) fail(err error) { r.failLogged(err, slog.LevelWarn) }

// failLogged is fail with the level at which an operation's failure is logged:
// info for an operation whose caller's context ended (an interrupt, a newer
// plan), which is the caller's doing rather than a fault.
func (r *Ring) failLogged(err error, level slog.Level) {
	r.mu.Lock()
	first := r.failure == nil && !r.closed
	if r.failure == nil {
		r.failure = err
	}
	busy := r.running > 0
	r.mu.Unlock()
	if first && busy {
		r.log.Log(context.Background(), level, "ring failed", "err", err)
	} else if first {
		r.log.Debug("ring failed between operations", "err", err)
	}
	r.cancel(err)
	if r.t != nil {
		r.t.Close()
	}
}
