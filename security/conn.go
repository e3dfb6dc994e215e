package security

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"
)

// HandshakeTimeout is how long a peer has to complete a TLS handshake on any
// ringtrain port: a client that connects and sends nothing is dropped then.
const HandshakeTimeout = 10 * time.Second

// Handshake runs the TLS handshake of c within timeout (and ctx) and returns
// the peer's identity.
func Handshake(ctx context.Context, c *tls.Conn, timeout time.Duration) (Identity, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		return Identity{}, fmt.Errorf("TLS handshake with %s: %w", c.RemoteAddr(), err)
	}
	return PeerIdentity(c.ConnectionState())
}

// DialConn wraps a connection the caller dialled in TLS as a client and
// completes the handshake within timeout; it closes raw on failure.
func DialConn(ctx context.Context, raw net.Conn, cfg *tls.Config, timeout time.Duration) (*tls.Conn, Identity, error) {
	c := tls.Client(raw, cfg)
	who, err := Handshake(ctx, c, timeout)
	if err != nil {
		raw.Close()
		return nil, Identity{}, err
	}
	return c, who, nil
}

// LazyServerConn wraps an accepted connection in TLS as a server. The handshake
// runs on the first Read or Write (on the goroutine that serves the
// connection, not the accept loop), within timeout; the connection fails if it
// does not complete.
func LazyServerConn(raw net.Conn, cfg *tls.Config, timeout time.Duration) net.Conn {
	return &lazyConn{Conn: tls.Server(raw, cfg), timeout: timeout}
}

type lazyConn struct {
	*tls.Conn
	timeout time.Duration
	once    sync.Once
	err     error
}

func (c *lazyConn) handshake() error {
	c.once.Do(func() {
		_, c.err = Handshake(context.Background(), c.Conn, c.timeout)
	})
	return c.err
}

func (c *lazyConn) Read(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *lazyConn) Write(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}
