package allreduce

// exchange is what one operation sends to the right neighbour and receives
// from the left one: its frames in order, and which of them wait for which.
// allReduceExchange and broadcastExchange build it, and pipeline runs it. A
// dependency names a message of the other side; dependencies grow with the
// message index, and messages complete in order, so each side waits by taking
// tokens (one per completed message of the other side) until it has taken the
// one it needs.
type exchange struct {
	sends, recvs int
	sendDep      func(i int) int                           // received message that must be complete first, or -1
	recvDep      func(j int) int                           // sent message that must be out first, or -1
	sendItem     func(i int) (Header, []float32)           // frame header and the elements it carries
	recvItem     func(j int) (Header, []float32, recvMode) // expected header and where its elements go
}

// recvMode says what a received segment does to the elements it lands on.
type recvMode uint8

const (
	recvCopy      recvMode = iota // overwrite the elements
	recvAdd                       // add into the elements
	recvAddAndOwn                 // add, then round to the wire precision (last reduce-scatter step)
)

// allReduceExchange is the exchange of an all-reduce (or a barrier, which is an
// all-reduce of no elements) at this rank: the schedule's frames, reduce-scatter
// then all-gather, bf16 on the wire when Config.Compression asks for it, int64
// for an integer all-reduce.
func (r *Ring) allReduceExchange(o op) exchange {
	// An integer all-reduce schedules int64 elements, each two float32 slots
	// of o.buf, with segments of the same bytes.
	n, segElems, slots, dt := len(o.buf), r.segElems, 1, F32
	switch {
	case o.i64:
		n, segElems, slots, dt = len(o.buf)/2, max(r.segElems/2, 1), 2, I64
	case o.kind == KindAllReduce && r.compression == CompressBF16:
		dt = BF16
	}
	s := newSchedule(r.world, r.rank, n, segElems)
	hdr := func(step, seg int) Header {
		return Header{Kind: o.kind, DType: dt, Generation: r.gen, Seq: o.seq, Step: uint32(step), Segment: uint32(seg), Total: uint64(n)}
	}
	return exchange{
		sends:   s.items(),
		recvs:   s.items(),
		sendDep: s.sendAfterRecv,
		recvDep: s.recvAfterSend,
		sendItem: func(i int) (Header, []float32) {
			step, seg := s.item(i)
			lo, hi := s.segment(s.sendChunk(step), seg)
			return hdr(step, seg), o.buf[slots*lo : slots*hi]
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
			return h, o.buf[slots*lo : slots*hi], mode
		},
	}
}

// broadcastExchange is the exchange of a broadcast at this rank: the buffer in
// segments, received from the left (unless this rank is the root) and
// forwarded to the right (unless the right neighbour is the root), each
// segment forwarded as soon as it has arrived.
func (r *Ring) broadcastExchange(o op) exchange {
	n := len(o.buf)
	segs := broadcastSegs(n, r.segElems)
	pos := ((r.rank-o.root)%r.world + r.world) % r.world
	p := exchange{sendDep: func(int) int { return -1 }, recvDep: func(int) int { return -1 }}
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
