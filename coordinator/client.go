package coordinator

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/security"
)

// ClientOptions configures a Client. Zero values pick the defaults shown.
type ClientOptions struct {
	// Logger receives retry and reconnect messages at debug level; default slog.Default().
	Logger *slog.Logger
	// AttemptTimeout bounds one attempt at one replica (default 3 s), so that a
	// replica that hangs (a partitioned old leader) costs one timeout, not the call.
	AttemptTimeout time.Duration
	// MinBackoff and MaxBackoff bound the exponential backoff between rounds of
	// attempts (defaults 25 ms and 1 s); each wait is jittered to [d/2, d).
	MinBackoff, MaxBackoff time.Duration
	// ClientID names this client in request ids; default: 128 random bits in hex.
	// Two clients must never share one.
	ClientID string
	// DialOptions are added to the client's gRPC dial options (default: insecure
	// transport credentials, or TLS's).
	DialOptions []grpc.DialOption
	// TLS, when set, makes every connection mutual TLS with this certificate, to
	// replicas that prove a coordinator certificate of its CA.
	TLS *security.Store
}

// coordinatorPeer is what a client requires of the server it reaches.
var coordinatorPeer = security.Expect{Roles: []security.Role{security.RoleCoordinator}}

// transportCredentials returns TLS credentials for tls, insecure ones for nil.
func transportCredentials(tls *security.Store) grpc.DialOption {
	if tls == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	return grpc.WithTransportCredentials(tls.ClientCredentials(coordinatorPeer))
}

// Client talks to a coordinator cluster. It keeps one gRPC connection per replica,
// sends each call to the replica it believes leads, follows leader hints, and retries
// on another replica with exponential backoff and jitter until the call's context
// ends. Every write carries a request id that stays the same across the retries of one
// call, so a write whose answer was lost is applied once. Methods are safe for
// concurrent use; a Client must be closed.
type Client struct {
	opts     ClientOptions
	log      *slog.Logger
	clientID string
	nextReq  atomic.Uint64

	mu     sync.Mutex
	addrs  []string
	cur    int
	conns  map[string]*grpc.ClientConn
	warned map[string]bool // replicas whose TLS handshake failure was logged
	closed bool
}

// NewClient returns a client for the coordinator replicas at addrs (gRPC host:port).
// It does not dial until the first call.
func NewClient(addrs []string, opts ClientOptions) (*Client, error) {
	var clean []string
	for _, a := range addrs {
		if a != "" && !slices.Contains(clean, a) {
			clean = append(clean, a)
		}
	}
	if len(clean) == 0 {
		return nil, fmt.Errorf("coordinator: client: no coordinator addresses")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.AttemptTimeout <= 0 {
		opts.AttemptTimeout = 3 * time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 25 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = time.Second
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.MinBackoff)
	if opts.ClientID == "" {
		var b [16]byte
		if _, err := crand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("coordinator: client id: %w", err)
		}
		opts.ClientID = hex.EncodeToString(b[:])
	}
	return &Client{opts: opts, log: opts.Logger, clientID: opts.ClientID, addrs: clean, conns: map[string]*grpc.ClientConn{}}, nil
}

// Close closes every connection. Calls in flight fail.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var errs []error
	for a, cc := range c.conns {
		if err := cc.Close(); err != nil {
			errs = append(errs, err)
		}
		delete(c.conns, a)
	}
	return errors.Join(errs...)
}

// ClientID returns the id this client puts in its request ids.
func (c *Client) ClientID() string { return c.clientID }

// NewRequestID returns a fresh request id of this client. Use it to retry one write
// yourself across calls (a write method fills in a fresh id when the request has none).
func (c *Client) NewRequestID() *pb.RequestID {
	return &pb.RequestID{ClientId: c.clientID, RequestId: c.nextReq.Add(1)}
}

// target returns the preferred replica and a connection to it.
func (c *Client) target() (string, pb.CoordinatorClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return "", nil, ErrClosed
	}
	addr := c.addrs[c.cur]
	cc, ok := c.conns[addr]
	if !ok {
		dopts := append([]grpc.DialOption{
			transportCredentials(c.opts.TLS),
			// No service config from DNS TXT records: resolvers that drop TXT queries
			// (Docker's embedded DNS on an internal network) stall every dial 10 s.
			grpc.WithDisableServiceConfig(),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
				MinConnectTimeout: time.Second,
			}),
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second}),
		}, c.opts.DialOptions...)
		var err error
		if cc, err = grpc.NewClient(addr, dopts...); err != nil {
			return "", nil, fmt.Errorf("coordinator: client: dial %s: %w", addr, err)
		}
		c.conns[addr] = cc
	}
	return addr, pb.NewCoordinatorClient(cc), nil
}

