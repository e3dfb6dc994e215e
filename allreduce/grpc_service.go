package allreduce

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ringv1 "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/security"
)

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

// Limits of a peer server that serves TLS: frames travel on TLS lanes, so every
// message of the gRPC stream is a hello, a welcome, a heartbeat or a health
// check, and nothing larger is read from anyone; links, lanes and streams are
// capped per peer.
const (
	maxControlMessageBytes = 64 << 10
	maxStreamsPerConn      = 16
	maxLinksPerPeer        = 4            // open links from one member, all generations
	maxPendingLanesPerHost = 2 * maxLanes // lane connections of one host still in their handshake
)

// SecureServerOptions returns the gRPC server options of a peer server that
// serves TLS with st: mutual TLS with certificates of the cluster's CA, a
// handshake deadline, small message limits, a cap on streams per connection, and
// the authorization of every call by PeerPolicy.
func SecureServerOptions(st *security.Store, log *slog.Logger) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.Creds(st.ServerCredentials(security.AnyMember)),
		grpc.ConnectionTimeout(security.HandshakeTimeout),
		grpc.MaxRecvMsgSize(maxControlMessageBytes),
		grpc.MaxConcurrentStreams(maxStreamsPerConn),
		grpc.ChainUnaryInterceptor(security.UnaryServerInterceptor(PeerPolicy(), log)),
		grpc.ChainStreamInterceptor(security.StreamServerInterceptor(PeerPolicy(), log)),
	}
}

// PeerPolicy is who may call what on a worker's peer server: RingLink by
// workers only (which worker may open which link is checked by the link's
// handler against the plan), the health service by any member (a probe, a
// container health check with the pod's own certificate, an operator).
func PeerPolicy() security.Policy {
	return security.Policy{
		ringv1.RingLink_Open_FullMethodName: {security.RoleWorker: ""},
		"/grpc.health.v1.Health/Check":      security.Anyone(),
		"/grpc.health.v1.Health/Watch":      security.Anyone(),
		"/grpc.health.v1.Health/List":       security.Anyone(),
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
	// TLS, when set, makes the service accept only links whose hello comes from
	// the worker its certificate names, and only TLS lanes from that worker; the
	// gRPC server must then be built with SecureServerOptions.
	TLS *security.Store
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
	members   map[string]bool              // the members of generation newest
	pending   map[string]int               // lane connections in their handshake, by remote host
	slots     map[linkKey]chan *serverLink // links that arrived, by key, until taken
	links     map[*serverLink]struct{}     // every link whose handler is running
	tokens    map[string]*serverLink       // links waiting for their TCP lanes
	listeners map[string]net.Listener      // TCP lane listeners, by host
	closed    bool
	wg        sync.WaitGroup // lane accept loops and handshakes
}

// linkKey names a link: its generation and the members at its two ends.
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
		pending:   map[string]int{},
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
			closeLane(c)
		}
	}
}

// noteGeneration records that this member has reached gen, whose members are
// members, and refuses links of older generations, waiting or arriving, and
// links of gen from anyone not a member.
func (s *Service) noteGeneration(gen uint64, members []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen < s.newest {
		return
	}
	s.members = map[string]bool{}
	for _, m := range members {
		s.members[m] = true
	}
	if gen == s.newest {
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
