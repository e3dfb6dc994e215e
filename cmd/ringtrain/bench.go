package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/ringtrain/ringtrain/allreduce"
)

// newBenchCmd is `ringtrain bench`: the all-reduce benchmark (and its hidden
// per-process halves) and the compute benchmarks.
func newBenchCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure ringtrain's building blocks: all-reduce bandwidth, gemm and training speed",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newBenchAllReduceCmd(g), newBenchAllReduceRankCmd(g), newBenchTCPRankCmd(g))
	cmd.AddCommand(benchComputeCmds(g)...)
	return cmd
}

// allReduceBenchOptions are what the parent passes to every rank process.
type allReduceBenchOptions struct {
	world, iters, warmup int
	sizes                []int
	lanes, segment       int
	compression          string
	profile              string // CPU profile path prefix for the rank processes
}

func (o allReduceBenchOptions) args() []string {
	sizes := make([]string, len(o.sizes))
	for i, s := range o.sizes {
		sizes[i] = strconv.Itoa(s)
	}
	return []string{
		"--world", strconv.Itoa(o.world), "--size", strings.Join(sizes, ","),
		"--iters", strconv.Itoa(o.iters), "--warmup", strconv.Itoa(o.warmup),
		"--lanes", strconv.Itoa(o.lanes), "--segment", strconv.Itoa(o.segment),
		"--compression", o.compression,
	}
}

func (o *allReduceBenchOptions) flags(cmd *cobra.Command, sizes *string) {
	fl := cmd.Flags()
	fl.IntVar(&o.world, "world", 2, "number of ranks (processes)")
	fl.StringVar(sizes, "size", "64MiB", "message sizes in bytes, comma-separated (suffixes KiB, MiB, GiB, KB, MB, GB)")
	fl.IntVar(&o.iters, "iters", 20, "timed all-reduces per size")
	fl.IntVar(&o.warmup, "warmup", 3, "untimed all-reduces per size before timing (the first is checked)")
	fl.IntVar(&o.lanes, "lanes", 0, "TCP lanes per link (0: the default, negative: frames on the gRPC stream)")
	fl.IntVar(&o.segment, "segment", allreduce.DefaultSegmentBytes, "segment (frame payload) bytes")
	fl.StringVar(&o.compression, "compression", "none", "wire compression: none or bf16")
}

func (o *allReduceBenchOptions) validate(sizes string) error {
	var err error
	if o.sizes, err = parseSizes(sizes); err != nil {
		return err
	}
	switch {
	case o.world < 1 || o.world > 64:
		return fmt.Errorf("--world %d: want 1..64", o.world)
	case o.iters < 1 || o.warmup < 1:
		return fmt.Errorf("--iters %d, --warmup %d: want at least 1 each", o.iters, o.warmup)
	case o.compression != "none" && o.compression != "bf16":
		return fmt.Errorf("--compression %q: want none or bf16", o.compression)
	}
	return nil
}

// parseSizes parses "64MiB,1GiB,4096": byte counts, multiples of 4.
func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		num := strings.TrimRightFunc(f, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
		mult := map[string]float64{"": 1, "B": 1, "K": 1 << 10, "KiB": 1 << 10, "M": 1 << 20, "MiB": 1 << 20,
			"G": 1 << 30, "GiB": 1 << 30, "KB": 1e3, "MB": 1e6, "GB": 1e9}[f[len(num):]]
		v, err := strconv.ParseFloat(num, 64)
		if err != nil || mult == 0 || v < 0 {
			return nil, fmt.Errorf("--size %q: want a byte count such as 4096, 512KiB or 64MiB", f)
		}
		n := int(v * mult)
		if n%4 != 0 || n > 1<<34 {
			return nil, fmt.Errorf("--size %q: %d bytes is not a whole number of float32s (or is over 16 GiB)", f, n)
		}
		out = append(out, n)
	}
	return out, nil
}

// benchRow is one size's result.
type benchRow struct {
	Bytes     int     `json:"bytes"`
	Count     int     `json:"count"`
	TimeUS    float64 `json:"time_us"`
	AlgBWGBps float64 `json:"algbw_gbps"`
	BusBWGBps float64 `json:"busbw_gbps"`
}

// rankMsg is what a rank process writes on stdout, one JSON object a line.
type rankMsg struct {
	Addr    string  `json:"addr,omitempty"`
	Bytes   int     `json:"bytes,omitempty"`
	Seconds float64 `json:"seconds,omitempty"` // per all-reduce, averaged over the timed iterations
	Lanes   int     `json:"lanes,omitempty"`
	Error   string  `json:"error,omitempty"`
	Done    bool    `json:"done,omitempty"`
}

