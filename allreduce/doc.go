// Package allreduce is how ringtrain workers agree on a gradient: a ring
// all-reduce that sums a []float32 across the members of a ring, leaving every
// member with bit-identical results, over a Transport that is gRPC between
// processes and in-memory in tests. It also broadcasts a buffer from one member
// (state sync) and runs barriers (checkpoints).
//
// # Who calls it
//
// The worker. Every worker registers a Service on its peer gRPC server once.
// When the coordinator publishes a plan (generation, ordered members), each
// member calls Service.Connect for that generation, builds a Ring over the
// transport, and all-reduces its gradient buckets on it as backward produces
// them (Start, then Wait before the optimizer step). When the next plan arrives
// the worker closes the Ring (aborting anything in flight) and builds a new one.
// Tests of the ring and of its callers use NewInmemRings or an InmemNetwork.
//
// # Usage
//
//	svc := allreduce.NewService(allreduce.ServiceOptions{Logger: log})
//	srv := grpc.NewServer(allreduce.ServerOptions()...) // the worker's peer server
//	svc.Register(srv)
//
//	// for each new plan:
//	cfg := allreduce.Config{Generation: plan.Generation, Members: plan.Members, Rank: myRank, Logger: log}
//	t, err := svc.Connect(ctx, cfg, allreduce.LinkOptions{Resolve: addressOf})
//	ring, err := allreduce.NewRing(cfg, t)
//	defer ring.Close()
//
//	// each step, bucket by bucket as backward finishes them:
//	handles = append(handles, ring.Start(ctx, grads[lo:hi]))
//	...
//	for _, h := range handles {
//		if err := h.Wait(); err != nil { /* the ring is dead: wait for a new plan */ }
//	}
//
// # The algorithm
//
// The buffer is cut into W chunks, and an all-reduce is a reduce-scatter
// followed by an all-gather, 2(W-1) steps in all (schedule.go). At
// reduce-scatter step s rank r sends chunk r-s to its right neighbour and adds
// the chunk r-s-1 it receives from its left one into its buffer; after W-1
// steps rank r holds chunk r+1 summed over every rank. At all-gather step s it
// sends the reduced chunk it got last and overwrites its copy of the chunk it
// receives. Each rank sends and receives 2(W-1)/W of the buffer, which is what
// makes the ring bandwidth-optimal. A chunk is not one slice of the buffer but
// every W-th block of it, blocks being at most a segment long, so that what a
// rank sends, receives into and forwards at any moment lies close together
// and stays in cache (a 64 MiB buffer does not fit in one).
//
// Why bit-identical: floating-point addition is not associative, so two ranks
// that summed the same values in different orders would hold different bits,
// and replicas would drift apart. Here chunk c is summed in one fixed order
// (rank c's value, plus rank c+1's, plus rank c+2's, ... round the ring), by
// one rank, once; the all-gather then copies those bits to everyone and never
// adds again. The result depends only on the inputs, the world size and the
// segment size (which every member must share), never on timing or transport.
// With bf16 compression the owner of a chunk rounds its sum to bfloat16 before
// sending it, so it keeps exactly what the others receive.
//
// Integer all-reduce (StartInt64, AllReduceInt64) runs the same schedule over
// []int64, frames of dtype i64: integer addition is associative, so its result
// depends on the inputs alone, not even on the world size or the segment size.
// The worker's exact mode sums fixed-point gradients with it. Every addition is
// checked: a sum that leaves the int64 range fails the operation with ErrOverflow.
//
// How pipelining works: every chunk is cut into the same number of segments,
// at most Config.SegmentBytes each, and every segment is one frame. A sender
// goroutine and a receiver goroutine run each operation. What a rank sends at
// step s+1 is what it received at step s, so the sender may send segment k of
// step s+1 as soon as the receiver has reduced segment k of step s, while the
// receiver is already reading segment k+1: sending, receiving and adding
// overlap segment by segment. Frames go out in an order every rank shares in
// which each step trails the one before it by a few segments, so a W-rank
// ring streams rather than stepping, and what is forwarded was received
// moments earlier. The only other wait is the receiver's: an all-gather
// segment overwrites data this rank sent earlier, so it is taken only once
// that send is done (on an honest ring it always is). Every wait is on an
// earlier frame of the shared order, so no two ranks can wait for each other.
//
// # Frames, generations and order
//
// Every frame carries (generation, operation sequence number, step, segment,
// buffer length) and the receiver knows from the schedule exactly which frame
// comes next: a frame of another generation is refused with
// ErrStaleGeneration, one of another operation, step, segment, kind, encoding
// or size with ErrProtocol, before its payload is read, so nothing foreign is
// ever mixed in. Operations started with Start run in the order started, one
// at a time, and are numbered in that order on every member.
//
// # Failures and aborts
//
// A Ring is built for one generation and is single-use with respect to
// failure: the first failed operation (a dead, closed, stalled or misbehaving
// neighbour, a cancelled context, Close) fails the Ring, aborts every
// operation in flight or queued, and closes its transport. Closing is how the
// news travels: the neighbours see their links break (ErrPeerLost), fail, and
// close theirs, so a failure crosses the whole ring in W hops of a few
// milliseconds each, in both directions, and no rank waits for a timeout that
// another rank has already hit. Cancelling an operation's context aborts it
// within milliseconds for the same reason: the blocked send or receive is
// interrupted by closing the transport.
//
// Stalls are caught by heartbeats. Each rank sends a heartbeat to its right
// neighbour when it has sent nothing for a quarter of the progress timeout,
// and to its left neighbour at that rate always; a neighbour heard nothing
// from for Config.ProgressTimeout (default 5 s) is given up on with
// ErrTimeout. Because a neighbour that is alive but has not yet reached the
// operation keeps heartbeating, ranks may enter an operation seconds apart
// (uneven backward passes) without tripping the timeout, while a stopped
// process, a hung host or a black-holed link is detected within it. A forward
// heartbeat also says how many data frames were sent before it, which
// exposes a lost frame that nothing else would.
//
// # Transports
//
// Transport is the seam between the ring and the bytes: Send to the right
// neighbour, Recv from the left one (reading the payload straight into the
// slice the ring names, after the ring has checked the header), SendBack and
// RecvBack for the heartbeats that flow the other way, and Close.
//
// InmemNetwork connects in-memory transports for tests, with fault hooks in
// the manner of hashicorp/raft's fuzzy transports: drop, delay or rewrite a
// frame, cut a link, kill or stall a rank at a chosen frame.
//
// The gRPC transport (Service, Connect, GRPCTransport) opens one RingLink
// stream per generation from each rank to its right neighbour, with a codec
// for a custom content subtype that passes frames through as raw bytes. Even
// so, frames on the stream reach only about half the all-reduce bandwidth of
// a plain socket on a small machine, because HTTP/2 framing and gRPC's
// buffering copy every byte several times more; so by default the stream only opens the link and carries
// the heartbeats, and the data frames travel on a dedicated TCP connection
// (a lane) that the right neighbour offers in its welcome and the left one
// connects to with a one-time token, as gloo and NCCL use their own sockets.
// A frame is then one writev from the caller's buffer and a read into its
// destination (all-gather frames land directly in the result), with the
// socket's receive low-water mark raised so the reader is woken once per large
// piece rather than per packet. Links can use
// several lanes (LinkOptions.Lanes), over which each frame's payload is split
// and moved in parallel, for links faster than one connection can fill; and a
// Service can refuse lanes (ServiceOptions.NoLanes), which keeps frames on
// the gRPC stream. Addresses are resolved when a link is dialled, so members
// may move between generations.
//
// # Files
//
//	errors.go           the sentinel errors
//	frame.go            the frame header: kinds, payload encodings, wire layout
//	schedule.go         the pure ring schedule: which chunk and segment moves at each step
//	add.go              the float32, bfloat16 and int64 kernels: add, encode, decode, round
//	ring.go             Config and Ring: building, closing and failing a rank's ring
//	ring_ops.go         the operation queue: AllReduce, Start, StartInt64, Broadcast, Barrier, Handle
//	ring_exchange.go    what an operation sends and receives, in order, built from the schedule
//	ring_pipeline.go    runs an exchange: a sender and a receiver goroutine, overlapped
//	ring_accept.go      receiving one frame: header checks, heartbeats, the progress timeout
//	ring_liveness.go    the heartbeats both ways and the watch on the right neighbour
//	transport.go        the Transport interface and its contract
//	inmem_transport.go  InmemNetwork: in-memory transports with fault hooks
//	testing.go          NewInmemRings, for tests of the ring and its callers
//	grpc_transport.go   GRPCTransport and Service.Connect, which builds it
//	grpc_service.go     Service: the server half, where incoming links wait for Connect
//	grpc_link.go        the RingLink handler: a link's hello, welcome and lifetime
//	grpc_dial.go        LinkOptions and the dial of the link to the right neighbour
//	grpc_codec.go       the codec that passes frames through gRPC as raw bytes
//	tcp_lanes*.go       TCP lanes: granting, accepting, writing and reading them
package allreduce
