package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/security"
)

// AllReduceOptions configure AllReduce and each of its rank processes.
type AllReduceOptions struct {
	World       int    // ranks, each a process: 1..64
	Sizes       []int  // message sizes in bytes, each a multiple of 4 and at most 16 GiB
	Iters       int    // timed all-reduces per size (>= 1)
	Warmup      int    // untimed all-reduces per size before timing (>= 1); the first is checked
	Lanes       int    // TCP lanes per link: 0 the default, negative frames on the gRPC stream
	Segment     int    // segment (frame payload) bytes; 0 allreduce's default
	Compression string // wire compression: "none" or "bf16"
	// TLS runs the ring over mutual TLS 1.3 (links and lanes), as a cluster with
	// certificates does: AllReduce makes a CA and a worker certificate per rank in
	// a temporary directory, which it passes to the ranks as TLSDir (rankN/ holds
	// rank N's ca.crt, tls.crt and tls.key) and removes at the end.
	TLS    bool
	TLSDir string
	// Exact also times, for each size, an integer all-reduce of as many int64s
	// (exact mode's gradients: twice the bytes), alternating one float32 and one
	// int64 operation so that both see the same load.
	Exact bool
	// Host is the address a rank serves on: "" is 127.0.0.1. A network lab's
	// spawner (LabSpawner) sets each rank's own.
	Host string
}

// Validate checks the options and names the first bad field.
func (o AllReduceOptions) Validate() error {
	switch {
	case o.World < 1 || o.World > 64:
		return fmt.Errorf("%w: World %d: want 1..64", ErrBadOptions, o.World)
	case len(o.Sizes) == 0:
		return fmt.Errorf("%w: Sizes: want at least one", ErrBadOptions)
	case o.Iters < 1 || o.Warmup < 1:
		return fmt.Errorf("%w: Iters %d, Warmup %d: want at least 1 each", ErrBadOptions, o.Iters, o.Warmup)
	case o.Compression != "none" && o.Compression != "bf16":
		return fmt.Errorf("%w: Compression %q: want none or bf16", ErrBadOptions, o.Compression)
	case o.Host != "" && net.ParseIP(o.Host) == nil:
		return fmt.Errorf("%w: Host %q: want an IP address", ErrBadOptions, o.Host)
	}
	for _, s := range o.Sizes {
		if s < 0 || s%4 != 0 || s > 1<<34 {
			return fmt.Errorf("%w: Sizes: %d bytes is not a whole number of float32s (or is over 16 GiB)", ErrBadOptions, s)
		}
	}
	return nil
}

// WireOptions configure the raw TCP measurement AllReduce makes beside the ring: the
// wire's ceiling on loopback.
type WireOptions struct {
	Skip    bool    // no raw TCP measurement
	Seconds float64 // how long each direction's measurement streams
}

// AllReduceRow is one message size's result: the slowest rank's mean time per
// all-reduce, the algorithm bandwidth size/time and the bus bandwidth
// algbw * 2(W-1)/W, which is what each link carries and compares across world sizes.
type AllReduceRow struct {
	Bytes     int     `json:"bytes"`
	Count     int     `json:"count"`
	Type      string  `json:"type"` // float (float32) or int64 (Options.Exact)
	TimeUS    float64 `json:"time_us"`
	AlgBWGBps float64 `json:"algbw_gbps"`
	BusBWGBps float64 `json:"busbw_gbps"`
}

// AllReduceReport is what AllReduce measured.
type AllReduceReport struct {
	Options AllReduceOptions
	Rows    []AllReduceRow // one per size, in the order of Options.Sizes (with Exact, float then int64)
	Lanes   int            // TCP lanes per link the ranks used; 0: frames on the gRPC streams
	// Wire is whether the raw TCP measurement ran; OneWayGBps and DuplexGBps are its
	// bandwidths of one direction, alone and with the other direction at once.
	Wire                   bool
	OneWayGBps, DuplexGBps float64
	// Network describes where the ranks ran ("" : processes on 127.0.0.1) and
	// LinkGBps is each rank's link rate (0: unshaped); the caller that placed the
	// ranks sets them, and the table then shows busbw as a fraction of the link.
	Network  string
	LinkGBps float64
	// Gloo is PyTorch gloo's result on the same links (one row per size), when the
	// caller measured it; the table then shows it beside the ring's.
	Gloo []AllReduceRow
}

