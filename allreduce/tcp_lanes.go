package allreduce

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/peer"

	"github.com/ringtrain/ringtrain/security"
)

// TCP lanes carry a link's frames outside gRPC, as gloo and NCCL use their own
// sockets: a frame is written with one writev straight from the caller's
// buffer and read straight into its destination, with no HTTP/2 framing and no
// intermediate copies. A link may have several lanes; the header and the first
// part of each payload go on lane 0 and the rest of the payload is split
// evenly over the other lanes, which are written and read in parallel.

var noDeadline time.Time

func deadlineIn(d time.Duration) time.Time { return time.Now().Add(d) }

// tuneLane sets socket options of a lane.
func tuneLane(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
}

// laneIOBytes is the buffer of a TLS lane's socket writes.
const laneIOBytes = 256 << 10

// batchedConn sits between a TLS lane and its socket. TLS writes a payload as
// records of 16 KiB, each with a write of its own; batchedConn gathers the
// records of a frame into writes of laneIOBytes (flushed when the frame part is
// written). Reads go to the socket as they are: buffering them too measured no
// better (one more copy for fewer system calls). Writes go straight out until
// batching is set, after the handshake, which must not wait for a flush.
type batchedConn struct {
	net.Conn
	w        *bufio.Writer
	batching bool // set once, after the handshake, before the lane is shared
}

func newBatchedConn(c net.Conn) *batchedConn {
	return &batchedConn{Conn: c, w: bufio.NewWriterSize(c, laneIOBytes)}
}

func (c *batchedConn) Write(p []byte) (int, error) {
	if !c.batching {
		return c.Conn.Write(p)
	}
	return c.w.Write(p)
}

// flushLane sends what a TLS lane's batchedConn holds; plain lanes hold nothing.
func flushLane(c net.Conn) error {
	if tc, ok := c.(*tls.Conn); ok {
		if bc, ok := tc.NetConn().(*batchedConn); ok {
			return bc.w.Flush()
		}
	}
	return nil
}

// lanePart is the byte range of a payload of n bytes carried by lane j of
// lanes.
func lanePart(n, lanes, j int) (lo, hi int) {
	return chunkLo(n, lanes, j), chunkLo(n, lanes, j+1)
}

// laneWriter writes frames to a link's lanes. One goroutine writes at a time.
type laneWriter struct {
	conns []net.Conn
	hdr   [headerSize]byte
}

func newLaneWriter(conns []net.Conn) *laneWriter { return &laneWriter{conns: conns} }

