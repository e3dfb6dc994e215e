package netlab

import (
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseLink(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want Link
		err  bool
	}{
		{"", Link{}, false},
		{"rate=1gbit,delay=0.5ms", Link{Rate: 1e9, Delay: 500 * time.Microsecond}, false},
		{"rate=50mbit, loss=0.1%", Link{Rate: 50e6, Loss: 0.1}, false},
		{"rate=100kbit,delay=2ms,jitter=100us,loss=1", Link{Rate: 1e5, Delay: 2 * time.Millisecond, Jitter: 100 * time.Microsecond, Loss: 1}, false},
		{"rate=10GBit", Link{Rate: 10e9}, false},
		{"rate=fast", Link{}, true},
		{"rate=0mbit", Link{}, true},
		{"delay=-1ms", Link{}, true},
		{"loss=101", Link{}, true},
		{"jitter=1ms", Link{}, true},
		{"mtu=9000", Link{}, true},
		{"rate", Link{}, true},
	} {
		got, err := ParseLink(tc.spec)
		if tc.err {
			if !errors.Is(err, ErrBadLink) {
				t.Errorf("ParseLink(%q) = %v, %v; want ErrBadLink", tc.spec, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseLink(%q) = %+v, %v; want %+v", tc.spec, got, err, tc.want)
			continue
		}
		if back, err := ParseLink(got.String()); tc.spec != "" && (err != nil || back != got) {
			t.Errorf("ParseLink(%q.String() = %q) = %+v, %v", tc.spec, got.String(), back, err)
		}
	}
}

// newLab makes a lab whose removal is checked when the test ends, failed or not.
func newLab(t *testing.T, o Options) *Lab {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err)
	}
	lab, err := New(context.Background(), o)
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		checkGone(t, lab.Tag())
	})
	return lab
}

// checkGone fails the test when a namespace, link or iptables rule named with tag
// is still there.
func checkGone(t *testing.T, tag string) {
	t.Helper()
	for _, c := range [][]string{{"ip", "netns", "list"}, {"ip", "-o", "link", "show"}, {"iptables", "-S", "FORWARD"}} {
		out, err := exec.Command(c[0], c[1:]...).CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v: %s", strings.Join(c, " "), err, out)
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, tag) {
				t.Errorf("left behind after Close (%s): %s", strings.Join(c, " "), line)
			}
		}
	}
}

// TestLabShaping builds a three-host lab (a and b in one zone, c in another
// behind a 20 Mbit/s trunk) and checks that the links' rates take effect: 5 MB to b
// over its 50 Mbit/s link, and 2 MB to c over the trunk, each take the time the
// rate implies (0.8 s).
func TestLabShaping(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lab := newLab(t, Options{Trunk: Link{Rate: 20e6}})
	a, err := lab.AddHost(ctx, "a", "z1", Link{Rate: 1e9})
	if err != nil {
		t.Fatal(err)
	}
	b, err := lab.AddHost(ctx, "b", "z1", Link{Rate: 50e6})
	if err != nil {
		t.Fatal(err)
	}
	c, err := lab.AddHost(ctx, "c", "z2", Link{})
	if err != nil {
		t.Fatal(err)
	}
	// The root namespace reaches the hosts.
	lis := listen(t, c)
	defer lis.Close()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", lis.Addr().String())
	if err != nil {
		t.Fatalf("from the root namespace (%s) to c: %v", lab.RootIP(), err)
	}
	conn.Close()
	for _, tc := range []struct {
		to   *Host
		n    int
		rate float64
	}{{b, 5_000_000, 50e6}, {c, 2_000_000, 20e6}} {
		want := time.Duration(float64(tc.n*8) / tc.rate * float64(time.Second))
		got := transfer(ctx, t, a, tc.to, tc.n)
		t.Logf("%d bytes a -> %s at %.0f Mbit/s: %v (the rate implies %v)", tc.n, tc.to.Name, tc.rate/1e6, got, want)
		// Faster than the rate means the shaping is missing (unshaped, it takes
		// milliseconds); a loaded machine may make it slower, so the upper bound only
		// catches a link gone badly wrong.
		if got < want*85/100 || got > want*250/100 {
			t.Errorf("transfer to %s took %v, want %v within -15%%/+150%%", tc.to.Name, got, want)
		}
	}
}

