package allreduce

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	ringv1 "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// linkProtocol is the version of the RingLink protocol this package speaks.
const linkProtocol = 1

// laneHandshakeTimeout bounds how long a new TCP lane may take to name its link.
const laneHandshakeTimeout = 10 * time.Second

// codecName is the gRPC content subtype of RingLink streams: its codec passes
// ring frames through as raw bytes and encodes the hello messages as protobuf.
const codecName = "ringtrain-frame"

// errorDomain and the reasons below are the ErrorInfo details of RingLink errors.
const (
	errorDomain         = "ringtrain.allreduce"
	reasonStaleGen      = "STALE_GENERATION"
	streamWindowBytes   = 16 << 20 // HTTP/2 flow-control window of a stream
	connWindowBytes     = 32 << 20 // and of a connection
	grpcIOBufferBytes   = 1 << 20  // gRPC's socket read and write buffers
	maxGRPCMessageBytes = MaxPayload + headerSize
	defaultTCPLanes     = 2
	laneTokenBytes      = 16
	maxLanes            = 16
)

func init() { encoding.RegisterCodecV2(frameCodec{}) }

// outFrame is a frame handed to gRPC's SendMsg. The codec copies it into a
// pooled buffer, so the caller's payload is free again when SendMsg returns.
type outFrame struct {
	h       Header
	payload []byte
}

// inFrame is a frame from gRPC's RecvMsg: the codec keeps a reference to the
// received buffers, which the receiver reads the payload from and then frees.
type inFrame struct{ data mem.BufferSlice }

type frameCodec struct{}

func (frameCodec) Name() string { return codecName }

func (frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *outFrame:
		pool := mem.DefaultBufferPool()
		n := headerSize + len(m.payload)
		buf := pool.Get(n)
		h := m.h
		h.Len = uint32(len(m.payload))
		h.encode((*buf)[:headerSize])
		copy((*buf)[headerSize:n], m.payload)
		return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
	case proto.Message:
		b, err := proto.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return nil, fmt.Errorf("%w: cannot encode %T as a ring frame", ErrProtocol, v)
}

func (frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *inFrame:
		data.Ref()
		m.data = data
		return nil
	case proto.Message:
		return proto.Unmarshal(data.Materialize(), m)
	}
	return fmt.Errorf("%w: cannot decode a ring frame into %T", ErrProtocol, v)
}

// readFrame parses a frame received as one gRPC message, checks it (wantEmpty
// for control frames), and reads its payload into the slice accept names.
func readFrame(f inFrame, wantEmpty bool, accept func(Header) ([]byte, error)) (Header, error) {
	defer f.data.Free()
	r := f.data.Reader()
	defer r.Close()
	var hb [headerSize]byte
	if n, _ := io.ReadFull(r, hb[:]); n < headerSize {
		return Header{}, fmt.Errorf("%w: message of %d bytes is shorter than a frame header", ErrProtocol, f.data.Len())
	}
	h, err := decodeHeader(hb[:])
	if err != nil {
		return Header{}, err
	}
	if got := f.data.Len() - headerSize; got != int(h.Len) {
		return h, fmt.Errorf("%w: header says %d payload bytes, message has %d", ErrProtocol, h.Len, got)
	}
	if wantEmpty && h.Len != 0 {
		return h, fmt.Errorf("%w: control frame with %d payload bytes", ErrProtocol, h.Len)
	}
	if accept == nil {
		return h, nil
	}
	dst, err := accept(h)
	if err != nil {
		return h, err
	}
	if len(dst) != int(h.Len) {
		return h, fmt.Errorf("%w: accept gave %d bytes for a %d-byte payload", ErrProtocol, len(dst), h.Len)
	}
	io.ReadFull(r, dst) // cannot come short: the length was checked
	return h, nil
}

// ServerOptions returns the gRPC server options a peer server that hosts a
// Service should be built with: message and flow-control limits sized for
// multi-megabyte frames. They matter only when frames travel on the gRPC
// stream (LinkOptions.Lanes < 0) and are harmless otherwise.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxGRPCMessageBytes),
		grpc.InitialWindowSize(streamWindowBytes),
		grpc.InitialConnWindowSize(connWindowBytes),
		grpc.ReadBufferSize(grpcIOBufferBytes),
		grpc.WriteBufferSize(grpcIOBufferBytes),
	}
}