// follow makes the hinted leader the preferred replica; it reports false when the
// hint is no news (empty, or the replica that gave it).
func (c *Client) follow(from string, hint *NotLeaderError) bool {
	if hint == nil || hint.LeaderAddr == "" || hint.LeaderAddr == from {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.Index(c.addrs, hint.LeaderAddr)
	if i < 0 {
		c.addrs = append(c.addrs, hint.LeaderAddr)
		i = len(c.addrs) - 1
	}
	c.cur = i
	return true
}

// rotate moves on from a replica that failed.
func (c *Client) rotate(from string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.addrs[c.cur] == from {
		c.cur = (c.cur + 1) % len(c.addrs)
	}
}

// retryable reports whether err (already passed through fromStatus) may succeed on
// another attempt.
func retryable(err error) bool {
	if errors.Is(err, ErrNotLeader) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.Canceled, codes.ResourceExhausted:
		return true
	}
	return false
}

// do runs fn against the preferred replica until it succeeds, fails for good, or ctx
// ends. When ctx ends first, the error wraps ctx's and says what each replica tried
// last answered (attempts.summary), e.g. that its connection was refused.
func (c *Client) do(ctx context.Context, name string, fn func(ctx context.Context, cl pb.CoordinatorClient) error) error {
	wait := c.opts.MinBackoff
	hops := 0
	var tried attempts
	for {
		addr, cl, err := c.target()
		if err != nil {
			return err
		}
		actx, cancel := context.WithTimeout(ctx, c.opts.AttemptTimeout)
		err = fromStatus(fn(actx, cl))
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			tried.note(addr, err, true)
			return fmt.Errorf("coordinator: %s: %w (%s)", name, ctx.Err(), tried.summary())
		}
		tried.note(addr, err, false)
		if !retryable(err) {
			return fmt.Errorf("coordinator: %s: %w", name, err)
		}
		var hint *NotLeaderError
		errors.As(err, &hint)
		if c.follow(addr, hint) && hops < 2*len(c.addrs) {
			hops++
			c.log.Debug("following leader hint", "call", name, "from", addr, "leader", hint.LeaderAddr)
			continue
		}
		c.rotate(addr)
		hops = 0
		if c.handshakeFailed(addr, err) {
			// A certificate problem does not cure itself: say so once per replica.
			c.log.Warn("the TLS handshake with a coordinator failed; retrying", "call", name, "coordinator", addr, "err", err)
		} else {
			c.log.Debug("coordinator call failed, retrying", "call", name, "coordinator", addr, "err", err, "backoff", wait)
		}
		if serr := sleep(ctx, jitter(wait)); serr != nil {
			return fmt.Errorf("coordinator: %s: %w (%s)", name, serr, tried.summary())
		}
		wait = min(2*wait, c.opts.MaxBackoff)
	}
}