// AllReduce measures ring all-reduce bandwidth between processes on 127.0.0.1: it
// starts o.World rank processes through sp, hands them each other's addresses, and
// collects their timings of every size; then, unless wire.Skip, it measures raw TCP
// between two processes, one way and both ways at once (a ring sends and receives at
// the same time). It blocks until the last helper has exited; when ctx ends, every
// helper is killed.
func AllReduce(ctx context.Context, o AllReduceOptions, wire WireOptions, sp Spawner) (*AllReduceReport, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.TLS && o.TLSDir == "" {
		dir, err := os.MkdirTemp("", "ringtrain-bench-tls-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		if err := issueRankCerts(dir, o.World); err != nil {
			return nil, err
		}
		o.TLSDir = dir
	}
	rows, lanes, err := ringBandwidth(ctx, o, sp)
	if err != nil {
		return nil, err
	}
	rep := &AllReduceReport{Options: o, Rows: rows, Lanes: lanes, Wire: !wire.Skip}
	if wire.Skip {
		return rep, nil
	}
	msg := min(max(maxSize(o.Sizes), 1<<20), 64<<20)
	if rep.OneWayGBps, err = tcpBandwidth(ctx, sp, msg, wire.Seconds, false); err != nil {
		return nil, err
	}
	if rep.DuplexGBps, err = tcpBandwidth(ctx, sp, msg, wire.Seconds, true); err != nil {
		return nil, err
	}
	return rep, nil
}

// issueRankCerts writes a CA's certificate and a worker certificate for each
// rank (ringtrain://worker/rankN) under dir/rankN.
func issueRankCerts(dir string, world int) error {
	ca, err := security.NewCA("ringtrain bench", time.Hour)
	if err != nil {
		return err
	}
	for r := range world {
		is, err := ca.Issue(security.Identity{Role: security.RoleWorker, ID: rankName(r)}, []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			return err
		}
		if err := is.WriteDir(filepath.Join(dir, rankName(r))); err != nil {
			return err
		}
	}
	return nil
}

// rankName is the ring member id of a rank.
func rankName(r int) string { return "rank" + strconv.Itoa(r) }

func maxSize(sizes []int) int {
	biggest := 0
	for _, s := range sizes {
		biggest = max(biggest, s)
	}
	return biggest
}

