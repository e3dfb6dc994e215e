package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// TCPEndOptions configure one end of AllReduce's raw TCP measurement.
type TCPEndOptions struct {
	Listen  bool    // accept the connection(s) on 127.0.0.1 (and receive, one way)
	Connect string  // otherwise, connect to this address (and send, one way)
	Msg     int     // bytes per write and per read
	Seconds float64 // how long the sender sends
	Duplex  bool    // send and receive at once on both ends
	Host    string  // the address the listening end listens on; "" is 127.0.0.1
}

// tcpBandwidth streams msg-byte writes between two helper processes over one
// loopback TCP connection for about secs seconds, one way or both ways at once, and
// returns the bandwidth of one direction in GB/s.
func tcpBandwidth(ctx context.Context, sp Spawner, msg int, secs float64, duplex bool) (float64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o := TCPEndOptions{Listen: true, Msg: msg, Seconds: secs, Duplex: duplex}
	server, err := startHelper(sp.TCPEnd(ctx, o))
	if err != nil {
		return 0, err
	}
	defer server.stop()
	var m helperMsg
	if err := server.next(&m); err != nil || m.Addr == "" {
		return 0, fmt.Errorf("tcp bench: no address: %v %s", err, m.Error)
	}
	o.Listen, o.Connect = false, m.Addr
	client, err := startHelper(sp.TCPEnd(ctx, o))
	if err != nil {
		return 0, err
	}
	defer client.stop()
	var a, b helperMsg
	if err := client.next(&a); err != nil || a.Error != "" {
		return 0, fmt.Errorf("tcp bench: %v %s", err, a.Error)
	}
	if err := server.next(&b); err != nil || b.Error != "" {
		return 0, fmt.Errorf("tcp bench: %v %s", err, b.Error)
	}
	// Each receiving side reports the bytes it received and the time it
	// took; both ways at once, the two directions are averaged.
	bw := float64(b.Bytes) / b.Seconds
	if duplex {
		bw = (bw + float64(a.Bytes)/a.Seconds) / 2
	}
	return bw / 1e9, nil
}

// TCPEnd is one end of the raw TCP measurement, called by the helper process a
// Spawner starts, with that process's stdin and stdout. The connecting end sends on
// one connection and, with Duplex, receives on a second one, as a ring rank sends to
// one neighbour while it receives from the other. A sender writes Msg-byte buffers
// for Seconds then half-closes; a receiver reads until EOF and reports on stdout the
// bytes and the time from the first byte to the last. The listening end first
// reports its address. Closing stdin (or ctx ending) stops it. A failure is reported
// on stdout too, and returned.
func TCPEnd(ctx context.Context, o TCPEndOptions, stdin io.Reader, stdout io.Writer) error {
	enc := json.NewEncoder(stdout)
	err := tcpEnd(ctx, o, stdin, enc)
	if err != nil {
		enc.Encode(helperMsg{Error: err.Error()})
	}
	return err
}

func tcpEnd(ctx context.Context, o TCPEndOptions, stdin io.Reader, enc *json.Encoder) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // the parent closing stdin (or dying) ends this process
		io.Copy(io.Discard, stdin)
		cancel()
	}()
	conns := 1
	if o.Duplex {
		conns = 2
	}
	// The connecting end sends on connection 'A' and receives on 'B'.
	var sendConn, recvConn *net.TCPConn
	if o.Listen {
		host := o.Host
		if host == "" {
			host = "127.0.0.1"
		}
		lis, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return err
		}
		defer lis.Close()
		if err := enc.Encode(helperMsg{Addr: lis.Addr().String()}); err != nil {
			return err
		}
		stop := context.AfterFunc(ctx, func() { lis.Close() })
		defer stop()
		for range conns {
			c, err := lis.Accept()
			if err != nil {
				return err
			}
			defer c.Close()
			var tag [1]byte
			if _, err := io.ReadFull(c, tag[:]); err != nil {
				return err
			}
			if tag[0] == 'A' {
				recvConn = c.(*net.TCPConn)
			} else {
				sendConn = c.(*net.TCPConn)
			}
		}
	} else {
		var d net.Dialer
		for i := range conns {
			c, err := d.DialContext(ctx, "tcp", o.Connect)
			if err != nil {
				return err
			}
			defer c.Close()
			if _, err := c.Write([]byte{"AB"[i]}); err != nil {
				return err
			}
			if i == 0 {
				sendConn = c.(*net.TCPConn)
			} else {
				recvConn = c.(*net.TCPConn)
			}
		}
	}
	stop := context.AfterFunc(ctx, func() {
		for _, c := range []*net.TCPConn{sendConn, recvConn} {
			if c != nil {
				c.Close()
			}
		}
	})
	defer stop()
	var sendErr error
	var wg sync.WaitGroup
	if sendConn != nil {
		wg.Go(func() {
			buf := make([]byte, o.Msg)
			end := time.Now().Add(time.Duration(o.Seconds * float64(time.Second)))
			for time.Now().Before(end) {
				if _, sendErr = sendConn.Write(buf); sendErr != nil {
					return
				}
			}
			sendErr = sendConn.CloseWrite()
		})
	}
	var got int
	var took time.Duration
	var recvErr error
	if recvConn != nil {
		buf := make([]byte, o.Msg)
		var first time.Time
		for {
			n, err := recvConn.Read(buf)
			if n > 0 && got == 0 {
				first = time.Now()
			}
			got += n
			if err == io.EOF {
				took = time.Since(first)
				break
			}
			if err != nil {
				recvErr = err
				break
			}
		}
	}
	wg.Wait()
	if err := errors.Join(sendErr, recvErr); err != nil {
		return err
	}
	if recvConn == nil {
		// Wait for the receiver to finish and close its end; report nothing.
		io.Copy(io.Discard, sendConn)
		return enc.Encode(helperMsg{Seconds: 1})
	}
	return enc.Encode(helperMsg{Bytes: got, Seconds: took.Seconds()})
}