// ServiceOptions configures a Service.
type ServiceOptions struct {
	// DataAddress is the host:port the TCP lanes of incoming links connect to
	// ("host:0" picks a free port). Empty means the local address of each
	// link's gRPC connection, on a free port.
	DataAddress string
	// NoLanes refuses TCP lanes: data frames of incoming links stay on their
	// gRPC streams.
	NoLanes bool
	// Member is this member's id. When set, links meant for another member
	// (a left neighbour dialling a stale address) are refused at once.
	Member string
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
}

// Service is the server half of the gRPC transport. A worker registers it on
// its peer gRPC server (Register); incoming links from left neighbours wait in
// it until Connect, called for the same generation, takes them. It is safe for
// concurrent use.
type Service struct {
	opts ServiceOptions
	log  *slog.Logger

	mu        sync.Mutex
	newest    uint64                       // newest generation Connect was called for
	slots     map[linkKey]chan *serverLink // links that arrived, by key, until taken
	links     map[*serverLink]struct{}     // every link whose handler is running
	tokens    map[string]*serverLink       // links waiting for their TCP lanes
	listeners map[string]net.Listener      // TCP lane listeners, by host
	closed    bool
	wg        sync.WaitGroup // lane accept loops and handshakes
}

type linkKey struct {
	gen      uint64
	from, to string
}

// NewService returns a Service with no links.
func NewService(opts ServiceOptions) *Service {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{
		opts:      opts,
		log:       log,
		slots:     map[linkKey]chan *serverLink{},
		links:     map[*serverLink]struct{}{},
		tokens:    map[string]*serverLink{},
		listeners: map[string]net.Listener{},
	}
}

// Register adds the RingLink service to a gRPC server.
func (s *Service) Register(reg grpc.ServiceRegistrar) {
	ringv1.RegisterRingLinkServer(reg, linkServer{s: s})
}

// Close ends every link the service holds (their transports fail with
// ErrPeerLost) and closes its TCP listeners. Later links are refused.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for l := range s.links {
		l.end(status.Error(codes.Unavailable, "ring service closed"))
	}
	for _, lis := range s.listeners {
		lis.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// serverLink is the callee's end of one link: the gRPC stream from the left
// neighbour and, when granted, its TCP lanes.
type serverLink struct {
	key    linkKey
	stream grpc.ServerStream
	lanes  []net.Conn // filled by the lane handshakes
	token  string
	ready  chan struct{} // closed when every lane has arrived
	nReady int
	// welcomed is closed once the welcome is sent: until then the handler owns
	// the stream's sending side, and nothing else may be sent before it.
	welcomed chan struct{}

	once    sync.Once
	done    chan struct{} // closed to end the handler, and so the stream
	endErr  error
	stopped chan struct{} // closed when the handler has returned
}

// end makes the link's handler return err, which ends the stream.
func (l *serverLink) end(err error) {
	l.once.Do(func() {
		l.endErr = err
		close(l.done)
	})
}

type linkServer struct {
	ringv1.UnimplementedRingLinkServer
	s *Service
}

func staleStatus(msg string) error {
	st := status.New(codes.FailedPrecondition, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Domain: errorDomain, Reason: reasonStaleGen}); err == nil {
		st = d
	}
	return st.Err()
}