// WriteTable writes the report as nccl-tests does: a header naming the setup, one
// line per size, and the wire's ceiling.
func (r *AllReduceReport) WriteTable(w io.Writer) error {
	o := r.Options
	var b strings.Builder
	path := fmt.Sprintf("%d TCP lane(s)", r.Lanes)
	if r.Lanes == 0 {
		path = "frames on the gRPC streams"
	}
	if o.TLS || o.TLSDir != "" {
		path += ", mutual TLS 1.3"
	}
	where := r.Network
	if where == "" {
		where = "processes on 127.0.0.1"
	}
	fmt.Fprintf(&b, "# ringtrain all-reduce: %d ranks as %s, gRPC links, %s, segment %d bytes, compression %s\n",
		o.World, where, path, o.Segment, o.Compression)
	fmt.Fprintf(&b, "# %12s %12s %6s %6s %12s %12s %12s", "size(B)", "count", "type", "iters", "time(us)", "algbw(GB/s)", "busbw(GB/s)")
	if r.LinkGBps > 0 {
		fmt.Fprintf(&b, " %12s %10s", "link(GB/s)", "busbw/link")
	}
	if len(r.Gloo) == len(r.Rows) {
		fmt.Fprintf(&b, " %12s %8s", "gloo(GB/s)", "x gloo")
	}
	b.WriteString("\n")
	for i, row := range r.Rows {
		fmt.Fprintf(&b, "  %12d %12d %6s %6d %12.1f %12.3f %12.3f", row.Bytes, row.Count, row.Type, o.Iters, row.TimeUS, row.AlgBWGBps, row.BusBWGBps)
		if r.LinkGBps > 0 {
			fmt.Fprintf(&b, " %12.4f %10.2f", r.LinkGBps, row.BusBWGBps/r.LinkGBps)
		}
		if len(r.Gloo) == len(r.Rows) {
			fmt.Fprintf(&b, " %12.4f %8.2f", r.Gloo[i].BusBWGBps, row.BusBWGBps/r.Gloo[i].BusBWGBps)
		}
		b.WriteString("\n")
	}
	if r.Wire {
		fmt.Fprintf(&b, "# wire ceiling, raw TCP between two %s: one way %.3f GB/s, both ways at once %.3f GB/s each way\n", where, r.OneWayGBps, r.DuplexGBps)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report as one JSON object; without the wire measurement its
// bandwidths are 0.
func (r *AllReduceReport) WriteJSON(w io.Writer) error {
	o := r.Options
	return json.NewEncoder(w).Encode(map[string]any{
		"world": o.World, "lanes": r.Lanes, "segment_bytes": o.Segment, "compression": o.Compression,
		"iters": o.Iters, "tls": o.TLS || o.TLSDir != "", "results": r.Rows, "tcp_one_way_gbps": r.OneWayGBps, "tcp_duplex_gbps": r.DuplexGBps,
		"network": r.Network, "link_gbps": r.LinkGBps, "gloo": r.Gloo,
	})
}

// ringBandwidth starts the rank processes, hands them each other's addresses and
// collects their timings.
func ringBandwidth(ctx context.Context, o AllReduceOptions, sp Spawner) ([]AllReduceRow, int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // kills every rank still running on any error
	ranks := make([]*helper, 0, o.World)
	defer func() {
		for _, h := range ranks {
			h.in.Close()
			_ = h.cmd.Wait()
		}
	}()
	addrs := make([]string, o.World)
	for r := range o.World {
		h, err := startHelper(sp.AllReduceRank(ctx, o, r))
		if err != nil {
			return nil, 0, err
		}
		ranks = append(ranks, h)
		var m helperMsg
		if err := h.next(&m); err != nil || m.Addr == "" {
			return nil, 0, fmt.Errorf("rank %d did not report its address: %v %s", r, err, m.Error)
		}
		addrs[r] = m.Addr
	}
	line, _ := json.Marshal(addrs)
	for _, h := range ranks {
		if _, err := fmt.Fprintf(h.in, "%s\n", line); err != nil {
			return nil, 0, err
		}
	}
	// Every rank reports each size in turn; the slowest rank's time counts.
	times := make([][]float64, o.World)
	times64 := make([][]float64, o.World)
	lanes := make([]int, o.World)
	errs := make([]error, o.World)
	var wg sync.WaitGroup
	for r, h := range ranks {
		wg.Go(func() {
			for range o.Sizes {
				var m helperMsg
				if err := h.next(&m); err != nil || m.Error != "" {
					errs[r] = fmt.Errorf("rank %d: %v%s", r, err, m.Error)
					cancel()
					return
				}
				times[r] = append(times[r], m.Seconds)
				times64[r] = append(times64[r], m.Seconds64)
				lanes[r] = m.Lanes
			}
			var m helperMsg
			if err := h.next(&m); err != nil || !m.Done {
				errs[r] = fmt.Errorf("rank %d did not finish: %v%s", r, err, m.Error)
				cancel()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, 0, err
	}
	for r, h := range ranks {
		if err := h.stop(); err != nil {
			return nil, 0, fmt.Errorf("rank %d: %w", r, err)
		}
	}
	ranks = nil
	var rows []AllReduceRow
	row := func(bytes, count int, typ string, times [][]float64, i int) AllReduceRow {
		t := 0.0
		for r := range o.World {
			t = max(t, times[r][i])
		}
		alg := float64(bytes) / t / 1e9
		return AllReduceRow{Bytes: bytes, Count: count, Type: typ, TimeUS: t * 1e6, AlgBWGBps: alg,
			BusBWGBps: alg * 2 * float64(o.World-1) / float64(o.World)}
	}
	for i, size := range o.Sizes {
		rows = append(rows, row(size, size/4, "float", times, i))
		if o.Exact {
			rows = append(rows, row(2*size, size/4, "int64", times64, i))
		}
	}
	return rows, lanes[0], nil
}
