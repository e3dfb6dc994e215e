package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/bench"
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

// allReduceBenchFlags are the flags of `bench allreduce` that the parent passes to
// every rank process.
type allReduceBenchFlags struct {
	bench.AllReduceOptions
	sizes string
}

// allReduceArgs are the flags that give a rank process the options o.
func allReduceArgs(o bench.AllReduceOptions) []string {
	sizes := make([]string, len(o.Sizes))
	for i, s := range o.Sizes {
		sizes[i] = strconv.Itoa(s)
	}
	return []string{
		"--world", strconv.Itoa(o.World), "--size", strings.Join(sizes, ","),
		"--iters", strconv.Itoa(o.Iters), "--warmup", strconv.Itoa(o.Warmup),
		"--lanes", strconv.Itoa(o.Lanes), "--segment", strconv.Itoa(o.Segment),
		"--compression", o.Compression, "--tls-dir", o.TLSDir, "--exact=" + strconv.FormatBool(o.Exact), "--host", o.Host,
	}
}

func (f *allReduceBenchFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.IntVar(&f.World, "world", 2, "number of ranks (processes)")
	fl.StringVar(&f.sizes, "size", "64MiB", "message sizes in bytes, comma-separated (suffixes KiB, MiB, GiB, KB, MB, GB)")
	fl.IntVar(&f.Iters, "iters", 20, "timed all-reduces per size")
	fl.IntVar(&f.Warmup, "warmup", 3, "untimed all-reduces per size before timing (the first is checked)")
	fl.IntVar(&f.Lanes, "lanes", 0, "TCP lanes per link (0: the default, negative: frames on the gRPC stream)")
	fl.IntVar(&f.Segment, "segment", allreduce.DefaultSegmentBytes, "segment (frame payload) bytes")
	fl.StringVar(&f.Compression, "compression", "none", "wire compression: none or bf16")
	fl.BoolVar(&f.Exact, "exact", false, "also time exact mode's int64 all-reduce of as many elements, alternating with the float32 one")
}

// options checks the flags and returns the options they give.
func (f *allReduceBenchFlags) options() (bench.AllReduceOptions, error) {
	o := f.AllReduceOptions
	var err error
	if o.Sizes, err = parseSizes(f.sizes); err != nil {
		return o, err
	}
	switch {
	case o.World < 1 || o.World > 64:
		return o, usageErrorf("--world %d: want 1..64", o.World)
	case o.Iters < 1 || o.Warmup < 1:
		return o, usageErrorf("--iters %d, --warmup %d: want at least 1 each", o.Iters, o.Warmup)
	case o.Compression != "none" && o.Compression != "bf16":
		return o, usageErrorf("--compression %q: want none or bf16", o.Compression)
	}
	return o, nil
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
			return nil, usageErrorf("--size %q: want a byte count such as 4096, 512KiB or 64MiB", f)
		}
		n := int(v * mult)
		if n%4 != 0 || n > 1<<34 {
			return nil, usageErrorf("--size %q: %d bytes is not a whole number of float32s (or is over 16 GiB)", f, n)
		}
		out = append(out, n)
	}
	return out, nil
}

