package allreduce

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
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
		r.recvScratch = make([]float32, r.segElems)
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

var epoch = time.Now()

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

// Handle is an operation started with Start.
type Handle struct {
	seq  uint64
	done chan struct{}
	err  error
	// began is when the operation stopped waiting for the ones before it (zero if
	// it never did), ended when it finished; both are read after done is closed.
	began, ended time.Time
}

// Wait blocks until the operation has finished and returns its error. The
// context given to Start bounds it. It may be called from any goroutine, any
// number of times.
func (h *Handle) Wait() error {
	<-h.done
	return h.err
}

// Done is closed when the operation has finished.
func (h *Handle) Done() <-chan struct{} { return h.done }

// Seq is the operation's sequence number in its generation.
func (h *Handle) Seq() uint64 { return h.seq }

// Busy returns how long the operation ran: from when the operations started
// before it had finished (operations run one at a time) to when it finished,
// so the Busy times of a ring's operations never overlap and add up to the time
// the ring was busy. It is zero for an operation that failed before it began.
// Call it once Done is closed.
func (h *Handle) Busy() time.Duration {
	if h.began.IsZero() {
		return 0
	}
	return h.ended.Sub(h.began)
}

func (h *Handle) finish(err error) {
	h.err = err
	h.ended = time.Now()
	close(h.done)
}

type op struct {
	kind Kind
	seq  uint64
	buf  []float32
	root int
}

// AllReduce replaces buf, on every member, with the element-wise sum of all
// members' bufs. Every member ends with the same bits. It blocks until done,
// ctx ends, or the ring fails; on error buf's contents are unspecified.
func (r *Ring) AllReduce(ctx context.Context, buf []float32) error {
	return r.Start(ctx, buf).Wait()
}

// Start begins an all-reduce of buf, as AllReduce, and returns at once. The
// operation runs after the operations started before it; buf must not be
// touched until its Handle's Wait returns. ctx bounds the operation, including
// its wait for earlier ones.
func (r *Ring) Start(ctx context.Context, buf []float32) *Handle {
	return r.start(ctx, op{kind: KindAllReduce, buf: buf})
}

// Broadcast copies root's buf into every other member's buf. All members pass
// buffers of the same length. Payloads are never compressed. It blocks like
// AllReduce.
func (r *Ring) Broadcast(ctx context.Context, root int, buf []float32) error {
	return r.start(ctx, op{kind: KindBroadcast, buf: buf, root: root}).Wait()
}

// Barrier returns once every member has called Barrier (as their operation
// with the same sequence number). It blocks like AllReduce.
func (r *Ring) Barrier(ctx context.Context) error {
	return r.start(ctx, op{kind: KindBarrier}).Wait()
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

func (r *Ring) start(ctx context.Context, o op) *Handle {
	h := &Handle{done: make(chan struct{})}
	r.mu.Lock()
	if err := r.unusable(); err != nil {
		r.mu.Unlock()
		h.finish(err)
		return h
	}
	o.seq = r.nextSeq
	h.seq = o.seq
	r.nextSeq++
	prev := r.last
	r.last = h
	r.running++
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		err := r.run(ctx, prev, o, h)
		if err != nil {
			r.fail(err)
		}
		r.mu.Lock()
		r.running--
		r.mu.Unlock()
		h.finish(err)
	}()
	return h
}

// fail records the ring's first failure, aborts everything in flight and
// closes the transport, which tells the neighbours. Failures of operations
// are logged as warnings; those found by the heartbeats (often a neighbour
// closing its ring at the end of a generation) only at debug level, since the
// next operation reports them.
func (r *Ring) fail(err error) {
	r.mu.Lock()
	first := r.failure == nil && !r.closed
	if r.failure == nil {
		r.failure = err
	}
	busy := r.running > 0
	r.mu.Unlock()
	if first && busy {
		r.log.Warn("ring failed", "err", err)
	} else if first {
		r.log.Debug("ring failed between operations", "err", err)
	}
	r.cancel(err)
	if r.t != nil {
		r.t.Close()
	}
}