// handshakeFailed reports whether err is a failed TLS handshake with addr that
// this client has not warned about yet.
func (c *Client) handshakeFailed(addr string, err error) bool {
	if msg := err.Error(); !strings.Contains(msg, "authentication handshake failed") && !strings.Contains(msg, "remote error: tls:") {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.warned[addr] {
		return false
	}
	if c.warned == nil {
		c.warned = map[string]bool{}
	}
	c.warned[addr] = true
	return true
}

// attempts is the last error of each replica a call tried, in the order first
// tried, so that a call that runs out of time can say why each replica failed
// ("connection refused") rather than only that time ran out.
type attempts struct {
	addrs []string
	errs  map[string]error
}

// note records err as addr's last answer. An error that only says the call's own
// context ended (final) does not replace a more telling earlier one.
func (a *attempts) note(addr string, err error, final bool) {
	if a.errs == nil {
		a.errs = map[string]error{}
	}
	prev, seen := a.errs[addr]
	if !seen {
		a.addrs = append(a.addrs, addr)
	}
	if final && prev != nil && !contextOnly(prev) {
		return
	}
	a.errs[addr] = err
}

// contextOnly reports whether err says no more than that a deadline passed or a
// context was cancelled.
func contextOnly(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	switch status.Code(err) {
	case codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return false
}

// summary is "addr: error; addr: error" over the replicas tried, with gRPC's
// status errors reduced to their message; "no replica answered" when none was.
func (a *attempts) summary() string {
	if len(a.addrs) == 0 {
		return "no replica answered"
	}
	parts := make([]string, 0, len(a.addrs))
	for _, addr := range a.addrs {
		err := a.errs[addr]
		msg := err.Error()
		if st, ok := status.FromError(err); ok {
			msg = dialCause(st.Message())
		}
		if contextOnly(err) {
			msg = "no answer in time"
		}
		parts = append(parts, addr+": "+msg)
	}
	return strings.Join(parts, "; ")
}

func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Client) fillRID(rid **pb.RequestID) {
	if *rid == nil {
		*rid = c.NewRequestID()
	}
}

// Register registers (or re-registers) a worker; see coordinator.proto.
func (c *Client) Register(ctx context.Context, req *pb.RegisterRequest) (*pb.RegisterResponse, error) {
	req = proto.CloneOf(req)
	c.fillRID(&req.Rid)
	var resp *pb.RegisterResponse
	err := c.do(ctx, "register", func(ctx context.Context, cl pb.CoordinatorClient) (err error) {
		resp, err = cl.Register(ctx, req)
		return err
	})
	return resp, err
}

// Heartbeat renews a worker's lease. ErrUnknownWorker means it must register again.
func (c *Client) Heartbeat(ctx context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	var resp *pb.HeartbeatResponse
	err := c.do(ctx, "heartbeat", func(ctx context.Context, cl pb.CoordinatorClient) (err error) {
		resp, err = cl.Heartbeat(ctx, req)
		return err
	})
	return resp, err
}

// Leave removes a worker at once (graceful shutdown).
func (c *Client) Leave(ctx context.Context, req *pb.LeaveRequest) error {
	req = proto.CloneOf(req)
	c.fillRID(&req.Rid)
	return c.do(ctx, "leave", func(ctx context.Context, cl pb.CoordinatorClient) error {
		_, err := cl.Leave(ctx, req)
		return err
	})
}

// ReportPeerLost reports a member of the current generation this worker cannot
// reach; see coordinator.proto.
func (c *Client) ReportPeerLost(ctx context.Context, req *pb.ReportPeerLostRequest) error {
	return c.do(ctx, "report peer lost", func(ctx context.Context, cl pb.CoordinatorClient) error {
		_, err := cl.ReportPeerLost(ctx, req)
		return err
	})
}

// ReportProgress records a completed step.
func (c *Client) ReportProgress(ctx context.Context, req *pb.ReportProgressRequest) (*pb.ReportProgressResponse, error) {
	req = proto.CloneOf(req)
	c.fillRID(&req.Rid)
	var resp *pb.ReportProgressResponse
	err := c.do(ctx, "report progress", func(ctx context.Context, cl pb.CoordinatorClient) (err error) {
		resp, err = cl.ReportProgress(ctx, req)
		return err
	})
	return resp, err
}

// CommitCheckpoint records a durable checkpoint.
func (c *Client) CommitCheckpoint(ctx context.Context, req *pb.CommitCheckpointRequest) (*pb.CommitCheckpointResponse, error) {
	req = proto.CloneOf(req)
	c.fillRID(&req.Rid)
	var resp *pb.CommitCheckpointResponse
	err := c.do(ctx, "commit checkpoint", func(ctx context.Context, cl pb.CoordinatorClient) (err error) {
		resp, err = cl.CommitCheckpoint(ctx, req)
		return err
	})
	return resp, err
}

// SubmitJob installs the job.
func (c *Client) SubmitJob(ctx context.Context, req *pb.SubmitJobRequest) error {
	req = proto.CloneOf(req)
	c.fillRID(&req.Rid)
	return c.do(ctx, "submit job", func(ctx context.Context, cl pb.CoordinatorClient) error {
		_, err := cl.SubmitJob(ctx, req)
		return err
	})
}

// FailJob ends the running job as FAILED with the worker's reason; see
// coordinator.proto. The response carries the job's status after the report.
func (c *Client) FailJob(ctx context.Context, req *pb.FailJobRequest) (*pb.FailJobResponse, error) {
	req = proto.CloneOf(req)
	c.fillRID(&req.Rid)
	var resp *pb.FailJobResponse
	err := c.do(ctx, "fail job", func(ctx context.Context, cl pb.CoordinatorClient) (err error) {
		resp, err = cl.FailJob(ctx, req)
		return err
	})
	return resp, err
}

// Status returns the cluster's state: linearizable from the leader, or with stale
// set from whichever replica answers first.
func (c *Client) Status(ctx context.Context, stale bool) (*pb.StatusResponse, error) {
	var resp *pb.StatusResponse
	err := c.do(ctx, "status", func(ctx context.Context, cl pb.CoordinatorClient) (err error) {
		resp, err = cl.Status(ctx, &pb.StatusRequest{Stale: stale})
		return err
	})
	return resp, err
}

// AddVoter adds a coordinator replica to the Raft configuration and records its gRPC
// address.
func (c *Client) AddVoter(ctx context.Context, id, raftAddr, grpcAddr string) error {
	return c.do(ctx, "add voter", func(ctx context.Context, cl pb.CoordinatorClient) error {
		_, err := cl.AddVoter(ctx, &pb.AddVoterRequest{Id: id, RaftAddr: raftAddr, GrpcAddr: grpcAddr})
		return err
	})
}

// recordReplica records the gRPC address of a replica already in the Raft
// configuration (AddVoter with record_only).
func (c *Client) recordReplica(ctx context.Context, id, grpcAddr string) error {
	return c.do(ctx, "record replica", func(ctx context.Context, cl pb.CoordinatorClient) error {
		_, err := cl.AddVoter(ctx, &pb.AddVoterRequest{Id: id, GrpcAddr: grpcAddr, RecordOnly: true})
		return err
	})
}

// RemoveServer removes a coordinator replica from the Raft configuration.
func (c *Client) RemoveServer(ctx context.Context, id string) error {
	return c.do(ctx, "remove server", func(ctx context.Context, cl pb.CoordinatorClient) error {
		_, err := cl.RemoveServer(ctx, &pb.RemoveServerRequest{Id: id})
		return err
	})
}

// Leader asks a replica whom it believes leads (no leadership check).
func (c *Client) Leader(ctx context.Context) (*pb.LeaderResponse, error) {
	var resp *pb.LeaderResponse
	err := c.do(ctx, "leader", func(ctx context.Context, cl pb.CoordinatorClient) (err error) {
		resp, err = cl.Leader(ctx, &pb.LeaderRequest{})
		return err
	})
	return resp, err
}

// WatchPlan calls fn with every plan newer than afterGeneration, in generation order,
// from the current one on, until ctx ends (it then returns ctx's error) or fn returns
// an error (returned as is). It reconnects across leader changes and replica failures
// without delivering a generation twice. fn runs on the caller's goroutine.
func (c *Client) WatchPlan(ctx context.Context, workerID string, afterGeneration uint64, fn func(*pb.Plan) error) error {
	last := afterGeneration
	wait := c.opts.MinBackoff
	hops := 0
	for {
		addr, cl, err := c.target()
		if err != nil {
			return err
		}
		sctx, cancel := context.WithCancel(ctx)
		stream, err := cl.WatchPlan(sctx, &pb.WatchPlanRequest{WorkerId: workerID, AfterGeneration: last})
		for err == nil {
			var p *pb.Plan
			if p, err = stream.Recv(); err != nil {
				break
			}
			wait, hops = c.opts.MinBackoff, 0
			if p.GetGeneration() <= last {
				continue
			}
			last = p.GetGeneration()
			if ferr := fn(p); ferr != nil {
				cancel()
				return ferr
			}
		}
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		err = fromStatus(err)
		var hint *NotLeaderError
		if errors.As(err, &hint) && c.follow(addr, hint) && hops < 2*len(c.addrs) {
			hops++
			continue
		}
		hops = 0
		c.rotate(addr)
		c.log.Debug("plan watch interrupted, reconnecting", "coordinator", addr, "err", err, "backoff", wait)
		if err := sleep(ctx, jitter(wait)); err != nil {
			return err
		}
		wait = min(2*wait, c.opts.MaxBackoff)
	}
}

// ProbeHealth asks the standard gRPC health service at addr about the Coordinator
// service and returns its answer ("SERVING", "NOT_SERVING", ...) or "UNREACHABLE:
// <error>" when none came within ctx. tls is the prober's certificate (nil: plain
// text).
func ProbeHealth(ctx context.Context, addr string, tls *security.Store) string {
	cc, err := grpc.NewClient(addr, transportCredentials(tls), grpc.WithDisableServiceConfig())
	if err != nil {
		return "UNREACHABLE: " + err.Error()
	}
	defer cc.Close()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: pb.Coordinator_ServiceDesc.ServiceName})
	if err != nil {
		return "UNREACHABLE: " + status.Convert(err).Message()
	}
	return resp.GetStatus().String()
}

// dialCause strips gRPC's wrapping from a connection error's message, leaving the
// dialer's own ("dial tcp 10.0.0.1:7001: connect: connection refused").
func dialCause(msg string) string {
	if rest, ok := strings.CutPrefix(msg, `connection error: desc = "`); ok {
		msg = strings.TrimSuffix(rest, `"`)
		msg = strings.TrimPrefix(msg, "transport: Error while dialing: ")
		msg = strings.TrimPrefix(msg, "transport: ")
	}
	return msg
}