func (w *laneWriter) write(h Header, payload []byte) error {
	h.Len = uint32(len(payload))
	h.encode(w.hdr[:])
	n, lanes := len(payload), len(w.conns)
	var wg sync.WaitGroup
	errs := make([]error, lanes)
	for j := 1; j < lanes; j++ {
		lo, hi := lanePart(n, lanes, j)
		if lo == hi {
			continue
		}
		wg.Go(func() {
			if _, errs[j] = w.conns[j].Write(payload[lo:hi]); errs[j] == nil {
				errs[j] = flushLane(w.conns[j])
			}
		})
	}
	_, hi := lanePart(n, lanes, 0)
	bufs := net.Buffers{w.hdr[:], payload[:hi]}
	if _, errs[0] = bufs.WriteTo(w.conns[0]); errs[0] == nil {
		errs[0] = flushLane(w.conns[0])
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (w *laneWriter) close() {
	for _, c := range w.conns {
		closeLane(c)
	}
}

// closeLane closes a lane at once: a TLS lane's socket is closed without the
// close_notify alert, which could wait seconds for a peer that reads no more.
func closeLane(c net.Conn) error {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn().Close()
	}
	return c.Close()
}

// laneReader reads frames from a link's lanes. One goroutine reads at a time.
//
// While a payload is read, each lane's receive low-water mark (SO_RCVLOWAT,
// where the platform has it) is raised to what is left of its part, up to
// lowWaterMax, so the kernel wakes the reader once per large piece instead of
// for every packet; this saves a good share of the receiver's CPU. The mark
// never exceeds the bytes still to come of a frame the sender has begun (and
// so will finish), and it is lowered back before a header is read.
type laneReader struct {
	conns  []net.Conn
	first  *bufio.Reader // lane 0, which carries the headers
	raised []bool        // lanes whose low-water mark is above 1
}

// Bounds of the receive low-water mark: below lowWaterMin it is left at 1.
const (
	lowWaterMin = 64 << 10
	lowWaterMax = 1 << 20
)

func newLaneReader(conns []net.Conn) *laneReader {
	return &laneReader{conns: conns, first: bufio.NewReaderSize(conns[0], 64<<10), raised: make([]bool, len(conns))}
}

// readPart reads dst from lane j, after what lane 0's buffer holds.
func (r *laneReader) readPart(j int, dst []byte) error {
	got := 0
	if j == 0 {
		for got < len(dst) && r.first.Buffered() > 0 {
			n, _ := r.first.Read(dst[got:])
			got += n
		}
	}
	for got < len(dst) {
		switch rest := len(dst) - got; {
		case rest >= lowWaterMin:
			setRecvLowWater(r.conns[j], min(rest, lowWaterMax))
			r.raised[j] = true
		case r.raised[j]:
			setRecvLowWater(r.conns[j], 1)
			r.raised[j] = false
		}
		n, err := r.conns[j].Read(dst[got:])
		got += n
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

func (r *laneReader) read(accept func(Header) ([]byte, error)) (Header, error) {
	var hb [headerSize]byte
	if r.raised[0] {
		setRecvLowWater(r.conns[0], 1)
		r.raised[0] = false
	}
	if _, err := io.ReadFull(r.first, hb[:]); err != nil {
		return Header{}, err
	}
	h, err := decodeHeader(hb[:])
	if err != nil {
		return h, err
	}
	dst, err := accept(h)
	if err != nil {
		return h, err
	}
	if len(dst) != int(h.Len) {
		return h, fmt.Errorf("%w: accept gave %d bytes for a %d-byte payload", ErrProtocol, len(dst), h.Len)
	}
	n, lanes := len(dst), len(r.conns)
	var wg sync.WaitGroup
	errs := make([]error, lanes)
	for j := 1; j < lanes; j++ {
		lo, hi := lanePart(n, lanes, j)
		if lo == hi {
			continue
		}
		wg.Go(func() { errs[j] = r.readPart(j, dst[lo:hi]) })
	}
	_, hi := lanePart(n, lanes, 0)
	errs[0] = r.readPart(0, dst[:hi])
	wg.Wait()
	return h, errors.Join(errs...)
}

func (r *laneReader) close() {
	for _, c := range r.conns {
		closeLane(c)
	}
}

// laneHandshakeTimeout bounds how long a new TCP lane may take to name its link.
const laneHandshakeTimeout = 10 * time.Second

// Lanes of a link: how many a dialler asks for by default and at most, and the
// length of the one-time token that ties a lane to its link.
const (
	defaultTCPLanes = 2
	laneTokenBytes  = 16
	maxLanes        = 16
)

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
		host := remoteHost(c)
		s.mu.Lock()
		busy := s.pending[host] >= maxPendingLanesPerHost
		if !busy {
			s.pending[host]++
		}
		s.mu.Unlock()
		if busy {
			s.log.Warn("refused a TCP lane: too many lanes of this host in their handshake", "remote", c.RemoteAddr().String(), "max", maxPendingLanesPerHost)
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			err := s.attachLane(c)
			s.mu.Lock()
			if s.pending[host]--; s.pending[host] <= 0 {
				delete(s.pending, host)
			}
			s.mu.Unlock()
			if err != nil {
				s.log.Warn("refused a TCP lane", "remote", c.RemoteAddr().String(), "err", err)
				c.Close()
			}
		}()
	}
}

// remoteHost is the host of a connection's remote address.
func remoteHost(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

// attachLane reads a new lane's token and lane number and gives the
// connection to its link. With TLS the lane first proves a worker certificate,
// which must be the link's: a token alone does not make a lane.
func (s *Service) attachLane(raw net.Conn) error {
	var hs [laneTokenBytes + 1]byte
	tuneLane(raw)
	raw.SetDeadline(deadlineIn(laneHandshakeTimeout))
	c := raw
	var who security.Identity
	if s.opts.TLS != nil {
		bc := newBatchedConn(raw)
		tc := tls.Server(bc, s.opts.TLS.ServerConfig([]security.Role{security.RoleWorker}))
		var err error
		if who, err = security.Handshake(context.Background(), tc, laneHandshakeTimeout); err != nil {
			return fmt.Errorf("lane: %w", err)
		}
		bc.batching = true
		c = tc
	}
	if _, err := io.ReadFull(c, hs[:]); err != nil {
		return fmt.Errorf("reading the lane handshake: %w", err)
	}
	raw.SetDeadline(noDeadline)
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.tokens[string(hs[:laneTokenBytes])]
	lane := int(hs[laneTokenBytes])
	if !ok || s.closed {
		return errors.New("unknown link token")
	}
	if s.opts.TLS != nil && who.ID != l.key.from {
		return fmt.Errorf("%w: a lane of the link from %q came from %s", security.ErrDenied, l.key.from, who)
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
