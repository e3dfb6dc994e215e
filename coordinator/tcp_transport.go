package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringtrain/ringtrain/security"
)

// tcpStreamLayer is raft's stream layer over plain TCP. It differs from raft's own
// TCPStreamLayer in two ways:
//
//   - The advertised address is a string (host:port) rather than a resolved IP, so the
//     Raft configuration can hold DNS names (a Kubernetes headless service's
//     ringtrain-coordinator-0.ringtrain-coordinator:7000); every Dial resolves the
//     name again, so a replica that comes back with a new IP is reached at it.
//   - Tests can cut links (linkFaults): a cut target cannot be dialled and its open
//     connections fail, which is how the harness partitions replicas.
//
// With TLS, every connection is mutual TLS 1.3 and both ends must hold a
// coordinator certificate of the cluster's CA: a worker, an admin or a stranger
// cannot speak Raft. An accepted connection's handshake runs on raft's handler
// goroutine within security.HandshakeTimeout, never in the accept loop.
//
// It also closes every connection it made or accepted when it is closed: raft's
// NetworkTransport closes only its listener, which would leave the handlers of
// inbound connections (and the pooled outbound connections) of a stopped replica
// running.
type tcpStreamLayer struct {
	ln        net.Listener
	advertise string
	faults    *linkFaults     // nil: no fault injection
	tls       *security.Store // nil: plain TCP

	mu     sync.Mutex
	closed bool
	conns  map[*trackedConn]bool
}

// stringAddr is a net.Addr that is just a host:port string.
type stringAddr string

func (a stringAddr) Network() string { return "tcp" }
func (a stringAddr) String() string  { return string(a) }

func newTCPStreamLayer(ln net.Listener, advertise string, faults *linkFaults, tls *security.Store) (*tcpStreamLayer, error) {
	if advertise == "" {
		advertise = ln.Addr().String()
	}
	host, port, err := net.SplitHostPort(advertise)
	if err != nil {
		return nil, fmt.Errorf("coordinator: raft advertise address %q: %w", advertise, err)
	}
	if host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified() || port == "0" {
		return nil, fmt.Errorf("coordinator: raft advertise address %q: %w", advertise, errNotAdvertisable)
	}
	return &tcpStreamLayer{ln: ln, advertise: advertise, faults: faults, tls: tls, conns: map[*trackedConn]bool{}}, nil
}

var errNotAdvertisable = errors.New("not an address other replicas can dial (give --raft-advertise or a host in --peers)")

// Dial implements raft.StreamLayer; the address is resolved now.
func (t *tcpStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	target := string(address)
	if t.faults.isCut(target) {
		return nil, fmt.Errorf("coordinator: dial %s: link cut", target)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, err
	}
	if t.faults != nil {
		c = t.faults.track(target, c)
	}
	tc, err := t.track(c)
	if err != nil || t.tls == nil {
		return tc, err
	}
	conn, _, err := security.DialConn(ctx, tc, t.tls.ClientConfig(raftPeers), timeout)
	if err != nil {
		return nil, fmt.Errorf("coordinator: raft dial %s: %w", target, err)
	}
	return conn, nil
}

// raftPeers is who may be at the other end of a Raft connection.
var raftPeers = security.Expect{Roles: []security.Role{security.RoleCoordinator}}

// Accept implements net.Listener.
func (t *tcpStreamLayer) Accept() (net.Conn, error) {
	c, err := t.ln.Accept()
	if err != nil {
		return nil, err
	}
	tc, err := t.track(c)
	if err != nil || t.tls == nil {
		return tc, err
	}
	return security.LazyServerConn(tc, t.tls.ServerConfig(raftPeers.Roles), security.HandshakeTimeout), nil
}

func (t *tcpStreamLayer) track(c net.Conn) (net.Conn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, t: t}
	t.conns[tc] = true
	return tc, nil
}

// Close implements net.Listener: it closes the listener and every connection.
func (t *tcpStreamLayer) Close() error {
	t.mu.Lock()
	t.closed = true
	conns := make([]*trackedConn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	err := t.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	return err
}

// Addr implements net.Listener: the advertised address.
func (t *tcpStreamLayer) Addr() net.Addr { return stringAddr(t.advertise) }

// trackedConn removes itself from its stream layer when closed.
type trackedConn struct {
	net.Conn
	t    *tcpStreamLayer
	once sync.Once
	err  error
}

// Read reports io.EOF once the stream layer is closed, so that raft's connection
// handlers end quietly at shutdown instead of logging an error per connection.
func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.t.mu.Lock()
		closed := c.t.closed
		c.t.mu.Unlock()
		if closed {
			err = io.EOF
		}
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.t.mu.Lock()
		delete(c.t.conns, c)
		c.t.mu.Unlock()
		c.err = c.Conn.Close()
	})
	return c.err
}

// peerAddresses is a raft.ServerAddressProvider over the static peer list: a replica
// named there is dialled at the configured host:port (resolved at dial time) even
// when the Raft configuration recorded another address for it. Unknown ids fall back
// to the configuration's address.
type peerAddresses map[raft.ServerID]raft.ServerAddress

func (p peerAddresses) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	if a, ok := p[id]; ok {
		return a, nil
	}
	return "", fmt.Errorf("coordinator: no static address for replica %q", id)
}

// linkFaults is the set of outgoing links a test has cut on one replica, and the
// connections it must break when a link is cut. Methods on a nil *linkFaults report
// nothing cut.
type linkFaults struct {
	mu    sync.Mutex
	cut   map[string]bool
	conns map[string]map[*faultConn]bool
}

func newLinkFaults() *linkFaults {
	return &linkFaults{cut: map[string]bool{}, conns: map[string]map[*faultConn]bool{}}
}

func (f *linkFaults) isCut(target string) bool {
	if f == nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cut[target]
}

// setCut cuts (or heals) the link to target, closing its open connections on a cut.
func (f *linkFaults) setCut(target string, cut bool) {
	f.mu.Lock()
	var doomed []*faultConn
	if cut {
		f.cut[target] = true
		for c := range f.conns[target] {
			doomed = append(doomed, c)
		}
	} else {
		delete(f.cut, target)
	}
	f.mu.Unlock()
	for _, c := range doomed {
		c.Close()
	}
}

func (f *linkFaults) healAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.cut)
}

func (f *linkFaults) track(target string, c net.Conn) net.Conn {
	fc := &faultConn{Conn: c, target: target, f: f}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conns[target] == nil {
		f.conns[target] = map[*faultConn]bool{}
	}
	f.conns[target][fc] = true
	return fc
}

// faultConn fails once its link is cut.
type faultConn struct {
	net.Conn
	target string
	f      *linkFaults
}

func (c *faultConn) Read(p []byte) (int, error) {
	if c.f.isCut(c.target) {
		c.Close()
		return 0, net.ErrClosed
	}
	return c.Conn.Read(p)
}

func (c *faultConn) Write(p []byte) (int, error) {
	if c.f.isCut(c.target) {
		c.Close()
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

func (c *faultConn) Close() error {
	c.f.mu.Lock()
	delete(c.f.conns[c.target], c)
	c.f.mu.Unlock()
	return c.Conn.Close()
}
