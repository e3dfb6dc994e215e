package security

import (
	"context"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// FromContext returns the identity of the peer of a gRPC call, from the
// certificate it proved in the TLS handshake.
func FromContext(ctx context.Context) (Identity, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Identity{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return Identity{}, false
	}
	who, err := PeerIdentity(info.State)
	return who, err == nil
}

// fieldOf reads a string field of a request by its protobuf name.
func fieldOf(req any) Claimed {
	return func(name string) (string, bool) {
		m, ok := req.(proto.Message)
		if !ok {
			return "", false
		}
		r := m.ProtoReflect()
		fd := r.Descriptor().Fields().ByName(protoreflect.Name(name))
		if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() {
			return "", false
		}
		return r.Get(fd).String(), true
	}
}

// authorize is the check of both interceptors: PermissionDenied for a caller
// the policy refuses, Unauthenticated for one without a certificate identity.
func authorize(ctx context.Context, p Policy, method string, req any, log *slog.Logger) error {
	who, ok := FromContext(ctx)
	if !ok {
		return status.Errorf(codes.Unauthenticated, "%s needs a client certificate with a ringtrain identity", method)
	}
	if err := p.Decide(method, who, fieldOf(req)); err != nil {
		log.Warn("call refused", "method", method, "peer", who.String(), "err", err)
		return status.Error(codes.PermissionDenied, err.Error())
	}
	return nil
}

// UnaryServerInterceptor enforces p on unary calls. log receives one line per
// refusal; nil discards them.
func UnaryServerInterceptor(p Policy, log *slog.Logger) grpc.UnaryServerInterceptor {
	log = orDiscard(log)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := authorize(ctx, p, info.FullMethod, req, log); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor enforces p on streaming calls. A rule that checks a
// request field is applied to the stream's first message, before the handler
// sees it; a rule without one is applied when the stream opens.
func StreamServerInterceptor(p Policy, log *slog.Logger) grpc.StreamServerInterceptor {
	log = orDiscard(log)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		// Check the role now, with no field to claim: rules that need a field
		// are checked again on the first message.
		who, ok := FromContext(ss.Context())
		if !ok {
			return status.Errorf(codes.Unauthenticated, "%s needs a client certificate with a ringtrain identity", info.FullMethod)
		}
		rule := p[info.FullMethod]
		if field, ok := rule[who.Role]; !ok || field == "" {
			if err := authorize(ss.Context(), p, info.FullMethod, nil, log); err != nil {
				return err
			}
			return handler(srv, ss)
		}
		return handler(srv, &checkedStream{ServerStream: ss, p: p, method: info.FullMethod, log: log})
	}
}

// checkedStream applies the policy to the first message received.
type checkedStream struct {
	grpc.ServerStream
	p       Policy
	method  string
	log     *slog.Logger
	checked bool
}

func (s *checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if !s.checked {
		s.checked = true
		return authorize(s.Context(), s.p, s.method, m, s.log)
	}
	return nil
}

func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}