// run runs o once prev (the operation started before it) has finished, and
// records in h when it began.
func (r *Ring) run(ctx context.Context, prev *Handle, o op, h *Handle) error {
	if prev != nil {
		select {
		case <-prev.done:
		case <-ctx.Done():
			return r.opErr(o, fmt.Errorf("waiting for operation %d: %w", prev.seq, context.Cause(ctx)))
		case <-r.ctx.Done():
		}
	}
	h.began = time.Now()
	r.mu.Lock()
	err := r.unusable()
	r.mu.Unlock()
	if err != nil {
		return err
	}
	if o.kind == KindBroadcast && (o.root < 0 || o.root >= r.world) {
		return r.opErr(o, fmt.Errorf("%w: broadcast root %d is outside [0, %d)", ErrBadConfig, o.root, r.world))
	}
	if r.world == 1 {
		return nil
	}
	opCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(r.ctx, func() { cancel(context.Cause(r.ctx)) })
	defer stop()
	began := monotonic()
	r.log.Debug("operation start", "seq", o.seq, "kind", o.kind, "elements", len(o.buf))
	if o.kind == KindBroadcast {
		err = r.pipeline(opCtx, cancel, r.broadcastPlan(o))
	} else {
		err = r.pipeline(opCtx, cancel, r.allReducePlan(o))
	}
	if err != nil {
		if errors.Is(err, ErrClosed) && r.ctx.Err() != nil {
			// The transport was closed under the operation because the ring
			// failed or was closed: report why.
			err = context.Cause(r.ctx)
		}
		return r.opErr(o, err)
	}
	r.log.Debug("operation done", "seq", o.seq, "kind", o.kind, "elements", len(o.buf), "took", monotonic()-began)
	return nil
}

func (r *Ring) opErr(o op, err error) error {
	return fmt.Errorf("allreduce: generation %d operation %d (%s of %d elements): %w", r.gen, o.seq, o.kind, len(o.buf), err)
}

// plan is an operation's messages: what is sent and received, in order, and
// which of them wait for which. A dependency names a message of the other
// side; dependencies grow with the message index, and messages complete in
// order, so each side waits by taking tokens (one per completed message of
// the other side) until it has taken the one it needs.
type plan struct {
	sends, recvs int
	sendDep      func(i int) int                           // received message that must be complete first, or -1
	recvDep      func(j int) int                           // sent message that must be out first, or -1
	sendItem     func(i int) (Header, []float32)           // frame header and the elements it carries
	recvItem     func(j int) (Header, []float32, recvMode) // expected header and where its elements go
}

type recvMode uint8

const (
	recvCopy      recvMode = iota // overwrite the elements
	recvAdd                       // add into the elements
	recvAddAndOwn                 // add, then round to the wire precision (last reduce-scatter step)
)

func (r *Ring) allReducePlan(o op) plan {
	s := newSchedule(r.world, r.rank, len(o.buf), r.segElems)
	dt := F32
	if o.kind == KindAllReduce && r.compression == CompressBF16 {
		dt = BF16
	}
	hdr := func(step, seg int) Header {
		return Header{Kind: o.kind, DType: dt, Generation: r.gen, Seq: o.seq, Step: uint32(step), Segment: uint32(seg), Total: uint64(len(o.buf))}
	}
	return plan{
		sends:   s.items(),
		recvs:   s.items(),
		sendDep: s.sendAfterRecv,
		recvDep: s.recvAfterSend,
		sendItem: func(i int) (Header, []float32) {
			step, seg := s.item(i)
			lo, hi := s.segment(s.sendChunk(step), seg)
			return hdr(step, seg), o.buf[lo:hi]
		},
		recvItem: func(j int) (Header, []float32, recvMode) {
			step, seg := s.item(j)
			lo, hi := s.segment(s.recvChunk(step), seg)
			h := hdr(step, seg)
			h.Len = uint32((hi - lo) * dt.size())
			mode := recvCopy
			if s.reduces(step) {
				mode = recvAdd
				if step == r.world-2 && dt == BF16 {
					mode = recvAddAndOwn
				}
			}
			return h, o.buf[lo:hi], mode
		},
	}
}