func newBenchAllReduceCmd(g *globals) *cobra.Command {
	var (
		f          allReduceBenchFlags
		asJSON     bool
		noTCP      bool
		timeout    time.Duration
		tcpSeconds float64
		profile    string
		lab        netlabFlags
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
on loopback, one way and both ways at once (a ring sends and receives at the same time).

With --netlab the ranks run in a network lab instead of on loopback: each rank in a
network namespace of its own, joined to the others through a bridge by a veth pair
shaped with tc (rate, delay, jitter, loss), so links behave like a cluster's. The table
then shows busbw beside the link rate; --netlab-rank gives one rank a link of its own,
--netlab-zones puts the workers in zones joined by a --netlab-trunk, ordered in the ring
by the coordinator's planner (--ring-order join: as listed), and --gloo runs PyTorch
gloo's all-reduce on the same links in the same run. It needs root and iproute2.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := f.options()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			var sp bench.Spawner = selfSpawner{g: g, profile: profile}
			var run *labRun
			if lab.enabled() {
				if run, err = lab.build(ctx, o.World); err != nil {
					return err
				}
				defer run.lab.Close()
				sp = bench.LabSpawner{Inner: sp, Hosts: run.lab.Hosts()}
			} else if lab.gloo != "" {
				return usageErrorf("--gloo needs --netlab (on loopback run the script itself)")
			}
			rep, err := bench.AllReduce(ctx, o, bench.WireOptions{Skip: noTCP || o.World < 2 && run != nil, Seconds: tcpSeconds}, sp)
			if err != nil {
				return err
			}
			if run != nil {
				rep.Network, rep.LinkGBps = run.desc, run.linkGBps
				if lab.gloo != "" {
					if rep.Gloo, err = runGloo(ctx, lab.python, lab.gloo, o, run.lab.Hosts()); err != nil {
						return err
					}
				}
			}
			if asJSON {
				return rep.WriteJSON(cmd.OutOrStdout())
			}
			return rep.WriteTable(cmd.OutOrStdout())
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.BoolVar(&f.TLS, "tls", false, "run the ring over mutual TLS 1.3 with an ephemeral CA, as a cluster with --tls-dir does")
	fl.BoolVar(&asJSON, "json", false, "print one JSON object instead of the table")
	fl.BoolVar(&noTCP, "no-tcp", false, "skip the raw TCP measurement")
	fl.Float64Var(&tcpSeconds, "tcp-seconds", 1, "seconds each raw TCP measurement streams for")
	fl.DurationVar(&timeout, "timeout", 10*time.Minute, "give up (and stop every rank) after this long")
	fl.StringVar(&profile, "rank-cpuprofile", "", "write each rank's CPU profile to this path with .rankN appended")
	fl.MarkHidden("rank-cpuprofile")
	lab.register(cmd)
	return cmd
}

// selfSpawner starts the helper processes of `bench allreduce` by re-executing this
// binary with the hidden subcommands below and the parent's log flags; their
// stderr is the parent's. With profile set, each rank writes its CPU profile to
// profile.rankN.
type selfSpawner struct {
	g       *globals
	profile string
}

func (s selfSpawner) AllReduceRank(ctx context.Context, o bench.AllReduceOptions, rank int) (*exec.Cmd, error) {
	args := append([]string{"bench", "allreduce-rank", "--rank", strconv.Itoa(rank)}, allReduceArgs(o)...)
	if s.profile != "" {
		args = append([]string{"--cpuprofile", fmt.Sprintf("%s.rank%d", s.profile, rank)}, args...)
	}
	return s.command(ctx, args)
}

func (s selfSpawner) TCPEnd(ctx context.Context, o bench.TCPEndOptions) (*exec.Cmd, error) {
	args := []string{"bench", "tcp-rank", "--listen"}
	if !o.Listen {
		args = []string{"bench", "tcp-rank", "--connect", o.Connect}
	}
	args = append(args, "--msg", strconv.Itoa(o.Msg), "--seconds", strconv.FormatFloat(o.Seconds, 'g', -1, 64))
	if o.Duplex {
		args = append(args, "--duplex")
	}
	if o.Host != "" {
		args = append(args, "--host", o.Host)
	}
	return s.command(ctx, args)
}

func (s selfSpawner) command(ctx context.Context, args []string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, append([]string{"--log-level", s.g.logLevel, "--log-format", s.g.logFormat}, args...)...)
	cmd.Stderr = os.Stderr
	return cmd, nil
}

func newBenchAllReduceRankCmd(g *globals) *cobra.Command {
	var (
		f    allReduceBenchFlags
		rank int
	)
	cmd := &cobra.Command{
		Use:    "allreduce-rank",
		Short:  "One rank of `bench allreduce` (started by it)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := f.options()
			if err != nil {
				return err
			}
			log, err := g.logger()
			if err != nil {
				bench.ReportError(os.Stdout, err)
				return err
			}
			return bench.AllReduceRank(cmd.Context(), o, rank, os.Stdin, os.Stdout, log)
		},
	}
	f.register(cmd)
	cmd.Flags().IntVar(&rank, "rank", 0, "this process's rank")
	cmd.Flags().StringVar(&f.TLSDir, "tls-dir", "", "directory of every rank's certificates (rankN/), made by the parent")
	cmd.Flags().StringVar(&f.Host, "host", "", "address to serve on (default 127.0.0.1)")
	return cmd
}

func newBenchTCPRankCmd(*globals) *cobra.Command {
	var o bench.TCPEndOptions
	cmd := &cobra.Command{
		Use:    "tcp-rank",
		Short:  "One end of `bench allreduce`'s raw TCP measurement (started by it)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return bench.TCPEnd(cmd.Context(), o, os.Stdin, os.Stdout)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&o.Listen, "listen", false, "accept the connection (and receive, one way)")
	fl.StringVar(&o.Connect, "connect", "", "connect to this address (and send, one way)")
	fl.IntVar(&o.Msg, "msg", 64<<20, "bytes per write")
	fl.Float64Var(&o.Seconds, "seconds", 1, "seconds to send for")
	fl.BoolVar(&o.Duplex, "duplex", false, "send and receive at once on both ends")
	fl.StringVar(&o.Host, "host", "", "address the listening end listens on (default 127.0.0.1)")
	return cmd
}