func newBenchAllReduceCmd(g *globals) *cobra.Command {
	var (
		o          allReduceBenchOptions
		sizes      string
		asJSON     bool
		noTCP      bool
		timeout    time.Duration
		tcpSeconds float64
	)
	cmd := &cobra.Command{
		Use:   "allreduce",
		Short: "Measure ring all-reduce bandwidth between processes on loopback",
		Long: `Starts --world ranks as separate processes on 127.0.0.1, each with its own gRPC peer
server, links them into a ring as workers do, and times all-reduces of float32 buffers of
each --size. It prints, as nccl-tests does, the time per all-reduce (the slowest rank's
average), the algorithm bandwidth algbw = size/time and the bus bandwidth
busbw = algbw * 2(W-1)/W, which is what each link carries and compares across world sizes.

In the same run it measures the wire's ceiling: a raw TCP stream between two processes
on loopback, one way and both ways at once (a ring sends and receives at the same time).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(sizes); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			rows, lanes, err := runAllReduceBench(ctx, g, o)
			if err != nil {
				return err
			}
			var oneWay, duplex float64
			if !noTCP {
				biggest := 0
				for _, s := range o.sizes {
					biggest = max(biggest, s)
				}
				msg := min(max(biggest, 1<<20), 64<<20)
				if oneWay, err = runTCPBench(ctx, g, msg, tcpSeconds, false); err != nil {
					return err
				}
				if duplex, err = runTCPBench(ctx, g, msg, tcpSeconds, true); err != nil {
					return err
				}
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(w).Encode(map[string]any{
					"world": o.world, "lanes": lanes, "segment_bytes": o.segment, "compression": o.compression,
					"iters": o.iters, "results": rows, "tcp_one_way_gbps": oneWay, "tcp_duplex_gbps": duplex,
				})
			}
			path := fmt.Sprintf("%d TCP lane(s)", lanes)
			if lanes == 0 {
				path = "frames on the gRPC streams"
			}
			fmt.Fprintf(w, "# ringtrain all-reduce: %d ranks as processes on 127.0.0.1, gRPC links, %s, segment %d bytes, compression %s\n",
				o.world, path, o.segment, o.compression)
			fmt.Fprintf(w, "# %12s %12s %6s %6s %12s %12s %12s\n", "size(B)", "count", "type", "iters", "time(us)", "algbw(GB/s)", "busbw(GB/s)")
			for _, r := range rows {
				fmt.Fprintf(w, "  %12d %12d %6s %6d %12.1f %12.3f %12.3f\n", r.Bytes, r.Count, "float", o.iters, r.TimeUS, r.AlgBWGBps, r.BusBWGBps)
			}
			if !noTCP {
				fmt.Fprintf(w, "# wire ceiling, raw TCP between two processes on 127.0.0.1: one way %.3f GB/s, both ways at once %.3f GB/s each way\n", oneWay, duplex)
			}
			return nil
		},
	}
	o.flags(cmd, &sizes)
	fl := cmd.Flags()
	fl.BoolVar(&asJSON, "json", false, "print one JSON object instead of the table")
	fl.BoolVar(&noTCP, "no-tcp", false, "skip the raw TCP measurement")
	fl.Float64Var(&tcpSeconds, "tcp-seconds", 1, "seconds each raw TCP measurement streams for")
	fl.DurationVar(&timeout, "timeout", 10*time.Minute, "give up (and stop every rank) after this long")
	fl.StringVar(&o.profile, "rank-cpuprofile", "", "write each rank's CPU profile to this path with .rankN appended")
	fl.MarkHidden("rank-cpuprofile")
	return cmd
}

// child is a started helper process of a benchmark.
type child struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// startChild re-executes this binary with args; stderr is shared. The child
// is killed when ctx ends, and exits by itself when its stdin is closed.
func startChild(ctx context.Context, g *globals, args ...string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, append([]string{"--log-level", g.logLevel, "--log-format", g.logFormat}, args...)...)
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 2 * time.Second
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", strings.Join(args, " "), err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	return &child{cmd: cmd, in: in, out: sc}, nil
}

// next reads the child's next message.
func (c *child) next(v any) error {
	if !c.out.Scan() {
		if err := c.out.Err(); err != nil {
			return err
		}
		return io.ErrUnexpectedEOF
	}
	return json.Unmarshal(c.out.Bytes(), v)
}

// stop closes the child's stdin and waits for it to exit.
func (c *child) stop() error {
	c.in.Close()
	return c.cmd.Wait()
}

// runAllReduceBench starts the rank processes, hands them each other's
// addresses and collects their timings.
func runAllReduceBench(ctx context.Context, g *globals, o allReduceBenchOptions) ([]benchRow, int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // kills every rank still running on any error
	ranks := make([]*child, 0, o.world)
	defer func() {
		for _, c := range ranks {
			c.in.Close()
			_ = c.cmd.Wait()
		}
	}()
	addrs := make([]string, o.world)
	for r := range o.world {
		args := append([]string{"bench", "allreduce-rank", "--rank", strconv.Itoa(r)}, o.args()...)
		if o.profile != "" {
			args = append([]string{"--cpuprofile", fmt.Sprintf("%s.rank%d", o.profile, r)}, args...)
		}
		c, err := startChild(ctx, g, args...)
		if err != nil {
			return nil, 0, err
		}
		ranks = append(ranks, c)
		var m rankMsg
		if err := c.next(&m); err != nil || m.Addr == "" {
			return nil, 0, fmt.Errorf("rank %d did not report its address: %v %s", r, err, m.Error)
		}
		addrs[r] = m.Addr
	}
	line, _ := json.Marshal(addrs)
	for _, c := range ranks {
		if _, err := fmt.Fprintf(c.in, "%s\n", line); err != nil {
			return nil, 0, err
		}
	}
	// Every rank reports each size in turn; the slowest rank's time counts.
	times := make([][]float64, o.world)
	lanes := make([]int, o.world)
	errs := make([]error, o.world)
	var wg sync.WaitGroup
	for r, c := range ranks {
		wg.Go(func() {
			for range o.sizes {
				var m rankMsg
				if err := c.next(&m); err != nil || m.Error != "" {
					errs[r] = fmt.Errorf("rank %d: %v%s", r, err, m.Error)
					cancel()
					return
				}
				times[r] = append(times[r], m.Seconds)
				lanes[r] = m.Lanes
			}
			var m rankMsg
			if err := c.next(&m); err != nil || !m.Done {
				errs[r] = fmt.Errorf("rank %d did not finish: %v%s", r, err, m.Error)
				cancel()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, 0, err
	}
	for r, c := range ranks {
		if err := c.stop(); err != nil {
			return nil, 0, fmt.Errorf("rank %d: %w", r, err)
		}
	}
	ranks = nil
	rows := make([]benchRow, len(o.sizes))
	for i, size := range o.sizes {
		t := 0.0
		for r := range o.world {
			t = max(t, times[r][i])
		}
		alg := float64(size) / t / 1e9
		rows[i] = benchRow{Bytes: size, Count: size / 4, TimeUS: t * 1e6, AlgBWGBps: alg,
			BusBWGBps: alg * 2 * float64(o.world-1) / float64(o.world)}
	}
	return rows, lanes[0], nil
}

func newBenchAllReduceRankCmd(g *globals) *cobra.Command {
	var (
		o     allReduceBenchOptions
		sizes string
		rank  int
	)
	cmd := &cobra.Command{
		Use:    "allreduce-rank",
		Short:  "One rank of `bench allreduce` (started by it)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(sizes); err != nil {
				return err
			}
			enc := json.NewEncoder(os.Stdout)
			err := benchRank(cmd.Context(), g, o, rank, enc)
			if err != nil {
				enc.Encode(rankMsg{Error: err.Error()})
			}
			return err
		},
	}
	o.flags(cmd, &sizes)
	cmd.Flags().IntVar(&rank, "rank", 0, "this process's rank")
	return cmd
}

// benchRank is one rank process: it serves, links into the ring once the
// parent sends the addresses, runs the all-reduces and reports on stdout.
// It stops when its stdin closes.
func benchRank(ctx context.Context, g *globals, o allReduceBenchOptions, rank int, enc *json.Encoder) error {
	log, err := g.logger()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stdin := bufio.NewReader(os.Stdin)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	svc := allreduce.NewService(allreduce.ServiceOptions{Member: "rank" + strconv.Itoa(rank), Logger: log})
	defer svc.Close()
	srv := grpc.NewServer(allreduce.ServerOptions()...)
	svc.Register(srv)
	go srv.Serve(lis)
	defer srv.Stop()
	if err := enc.Encode(rankMsg{Addr: lis.Addr().String()}); err != nil {
		return err
	}
	line, err := stdin.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("reading the member addresses: %w", err)
	}
	var addrs []string
	if err := json.Unmarshal(line, &addrs); err != nil || len(addrs) != o.world {
		return fmt.Errorf("bad member addresses %q", line)
	}
	go func() { // the parent closing stdin (or dying) ends this process's work
		io.Copy(io.Discard, stdin)
		cancel()
	}()
	members := make([]string, o.world)
	for i := range members {
		members[i] = "rank" + strconv.Itoa(i)
	}
	cfg := allreduce.Config{Generation: 1, Members: members, Rank: rank, SegmentBytes: o.segment, Logger: log}
	if o.compression == "bf16" {
		cfg.Compression = allreduce.CompressBF16
	}
	cctx, ccancel := context.WithTimeout(ctx, time.Minute)
	defer ccancel()
	t, err := svc.Connect(cctx, cfg, allreduce.LinkOptions{
		Lanes: o.lanes,
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
	for _, size := range o.sizes {
		buf := make([]float32, size/4)
		for i := range buf {
			buf[i] = float32(rank + 1)
		}
		for i := range o.warmup {
			if err := ring.AllReduce(ctx, buf); err != nil {
				return err
			}
			if i == 0 {
				if err := checkBenchSum(buf, o.world); err != nil {
					return err
				}
			}
		}
		if err := ring.Barrier(ctx); err != nil {
			return err
		}
		began := time.Now()
		for range o.iters {
			if err := ring.AllReduce(ctx, buf); err != nil {
				return err
			}
		}
		secs := time.Since(began).Seconds() / float64(o.iters)
		if err := enc.Encode(rankMsg{Bytes: size, Seconds: secs, Lanes: lanes}); err != nil {
			return err
		}
	}
	// Leave together, so no rank closes its links while another still reduces.
	if err := ring.Barrier(ctx); err != nil {
		return err
	}
	if err := enc.Encode(rankMsg{Done: true}); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// checkBenchSum checks the first all-reduce of buffers filled with rank+1.
func checkBenchSum(buf []float32, world int) error {
	want := float32(world * (world + 1) / 2)
	for i, v := range buf {
		if v != want {
			return fmt.Errorf("all-reduce result element %d is %v, want %v", i, v, want)
		}
	}
	return nil
}

// runTCPBench streams msg-byte writes between two processes over one
// loopback TCP connection for about secs seconds, one way or both ways at
// once, and returns the bandwidth of one direction in GB/s.
func runTCPBench(ctx context.Context, g *globals, msg int, secs float64, duplex bool) (float64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	mode := []string{"--msg", strconv.Itoa(msg), "--seconds", strconv.FormatFloat(secs, 'g', -1, 64)}
	if duplex {
		mode = append(mode, "--duplex")
	}
	server, err := startChild(ctx, g, append([]string{"bench", "tcp-rank", "--listen"}, mode...)...)
	if err != nil {
		return 0, err
	}
	defer server.stop()
	var m rankMsg
	if err := server.next(&m); err != nil || m.Addr == "" {
		return 0, fmt.Errorf("tcp bench: no address: %v %s", err, m.Error)
	}
	client, err := startChild(ctx, g, append([]string{"bench", "tcp-rank", "--connect", m.Addr}, mode...)...)
	if err != nil {
		return 0, err
	}
	defer client.stop()
	var a, b rankMsg
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

func newBenchTCPRankCmd(*globals) *cobra.Command {
	var (
		listen, duplex bool
		connect        string
		msg            int
		secs           float64
	)
	cmd := &cobra.Command{
		Use:    "tcp-rank",
		Short:  "One end of `bench allreduce`'s raw TCP measurement (started by it)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			enc := json.NewEncoder(os.Stdout)
			err := tcpRank(cmd.Context(), listen, connect, msg, secs, duplex, enc)
			if err != nil {
				enc.Encode(rankMsg{Error: err.Error()})
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&listen, "listen", false, "accept the connection (and receive, one way)")
	fl.StringVar(&connect, "connect", "", "connect to this address (and send, one way)")
	fl.IntVar(&msg, "msg", 64<<20, "bytes per write")
	fl.Float64Var(&secs, "seconds", 1, "seconds to send for")
	fl.BoolVar(&duplex, "duplex", false, "send and receive at once on both ends")
	return cmd
}

// tcpRank is one end of the raw TCP measurement. The connecting end sends on
// one connection and, with duplex, receives on a second one, as a ring rank
// sends to one neighbour while it receives from the other. A sender writes
// msg-byte buffers for secs seconds then half-closes; a receiver reads until
// EOF and reports the bytes and the time from the first byte to the last.
func tcpRank(ctx context.Context, listen bool, connect string, msg int, secs float64, duplex bool, enc *json.Encoder) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // the parent closing stdin (or dying) ends this process
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	conns := 1
	if duplex {
		conns = 2
	}
	// The connecting end sends on connection 'A' and receives on 'B'.
	var sendConn, recvConn *net.TCPConn
	if listen {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer lis.Close()
		if err := enc.Encode(rankMsg{Addr: lis.Addr().String()}); err != nil {
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
			c, err := d.DialContext(ctx, "tcp", connect)
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
			buf := make([]byte, msg)
			end := time.Now().Add(time.Duration(secs * float64(time.Second)))
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
		buf := make([]byte, msg)
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
		return enc.Encode(rankMsg{Seconds: 1})
	}
	return enc.Encode(rankMsg{Bytes: got, Seconds: took.Seconds()})
}