func (r *Ring) broadcastPlan(o op) plan {
	n := len(o.buf)
	segs := broadcastSegs(n, r.segElems)
	pos := ((r.rank-o.root)%r.world + r.world) % r.world
	p := plan{sendDep: func(int) int { return -1 }, recvDep: func(int) int { return -1 }}
	if pos < r.world-1 {
		p.sends = segs
	}
	if pos > 0 {
		p.recvs = segs
		p.sendDep = func(i int) int { return i } // forward what came in
	}
	hdr := func(k int) (Header, []float32) {
		lo, hi := chunkLo(n, segs, k), chunkLo(n, segs, k+1)
		return Header{Kind: KindBroadcast, DType: F32, Generation: r.gen, Seq: o.seq, Segment: uint32(k),
			Total: uint64(n), Root: uint32(o.root), Len: uint32(4 * (hi - lo))}, o.buf[lo:hi]
	}
	p.sendItem = hdr
	p.recvItem = func(j int) (Header, []float32, recvMode) {
		h, dst := hdr(j)
		return h, dst, recvCopy
	}
	return p
}

// pipeline runs an operation's plan: a goroutine sends while this one
// receives, each waiting only for the messages its next one depends on, so
// sending, receiving and adding overlap segment by segment.
func (r *Ring) pipeline(ctx context.Context, cancel context.CancelCauseFunc, p plan) error {
	recvTok := make(chan struct{}, p.recvs)
	sendTok := make(chan struct{}, p.sends)
	var sendErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		taken := 0 // received messages known complete
		for i := range p.sends {
			for d := p.sendDep(i); taken <= d; taken++ {
				select {
				case <-recvTok:
				case <-ctx.Done():
					sendErr = context.Cause(ctx)
					return
				}
			}
			h, elems := p.sendItem(i)
			if err := r.sendData(ctx, h, elems); err != nil {
				sendErr = err
				cancel(err)
				return
			}
			sendTok <- struct{}{}
		}
	}()
	recvErr := r.receive(ctx, p, recvTok, sendTok)
	if recvErr != nil {
		cancel(recvErr)
	}
	wg.Wait()
	if recvErr == nil && sendErr == nil {
		return nil
	}
	// Prefer the root cause to its echo: one side's failure may close the
	// transport under the other, which then sees ErrClosed.
	for _, err := range []error{context.Cause(ctx), recvErr, sendErr} {
		if err != nil && !errors.Is(err, ErrClosed) {
			return err
		}
	}
	return context.Cause(ctx)
}