// TestLabDelay checks that delays take effect: a round trip from a to c carries
// a's, c's and the trunk's delays. It needs the kernel's sch_netem.
func TestLabDelay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lab := newLab(t, Options{Trunk: Link{Delay: 5 * time.Millisecond}})
	a, err := lab.AddHost(ctx, "a", "z1", Link{Delay: 2 * time.Millisecond})
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	b, err := lab.AddHost(ctx, "b", "z1", Link{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := lab.AddHost(ctx, "c", "z2", Link{Delay: 3 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// a -> c crosses a's delay (2 ms) and the trunk's (5 ms); c -> a crosses c's (3
	// ms) and the trunk's: a TCP handshake takes one round trip of 15 ms.
	rtt := handshake(ctx, t, a, c)
	t.Logf("round trip a <-> c: %v (want 15ms)", rtt)
	if rtt < 14*time.Millisecond || rtt > 40*time.Millisecond {
		t.Errorf("round trip a <-> c %v, want 15ms (at most 40ms on a loaded machine)", rtt)
	}
	// Within a zone, b without delay: a round trip a <-> b is a's 2 ms.
	if rtt := handshake(ctx, t, a, b); rtt < 2*time.Millisecond || rtt > 25*time.Millisecond {
		t.Errorf("round trip a <-> b %v, want 2ms", rtt)
	}
}

// listen opens a listener in host h.
func listen(t *testing.T, h *Host) net.Listener {
	t.Helper()
	var lis net.Listener
	if err := h.Do(func() (err error) {
		lis, err = net.Listen("tcp", h.IP+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return lis
}

// dial connects from host from to addr.
func dial(ctx context.Context, t *testing.T, from *Host, addr string) net.Conn {
	t.Helper()
	var conn net.Conn
	if err := from.Do(func() (err error) {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return conn
}

// transfer sends n bytes from host from to host to and returns the time from the
// first byte received to the last.
func transfer(ctx context.Context, t *testing.T, from, to *Host, n int) time.Duration {
	t.Helper()
	lis := listen(t, to)
	defer lis.Close()
	type result struct {
		d   time.Duration
		err error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := lis.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer conn.Close()
		first := make([]byte, 1)
		if _, err := io.ReadFull(conn, first); err != nil {
			done <- result{err: err}
			return
		}
		began := time.Now()
		got, err := io.Copy(io.Discard, conn)
		if err == nil && got != int64(n-1) {
			err = io.ErrUnexpectedEOF
		}
		done <- result{time.Since(began), err}
	}()
	conn := dial(ctx, t, from, lis.Addr().String())
	if _, err := conn.Write(make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.d
	case <-ctx.Done():
		t.Fatal(ctx.Err())
		return 0
	}
}

// handshake returns the shortest of a few TCP connects from a to b: one round trip.
func handshake(ctx context.Context, t *testing.T, a, b *Host) time.Duration {
	t.Helper()
	lis := listen(t, b)
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	best := time.Hour
	for range 5 {
		began := time.Now()
		conn := dial(ctx, t, a, lis.Addr().String())
		best = min(best, time.Since(began))
		conn.Close()
	}
	return best
}

// TestLabCloseAfterFailure makes AddHost fail half-way (a link of the name it
// wants already exists) and checks that Close still removes everything.
func TestLabCloseAfterFailure(t *testing.T) {
	ctx := context.Background()
	lab := newLab(t, Options{})
	if _, err := lab.AddHost(ctx, "a", "", Link{Rate: 1e9}); err != nil {
		t.Fatal(err)
	}
	squat := lab.Tag() + "h1"
	if out, err := exec.Command("ip", "link", "add", squat, "type", "veth", "peer", "name", lab.Tag()+"x1").CombinedOutput(); err != nil {
		t.Fatalf("cannot make a veth: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", squat).Run() }) // runs before the lab's check
	if _, err := lab.AddHost(ctx, "b", "", Link{}); err == nil {
		t.Fatal("AddHost with its veth name taken succeeded")
	} else {
		t.Logf("AddHost failed as it should: %v", err)
	}
	if _, err := lab.AddHost(ctx, "c", "z2", Link{}); err != nil {
		t.Fatal(err)
	}
	if err := lab.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.AddHost(ctx, "d", "", Link{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("AddHost after Close: %v, want ErrClosed", err)
	}
}
