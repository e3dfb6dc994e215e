package security

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"

	"google.golang.org/grpc/credentials"
)

// Expect is what a client requires of the server it dials: one of Roles and,
// when ID is set, that id (a ring neighbour, who must be the plan member the
// client meant to reach).
type Expect struct {
	Roles []Role
	ID    string
}

func (e Expect) check(who Identity) error {
	if !slices.Contains(e.Roles, who.Role) {
		return fmt.Errorf("%w: peer %s is not a %v", ErrDenied, who, e.Roles)
	}
	if e.ID != "" && who.ID != e.ID {
		return fmt.Errorf("%w: peer is %s, want id %q", ErrDenied, who, e.ID)
	}
	return nil
}

// ServerConfig returns the TLS 1.3 configuration of a server that accepts only
// clients whose certificate chains to the current CA bundle and names one of
// roles. The server's own certificate and the bundle are the Store's current
// ones at each handshake. protos are the ALPN protocols ("h2" for gRPC; nil for
// raw connections).
func (s *Store) ServerConfig(roles []Role, protos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: protos,
		// The chain is verified below against the bundle current at this
		// handshake, which a static ClientCAs pool could not follow.
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return &s.current().cert, nil
		},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			who, err := verifyChain(s.current().pool, raw, x509.ExtKeyUsageClientAuth)
			if err != nil {
				return err
			}
			return Expect{Roles: roles}.check(who)
		},
	}
}

// ClientConfig returns the TLS 1.3 configuration of a client that presents the
// Store's current certificate and accepts a server whose certificate chains to
// the current bundle and matches want. Host names are not checked: peers are
// authenticated by their identity, which want names.
func (s *Store) ClientConfig(want Expect, protos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: protos,
		// Verified below, by identity, against the current bundle.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &s.current().cert, nil
		},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			who, err := verifyChain(s.current().pool, raw, x509.ExtKeyUsageServerAuth)
			if err != nil {
				return err
			}
			return want.check(who)
		},
	}
}

// ServerCredentials returns gRPC server credentials over ServerConfig.
func (s *Store) ServerCredentials(roles []Role) credentials.TransportCredentials {
	return credentials.NewTLS(s.ServerConfig(roles, "h2"))
}

// ClientCredentials returns gRPC client credentials over ClientConfig.
func (s *Store) ClientCredentials(want Expect) credentials.TransportCredentials {
	return credentials.NewTLS(s.ClientConfig(want, "h2"))
}

// verifyChain verifies a peer's certificate chain (leaf first) against pool for
// usage and returns the leaf's identity.
func verifyChain(pool *x509.CertPool, raw [][]byte, usage x509.ExtKeyUsage) (Identity, error) {
	if len(raw) == 0 {
		return Identity{}, fmt.Errorf("%w: the peer sent no certificate", ErrNoIdentity)
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return Identity{}, fmt.Errorf("%w: %w", ErrUntrusted, err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
	return IdentityOf(certs[0])
}

// PeerIdentity returns the identity of the verified certificate of a TLS
// connection's peer.
func PeerIdentity(cs tls.ConnectionState) (Identity, error) {
	if len(cs.PeerCertificates) == 0 {
		return Identity{}, fmt.Errorf("%w: the connection has no peer certificate", ErrNoIdentity)
	}
	return IdentityOf(cs.PeerCertificates[0])
}
