package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/security"
)

// AllReduceRank is one rank process of AllReduce, called by the helper process a
// Spawner starts, with that process's stdin and stdout. It serves the ring's peer
// service on 127.0.0.1, reports its address on stdout, reads every rank's address
// from stdin (one JSON array line), links into the ring as workers do, runs o's
// all-reduces and reports each size's mean time on stdout, then waits for stdin to
// close (or ctx to end) before it returns. A failure is reported on stdout too, and
// returned.
func AllReduceRank(ctx context.Context, o AllReduceOptions, rank int, stdin io.Reader, stdout io.Writer, log *slog.Logger) error {
	enc := json.NewEncoder(stdout)
	err := allReduceRank(ctx, o, rank, stdin, enc, log)
	if err != nil {
		enc.Encode(helperMsg{Error: err.Error()})
	}
	return err
}

func allReduceRank(ctx context.Context, o AllReduceOptions, rank int, stdin io.Reader, enc *json.Encoder, log *slog.Logger) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if rank < 0 || rank >= o.World {
		return fmt.Errorf("%w: rank %d: want 0..%d", ErrBadOptions, rank, o.World-1)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := bufio.NewReader(stdin)
	host := o.Host
	if host == "" {
		host = "127.0.0.1"
	}
	lis, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return err
	}
	var creds *security.Store
	sopts := allreduce.ServerOptions()
	if o.TLSDir != "" {
		if creds, err = security.LoadDir(filepath.Join(o.TLSDir, rankName(rank)), log); err != nil {
			return err
		}
		sopts = allreduce.SecureServerOptions(creds, log)
	}
	svc := allreduce.NewService(allreduce.ServiceOptions{Member: rankName(rank), Logger: log, TLS: creds})
	defer svc.Close()
	srv := grpc.NewServer(sopts...)
	svc.Register(srv)
	go srv.Serve(lis)
	defer srv.Stop()
	if err := enc.Encode(helperMsg{Addr: lis.Addr().String()}); err != nil {
		return err
	}
	line, err := in.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("reading the member addresses: %w", err)
	}
	var addrs []string
	if err := json.Unmarshal(line, &addrs); err != nil || len(addrs) != o.World {
		return fmt.Errorf("bad member addresses %q", line)
	}
	go func() { // the parent closing stdin (or dying) ends this process's work
		io.Copy(io.Discard, in)
		cancel()
	}()
	members := make([]string, o.World)
	for i := range members {
		members[i] = rankName(i)
	}
	cfg := allreduce.Config{Generation: 1, Members: members, Rank: rank, SegmentBytes: o.Segment, Logger: log}
	if o.Compression == "bf16" {
		cfg.Compression = allreduce.CompressBF16
	}
	cctx, ccancel := context.WithTimeout(ctx, time.Minute)
	defer ccancel()
	t, err := svc.Connect(cctx, cfg, allreduce.LinkOptions{
		Lanes: o.Lanes,
		TLS:   creds,
		Resolve: func(_ context.Context, m string) (string, error) {
			i, err := strconv.Atoi(strings.TrimPrefix(m, "rank"))
			if err != nil || i < 0 || i >= len(addrs) {
				return "", fmt.Errorf("unknown member %q", m)
			}
			return addrs[i], nil
		},
	})
	if err != nil {
		return err
	}
	lanes := 0
	if gt, ok := t.(*allreduce.GRPCTransport); ok {
		lanes, _ = gt.Lanes()
	}
	ring, err := allreduce.NewRing(cfg, t)
	if err != nil {
		return err
	}
	defer ring.Close()
	for _, size := range o.Sizes {
		buf := make([]float32, size/4)
		for i := range buf {
			buf[i] = float32(rank + 1)
		}
		for i := range o.Warmup {
			if err := ring.AllReduce(ctx, buf); err != nil {
				return err
			}
			if i == 0 {
				if err := checkSum(buf, o.World); err != nil {
					return err
				}
			}
		}
		if err := ring.Barrier(ctx); err != nil {
			return err
		}
		var msg helperMsg
		if o.Exact {
			msg, err = timeBoth(ctx, ring, buf, rank, o)
		} else {
			msg, err = timeFloat(ctx, ring, buf, o)
		}
		if err != nil {
			return err
		}
		msg.Bytes, msg.Lanes = size, lanes
		if err := enc.Encode(msg); err != nil {
			return err
		}
	}
	// Leave together, so no rank closes its links while another still reduces.
	if err := ring.Barrier(ctx); err != nil {
		return err
	}
	if err := enc.Encode(helperMsg{Done: true}); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// timeFloat times o.Iters float32 all-reduces of buf, back to back.
func timeFloat(ctx context.Context, ring *allreduce.Ring, buf []float32, o AllReduceOptions) (helperMsg, error) {
	began := time.Now()
	for range o.Iters {
		if err := ring.AllReduce(ctx, buf); err != nil {
			return helperMsg{}, err
		}
	}
	return helperMsg{Seconds: time.Since(began).Seconds() / float64(o.Iters)}, nil
}

// timeBoth times o.Iters float32 all-reduces of buf and as many int64
// all-reduces of len(buf) elements, alternating one of each, after checking the
// integer sum once.
func timeBoth(ctx context.Context, ring *allreduce.Ring, buf []float32, rank int, o AllReduceOptions) (helperMsg, error) {
	ints := make([]int64, len(buf))
	for i := range ints {
		ints[i] = int64(rank + 1)
	}
	if err := ring.AllReduceInt64(ctx, ints); err != nil {
		return helperMsg{}, err
	}
	want := int64(o.World * (o.World + 1) / 2)
	for i, v := range ints {
		if v != want {
			return helperMsg{}, fmt.Errorf("int64 all-reduce result element %d is %d, want %d", i, v, want)
		}
	}
	clear(ints) // zeros stay zeros: repeated sums cannot overflow
	var f, n time.Duration
	for range o.Iters {
		t0 := time.Now()
		if err := ring.AllReduce(ctx, buf); err != nil {
			return helperMsg{}, err
		}
		t1 := time.Now()
		if err := ring.AllReduceInt64(ctx, ints); err != nil {
			return helperMsg{}, err
		}
		f, n = f+t1.Sub(t0), n+time.Since(t1)
	}
	return helperMsg{Seconds: f.Seconds() / float64(o.Iters), Seconds64: n.Seconds() / float64(o.Iters)}, nil
}

// checkSum checks the first all-reduce of buffers filled with rank+1.
func checkSum(buf []float32, world int) error {
	want := float32(world * (world + 1) / 2)
	for i, v := range buf {
		if v != want {
			return fmt.Errorf("all-reduce result element %d is %v, want %v", i, v, want)
		}
	}
	return nil
}
