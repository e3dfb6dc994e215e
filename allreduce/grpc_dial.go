package allreduce

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	ringv1 "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/security"
)

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
	// TLS, when set, makes the link and its lanes mutual TLS with this
	// certificate, to a right neighbour that proves a worker certificate of the
	// member it is meant to be. A TLS link always carries its frames on lanes.
	TLS *security.Store
}

// dial opens the link to the right neighbour: it resolves its address, opens
// the RingLink stream, sends the hello, reads the welcome and connects the TCP
// lanes it grants. ctx bounds the set-up only, not the link. Connect calls it
// on a goroutine of its own before the transport is shared.
func (t *GRPCTransport) dial(ctx context.Context, gen uint64, self, right string, opts LinkOptions) error {
	addr, err := opts.Resolve(ctx, right)
	if err != nil {
		return fmt.Errorf("resolving right neighbour %s: %w", t.right, err)
	}
	creds, maxRecv := grpc.WithTransportCredentials(insecure.NewCredentials()), maxGRPCMessageBytes
	neighbour := security.Expect{Roles: []security.Role{security.RoleWorker}, ID: right}
	if opts.TLS != nil {
		// Frames travel on TLS lanes: the stream carries the welcome and heartbeats.
		creds, maxRecv = grpc.WithTransportCredentials(opts.TLS.ClientCredentials(neighbour)), maxControlMessageBytes
	}
	dopts := append([]grpc.DialOption{
		creds,
		// No service config from DNS TXT records (see coordinator.Client).
		grpc.WithDisableServiceConfig(),
		grpc.WithInitialWindowSize(streamWindowBytes),
		grpc.WithInitialConnWindowSize(connWindowBytes),
		grpc.WithReadBufferSize(grpcIOBufferBytes),
		grpc.WithWriteBufferSize(grpcIOBufferBytes),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecv), grpc.MaxCallSendMsgSize(maxGRPCMessageBytes)),
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
	if opts.TLS != nil && lanes == 0 {
		return fmt.Errorf("%w: a TLS link needs TCP lanes (LinkOptions.Lanes %d)", ErrBadConfig, opts.Lanes)
	}
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
			tuneLane(c)
			if opts.TLS != nil {
				bc := newBatchedConn(c)
				if c, _, err = security.DialConn(ctx, bc, opts.TLS.ClientConfig(neighbour), laneHandshakeTimeout); err == nil {
					bc.batching = true
				}
			}
		}
		if err == nil {
			hs := append(append([]byte(nil), welcome.Token...), byte(i))
			if _, err = c.Write(hs); err == nil {
				err = flushLane(c)
			}
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
		case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.Unimplemented, codes.PermissionDenied, codes.ResourceExhausted:
			return fmt.Errorf("%w: right neighbour %s at %s refused the link: %w", ErrProtocol, t.right, addr, err)
		}
	}
	return fmt.Errorf("%w: link to right neighbour %s at %s: %w", ErrPeerLost, t.right, addr, err)
}