func (r *Ring) receive(ctx context.Context, p plan, recvTok, sendTok chan struct{}) error {
	taken := 0 // sent messages known complete
	// waitSent waits until sent message d is out. A message that depends on
	// one of ours cannot arrive before ours has gone round the ring, so the
	// wait happens once its header is in (and is all but instant). Waiting
	// before receiving would leave the link unwatched while the sender is
	// blocked.
	waitSent := func(d int) error {
		for ; taken <= d; taken++ {
			select {
			case <-sendTok:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		return nil
	}
	for j := range p.recvs {
		dep := p.recvDep(j)
		want, dst, mode := p.recvItem(j)
		var into []byte
		switch {
		case want.DType == BF16:
			into = unsafe.Slice((*byte)(unsafe.Pointer(&r.recvScratch[0])), want.Len)
		case mode == recvCopy:
			into = f32Bytes(dst)
		default:
			into = f32Bytes(r.recvScratch[:len(dst)])
		}
		if err := r.recvFrame(ctx, want, into, func() error { return waitSent(dep) }); err != nil {
			return err
		}
		switch {
		case want.DType == BF16 && mode == recvCopy:
			decodeBF16(dst, bytesU16(into))
		case want.DType == BF16:
			addBF16To(dst, bytesU16(into))
			if mode == recvAddAndOwn {
				roundBF16(dst)
			}
		case mode != recvCopy:
			addTo(dst, r.recvScratch[:len(dst)])
		}
		recvTok <- struct{}{}
	}
	return nil
}

// sendData sends one data frame of elems, encoded as h.DType.
func (r *Ring) sendData(ctx context.Context, h Header, elems []float32) error {
	payload := f32Bytes(elems)
	if h.DType == BF16 && len(elems) > 0 {
		encodeBF16(r.sendScratch, elems)
		payload = unsafe.Slice((*byte)(unsafe.Pointer(&r.sendScratch[0])), 2*len(elems))
	}
	select {
	case r.sendLock <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	err := r.t.Send(ctx, h, payload)
	if err == nil {
		r.sent++
	}
	r.lastSend.Store(int64(monotonic()))
	<-r.sendLock
	if err != nil {
		return fmt.Errorf("send to right neighbour %s: %w", r.peer(1), err)
	}
	return nil
}

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

// heartbeat sends a heartbeat to the right neighbour whenever nothing has been
// sent for a quarter of the progress timeout, until the ring ends.
func (r *Ring) heartbeat() {
	defer r.wg.Done()
	every := max(r.timeout/4, time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-tick.C:
		}
		if monotonic()-time.Duration(r.lastSend.Load()) < every {
			continue
		}
		select {
		case r.sendLock <- struct{}{}:
		case <-r.ctx.Done():
			return
		}
		err := r.t.Send(r.ctx, Header{Kind: KindHeartbeat, Generation: r.gen, Seq: r.sent}, nil)
		r.lastSend.Store(int64(monotonic()))
		<-r.sendLock
		if err != nil {
			if !background(r.ctx, err) {
				r.fail(fmt.Errorf("allreduce: generation %d: heartbeat to right neighbour %s: %w", r.gen, r.peer(1), err))
			}
			return
		}
	}
}

// heartbeatBack sends a heartbeat to the left neighbour every quarter of the
// progress timeout, so that it knows this rank is alive even while no data
// flows its way.
func (r *Ring) heartbeatBack() {
	defer r.wg.Done()
	every := max(r.timeout/4, time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if err := r.t.SendBack(r.ctx, Header{Kind: KindHeartbeat, Generation: r.gen}); err != nil {
			if !background(r.ctx, err) {
				r.fail(fmt.Errorf("allreduce: generation %d: heartbeat to left neighbour %s: %w", r.gen, r.peer(-1), err))
			}
			return
		}
		select {
		case <-r.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// watchRight reads the right neighbour's heartbeats for the life of the ring.
// A right neighbour that goes away, or falls silent for the progress timeout
// once it has been heard from, fails the ring at once, whatever the ring is
// doing: so a rank blocked sending to a stopped neighbour, or one that is not
// reading from its left, still learns of failures promptly.
func (r *Ring) watchRight() {
	defer r.wg.Done()
	// The timer, not a deadline on RecvBack, fails the ring, so the timeout
	// is recorded before the transport closes under the other goroutines.
	silent := time.AfterFunc(time.Duration(math.MaxInt64), func() {
		r.fail(fmt.Errorf("allreduce: generation %d: %w", r.gen, r.timeoutRightErr))
	})
	defer silent.Stop()
	for {
		h, err := r.t.RecvBack(r.ctx)
		switch {
		case err != nil && background(r.ctx, err):
			return
		case err != nil:
			err = fmt.Errorf("heartbeat from right neighbour %s: %w", r.peer(1), err)
		case h.Generation != r.gen:
			err = fmt.Errorf("%w: heartbeat of generation %d from right neighbour %s", ErrStaleGeneration, h.Generation, r.peer(1))
		case h.Kind != KindHeartbeat:
			err = fmt.Errorf("%w: control frame of kind %s from right neighbour %s", ErrProtocol, h.Kind, r.peer(1))
		}
		if err != nil {
			r.fail(fmt.Errorf("allreduce: generation %d: %w", r.gen, err))
			return
		}
		if !silent.Reset(r.timeout) && r.ctx.Err() != nil {
			return
		}
	}
}

// background reports whether an error of a heartbeat goroutine is only the
// echo of something already being handled: the ring ending, or the transport
// closed under it (which happens only when an operation fails, and the
// operation reports that failure).
func background(ringCtx context.Context, err error) bool {
	return ringCtx.Err() != nil || errors.Is(err, ErrClosed)
}
