package allreduce

import (
	"crypto/rand"
	"fmt"
	"net"
	"strings"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	ringv1 "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/security"
)

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

// linksFrom counts the open links whose hello came from member. s.mu must be held.
func (s *Service) linksFrom(member string) int {
	n := 0
	for l := range s.links {
		if l.key.from == member {
			n++
		}
	}
	return n
}

// linkServer is the RingLink gRPC service of a Service: gRPC runs Open on a
// goroutine of its own for every link a left neighbour opens.
type linkServer struct {
	ringv1.UnimplementedRingLinkServer
	s *Service
}

// staleStatus is the gRPC status of a refused link of an older generation:
// FailedPrecondition with an ErrorInfo detail that the dialler turns into
// ErrStaleGeneration.
func staleStatus(msg string) error {
	st := status.New(codes.FailedPrecondition, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Domain: errorDomain, Reason: reasonStaleGen}); err == nil {
		st = d
	}
	return st.Err()
}

// checkHello checks a link's hello against this member (member "" accepts any
// addressee); its error is the gRPC status the link is refused with.
func checkHello(hello *ringv1.RingHello, member string) error {
	if hello.Protocol != linkProtocol || hello.From == "" || hello.To == "" || hello.Lanes > maxLanes {
		return status.Errorf(codes.InvalidArgument, "bad hello: protocol %d (want %d), from %q, to %q, %d lanes (at most %d)",
			hello.Protocol, linkProtocol, hello.From, hello.To, hello.Lanes, maxLanes)
	}
	if member != "" && hello.To != member {
		return status.Errorf(codes.NotFound, "this is member %q, not %q", member, hello.To)
	}
	return nil
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
	if err := checkHello(hello, s.opts.Member); err != nil {
		return err
	}
	if s.opts.TLS != nil {
		// The peer is the worker its certificate names, whatever the hello says.
		who, ok := security.FromContext(ctx)
		if !ok || who.Role != security.RoleWorker || who.ID != hello.From {
			s.log.Warn("refused a ring link from another identity than it claims", "from", hello.From, "peer", who.String())
			return status.Errorf(codes.PermissionDenied, "a link from %q needs the certificate of worker %q, the peer is %s", hello.From, hello.From, who)
		}
		if hello.Lanes == 0 || s.opts.NoLanes {
			return status.Errorf(codes.InvalidArgument, "a TLS ring link carries its frames on TLS lanes: the hello asks for %d", hello.Lanes)
		}
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
	case s.members != nil && hello.Generation == s.newest && !s.members[hello.From]:
		s.mu.Unlock()
		return status.Errorf(codes.PermissionDenied, "%q is not a member of generation %d", hello.From, hello.Generation)
	case s.linksFrom(hello.From) >= maxLinksPerPeer:
		s.mu.Unlock()
		return status.Errorf(codes.ResourceExhausted, "%q already has %d ring links open here", hello.From, maxLinksPerPeer)
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
		if addr, err := s.laneAddress(ctx); err != nil && s.opts.TLS != nil {
			s.mu.Unlock()
			return status.Errorf(codes.Unavailable, "no TCP lanes for a TLS ring link: %v", err)
		} else if err != nil {
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