// Open serves one link: it checks the hello, grants TCP lanes if asked,
// parks the link until Connect takes it, and holds the stream open until the
// link ends.
func (ls linkServer) Open(stream ringv1.RingLink_OpenServer) error {
	s := ls.s
	ctx := stream.Context()
	if md, _ := metadata.FromIncomingContext(ctx); !strings.HasSuffix(strings.Join(md.Get("content-type"), ","), "+"+codecName) {
		return status.Errorf(codes.InvalidArgument, "RingLink streams need the content subtype %q", codecName)
	}
	hello := new(ringv1.RingHello)
	if err := stream.RecvMsg(hello); err != nil {
		return err
	}
	if hello.Protocol != linkProtocol || hello.From == "" || hello.To == "" || hello.Lanes > maxLanes {
		return status.Errorf(codes.InvalidArgument, "bad hello: protocol %d (want %d), from %q, to %q, %d lanes (at most %d)",
			hello.Protocol, linkProtocol, hello.From, hello.To, hello.Lanes, maxLanes)
	}
	if s.opts.Member != "" && hello.To != s.opts.Member {
		return status.Errorf(codes.NotFound, "this is member %q, not %q", s.opts.Member, hello.To)
	}
	l := &serverLink{
		key:      linkKey{gen: hello.Generation, from: hello.From, to: hello.To},
		stream:   stream,
		ready:    make(chan struct{}),
		welcomed: make(chan struct{}),
		done:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	defer close(l.stopped)
	welcome := &ringv1.RingWelcome{}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return status.Error(codes.Unavailable, "ring service closed")
	case hello.Generation < s.newest:
		s.mu.Unlock()
		return staleStatus(fmt.Sprintf("link of generation %d from %q: this member is at generation %d", hello.Generation, hello.From, s.newest))
	}
	slot := s.slot(l.key)
	select {
	case slot <- l:
	default:
		s.mu.Unlock()
		return status.Errorf(codes.AlreadyExists, "a link of generation %d from %q is already open", hello.Generation, hello.From)
	}
	s.links[l] = struct{}{}
	if hello.Lanes > 0 && !s.opts.NoLanes {
		if addr, err := s.laneAddress(ctx); err != nil {
			s.log.Warn("no TCP lanes for a ring link; frames stay on the gRPC stream", "from", hello.From, "err", err)
		} else {
			tok := make([]byte, laneTokenBytes)
			rand.Read(tok)
			l.token = string(tok)
			l.lanes = make([]net.Conn, hello.Lanes)
			s.tokens[l.token] = l
			welcome = &ringv1.RingWelcome{DataAddress: addr, Token: tok, Lanes: hello.Lanes}
		}
	}
	if len(l.lanes) == 0 {
		close(l.ready)
	}
	s.mu.Unlock()
	defer s.forget(l)

	if err := stream.SendMsg(welcome); err != nil {
		l.end(err)
		return err
	}
	close(l.welcomed)
	select {
	case <-l.done:
		return l.endErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// slot returns the channel through which the link with key reaches Connect.
// s.mu must be held.
func (s *Service) slot(key linkKey) chan *serverLink {
	c, ok := s.slots[key]
	if !ok {
		c = make(chan *serverLink, 1)
		s.slots[key] = c
	}
	return c
}

// forget drops every reference to a link whose handler is returning, and
// closes its lanes.
func (s *Service) forget(l *serverLink) {
	s.mu.Lock()
	delete(s.links, l)
	if s.tokens[l.token] == l {
		delete(s.tokens, l.token)
	}
	if c, ok := s.slots[l.key]; ok {
		select {
		case x := <-c:
			if x != l {
				c <- x
			} else {
				delete(s.slots, l.key)
			}
		default:
		}
	}
	lanes := append([]net.Conn(nil), l.lanes...)
	s.mu.Unlock()
	for _, c := range lanes {
		if c != nil {
			c.Close()
		}
	}
}

// noteGeneration records that this member has reached gen and refuses links
// of older generations, waiting or arriving.
func (s *Service) noteGeneration(gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen <= s.newest {
		return
	}
	s.newest = gen
	for key, c := range s.slots {
		if key.gen >= gen {
			continue
		}
		select {
		case l := <-c:
			l.end(staleStatus(fmt.Sprintf("link of generation %d from %q: this member moved to generation %d", key.gen, key.from, gen)))
		default:
		}
		delete(s.slots, key)
	}
}

// take waits for the link of key and its lanes.
func (s *Service) take(ctx context.Context, key linkKey) (*serverLink, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("ring service: %w", ErrClosed)
	}
	slot := s.slot(key)
	s.mu.Unlock()
	var l *serverLink
	select {
	case l = <-slot:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the link from left neighbour %q: %w", key.from, context.Cause(ctx))
	}
	s.mu.Lock()
	if s.slots[key] == slot {
		delete(s.slots, key)
	}
	s.mu.Unlock()
	// The handler publishes the link before it sends the welcome: wait for both
	// the lanes and the welcome, so that no frame overtakes the welcome.
	for _, ch := range []chan struct{}{l.ready, l.welcomed} {
		select {
		case <-ch:
		case <-l.done:
			return nil, fmt.Errorf("%w: link from left neighbour %q ended before it was ready", ErrPeerLost, key.from)
		case <-ctx.Done():
			l.end(status.Error(codes.DeadlineExceeded, "TCP lanes did not arrive in time"))
			return nil, fmt.Errorf("waiting for the TCP lanes of left neighbour %q: %w", key.from, context.Cause(ctx))
		}
	}
	return l, nil
}

// laneAddress returns the address TCP lanes of a link on ctx's connection
// connect to, starting a listener if needed. s.mu must be held.
func (s *Service) laneAddress(ctx context.Context) (string, error) {
	addr := s.opts.DataAddress
	if addr == "" {
		p, ok := peer.FromContext(ctx)
		if !ok || p.LocalAddr == nil {
			return "", errors.New("the gRPC connection has no local address")
		}
		tcp, ok := p.LocalAddr.(*net.TCPAddr)
		if !ok {
			return "", fmt.Errorf("the gRPC connection is not TCP (%s)", p.LocalAddr.Network())
		}
		addr = net.JoinHostPort(tcp.IP.String(), "0")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if lis, ok := s.listeners[host]; ok {
		return lis.Addr().String(), nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	s.listeners[host] = lis
	s.wg.Add(1)
	go s.acceptLanes(lis)
	return lis.Addr().String(), nil
}

// acceptLanes accepts TCP lanes until the listener is closed.
func (s *Service) acceptLanes(lis net.Listener) {
	defer s.wg.Done()
	for {
		c, err := lis.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Warn("ring lane listener failed", "addr", lis.Addr().String(), "err", err)
			}
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.attachLane(c); err != nil {
				s.log.Warn("refused a TCP lane", "remote", c.RemoteAddr().String(), "err", err)
				c.Close()
			}
		}()
	}
}

// attachLane reads a new lane's token and lane number and gives the
// connection to its link.
func (s *Service) attachLane(c net.Conn) error {
	var hs [laneTokenBytes + 1]byte
	c.SetReadDeadline(deadlineIn(laneHandshakeTimeout))
	if _, err := io.ReadFull(c, hs[:]); err != nil {
		return fmt.Errorf("reading the lane handshake: %w", err)
	}
	c.SetReadDeadline(noDeadline)
	tuneLane(c)
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.tokens[string(hs[:laneTokenBytes])]
	lane := int(hs[laneTokenBytes])
	if !ok || s.closed {
		return errors.New("unknown link token")
	}
	if lane >= len(l.lanes) || l.lanes[lane] != nil {
		return fmt.Errorf("lane %d of %d is not expected", lane, len(l.lanes))
	}
	l.lanes[lane] = c
	l.nReady++
	if l.nReady == len(l.lanes) {
		delete(s.tokens, l.token)
		close(l.ready)
	}
	return nil
}

// LinkOptions configures how Connect builds a rank's links.
type LinkOptions struct {
	// Resolve returns the gRPC address of a member's peer server. It is
	// called when the link is dialled, so addresses may change between
	// generations. Required for rings of more than one member.
	Resolve func(ctx context.Context, member string) (string, error)
	// Lanes is the number of dedicated TCP connections that carry the data
	// frames of the link to the right neighbour: 0 means two, a negative
	// number keeps them on the gRPC stream. The right neighbour may refuse
	// lanes, and then frames stay on the stream.
	Lanes int
	// DialOptions are added after the defaults (insecure credentials, large
	// windows and message limits) when dialling the right neighbour.
	DialOptions []grpc.DialOption
}

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
	s.noteGeneration(cfg.Generation)

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

func (t *GRPCTransport) dial(ctx context.Context, gen uint64, self, right string, opts LinkOptions) error {
	addr, err := opts.Resolve(ctx, right)
	if err != nil {
		return fmt.Errorf("resolving right neighbour %s: %w", t.right, err)
	}
	dopts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// No service config from DNS TXT records (see coordinator.Client).
		grpc.WithDisableServiceConfig(),
		grpc.WithInitialWindowSize(streamWindowBytes),
		grpc.WithInitialConnWindowSize(connWindowBytes),
		grpc.WithReadBufferSize(grpcIOBufferBytes),
		grpc.WithWriteBufferSize(grpcIOBufferBytes),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxGRPCMessageBytes), grpc.MaxCallSendMsgSize(maxGRPCMessageBytes)),
	}, opts.DialOptions...)
	cc, err := grpc.NewClient(addr, dopts...)
	if err != nil {
		return fmt.Errorf("%w: dialling right neighbour %s at %s: %w", ErrPeerLost, t.right, addr, err)
	}
	t.cc = cc
	sctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	stop := context.AfterFunc(ctx, cancel) // ctx bounds the set-up only
	defer stop()
	out, err := cc.NewStream(sctx, &ringv1.RingLink_ServiceDesc.Streams[0], ringv1.RingLink_Open_FullMethodName,
		grpc.CallContentSubtype(codecName), grpc.WaitForReady(true))
	if err != nil {
		return t.linkErr(ctx, addr, err)
	}
	t.out = out
	lanes := opts.Lanes
	if lanes == 0 {
		lanes = defaultTCPLanes
	}
	lanes = min(max(lanes, 0), maxLanes)
	if err := out.SendMsg(&ringv1.RingHello{Protocol: linkProtocol, Generation: gen, From: self, To: right, Lanes: uint32(lanes)}); err != nil {
		return t.linkErr(ctx, addr, err)
	}
	welcome := new(ringv1.RingWelcome)
	if err := out.RecvMsg(welcome); err != nil {
		return t.linkErr(ctx, addr, err)
	}
	if welcome.Lanes == 0 {
		return nil
	}
	if int(welcome.Lanes) != lanes || len(welcome.Token) != laneTokenBytes {
		return fmt.Errorf("%w: right neighbour %s granted %d lanes with a %d-byte token, asked for %d",
			ErrProtocol, t.right, welcome.Lanes, len(welcome.Token), lanes)
	}
	// Lanes connect to the host we reached, at the port the welcome names.
	dataAddr := welcome.DataAddress
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if _, port, err := net.SplitHostPort(welcome.DataAddress); err == nil && unspecifiedHost(welcome.DataAddress) {
			dataAddr = net.JoinHostPort(host, port)
		}
	}
	conns := make([]net.Conn, 0, lanes)
	var d net.Dialer
	for i := range lanes {
		c, err := d.DialContext(ctx, "tcp", dataAddr)
		if err == nil {
			hs := append(append([]byte(nil), welcome.Token...), byte(i))
			_, err = c.Write(hs)
			if err != nil {
				c.Close()
			}
		}
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return fmt.Errorf("%w: opening TCP lane %d to right neighbour %s at %s: %w", ErrPeerLost, i, t.right, dataAddr, err)
		}
		tuneLane(c)
		conns = append(conns, c)
	}
	t.outLanes = newLaneWriter(conns)
	return nil
}

// unspecifiedHost reports whether a lane address names no particular host.
func unspecifiedHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "" || (ip != nil && ip.IsUnspecified())
}

// linkErr turns an error of setting up the link to the right neighbour into
// this package's kinds.
func (t *GRPCTransport) linkErr(ctx context.Context, addr string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("opening the link to right neighbour %s at %s: %w", t.right, addr, context.Cause(ctx))
	}
	if st, ok := status.FromError(err); ok {
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == errorDomain && info.Reason == reasonStaleGen {
				return fmt.Errorf("%w: right neighbour %s at %s: %s", ErrStaleGeneration, t.right, addr, st.Message())
			}
		}
		switch st.Code() {
		case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.Unimplemented:
			return fmt.Errorf("%w: right neighbour %s at %s refused the link: %w", ErrProtocol, t.right, addr, err)
		}
	}
	return fmt.Errorf("%w: link to right neighbour %s at %s: %w", ErrPeerLost, t.right, addr, err)
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
