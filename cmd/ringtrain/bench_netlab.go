package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/bench"
	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/netlab"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// netlabFlags are `bench allreduce`'s flags that run the ranks in a network lab.
type netlabFlags struct {
	link   string   // every rank's link
	ranks  []string // "R:SPEC": rank R's link
	zones  string   // zone of each worker, in join order
	trunk  string   // the link between zones
	order  string   // "planner" or "join"
	gloo   string   // path of scripts/bench/gloo_allreduce.py, to run on the same links
	python string
}

func (f *netlabFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.link, "netlab", "", "run each rank in a network namespace of its own, its link shaped so: rate=1gbit,delay=0.5ms[,jitter=..,loss=..%] (needs root and iproute2)")
	fl.StringArrayVar(&f.ranks, "netlab-rank", nil, "rank R's own link, R:SPEC (repeatable): one slow or lossy link")
	fl.StringVar(&f.zones, "netlab-zones", "", "zone of each worker in join order, comma-separated (e.g. a,b,a,b): zones are bridges joined by --netlab-trunk")
	fl.StringVar(&f.trunk, "netlab-trunk", "", "the link between zones, as --netlab")
	fl.StringVar(&f.order, "ring-order", "planner", "ring order of the workers with --netlab-zones: planner (the coordinator's, zones grouped) or join (as listed)")
	fl.StringVar(&f.gloo, "gloo", "", "also run this gloo script (scripts/bench/gloo_allreduce.py) on the same links and show it beside the ring")
	fl.StringVar(&f.python, "python", "/usr/bin/python3", "the Python (with PyTorch) that runs --gloo")
}

func (f *netlabFlags) enabled() bool {
	return f.link != "" || len(f.ranks) > 0 || f.zones != "" || f.trunk != ""
}

// labRun is a built lab and what the report says about it.
type labRun struct {
	lab      *netlab.Lab
	desc     string
	linkGBps float64
}

// build parses the flags and makes the lab, host r for rank r.
func (f *netlabFlags) build(ctx context.Context, world int) (*labRun, error) {
	var o bench.LabOptions
	var err error
	if o.Link, err = netlab.ParseLink(f.link); err != nil {
		return nil, usageErrorf("--netlab: %v", err)
	}
	if o.Trunk, err = netlab.ParseLink(f.trunk); err != nil {
		return nil, usageErrorf("--netlab-trunk: %v", err)
	}
	desc := []string{"links " + o.Link.String()}
	for _, rs := range f.ranks {
		r, spec, ok := strings.Cut(rs, ":")
		rank, err := strconv.Atoi(r)
		if !ok || err != nil || rank < 0 || rank >= world {
			return nil, usageErrorf("--netlab-rank %q: want R:SPEC with R a rank 0..%d", rs, world-1)
		}
		link, err := netlab.ParseLink(spec)
		if err != nil {
			return nil, usageErrorf("--netlab-rank %q: %v", rs, err)
		}
		if o.Links == nil {
			o.Links = map[int]netlab.Link{}
		}
		o.Links[rank] = link
		desc = append(desc, fmt.Sprintf("rank %d %s", rank, link))
	}
	if f.zones != "" {
		joined := strings.Split(f.zones, ",")
		if len(joined) != world {
			return nil, usageErrorf("--netlab-zones %q: %d zones for --world %d", f.zones, len(joined), world)
		}
		if o.Zones, err = ringZones(joined, f.order); err != nil {
			return nil, err
		}
		desc = append(desc, fmt.Sprintf("ring zones %s (%s order, %d crossings), trunk %s",
			strings.Join(o.Zones, ","), f.order, crossings(o.Zones), o.Trunk))
	}
	lab, err := bench.NewLab(ctx, world, o)
	if err != nil {
		return nil, err
	}
	return &labRun{lab: lab, desc: "processes in lab namespaces, " + strings.Join(desc, "; "), linkGBps: o.Link.GBps()}, nil
}

// ringZones returns the zone of each rank: the workers w0..wN-1 joined in order
// with zones joined, ordered as the coordinator's planner orders them, or as
// they joined.
func ringZones(joined []string, order string) ([]string, error) {
	switch order {
	case "join":
		return joined, nil
	case "planner":
	default:
		return nil, usageErrorf("--ring-order %q: want planner or join", order)
	}
	workers := make([]*pb.Worker, len(joined))
	zoneOf := map[string]string{}
	for i, z := range joined {
		id := fmt.Sprintf("w%03d", i)
		workers[i] = &pb.Worker{Id: id, Zone: z, JoinedAt: uint64(i + 1)}
		zoneOf[id] = z
	}
	n := int32(len(joined))
	plan := coordinator.NextPlan(&pb.JobSpec{Streams: n, MinWorkers: n, MaxWorkers: n, Steps: 1}, workers, nil)
	zones := make([]string, 0, n)
	for _, id := range plan.GetMembers() {
		zones = append(zones, zoneOf[id])
	}
	if len(zones) != len(joined) {
		return nil, fmt.Errorf("the planner made a ring of %d of %d workers: %s", len(zones), len(joined), plan.GetReason())
	}
	return zones, nil
}

// crossings counts the ring's links between different zones.
func crossings(zones []string) int {
	n := 0
	for i, z := range zones {
		if len(zones) > 1 && z != zones[(i+1)%len(zones)] {
			n++
		}
	}
	return n
}

// runGloo runs the gloo script with its ranks in the lab's hosts, rank r in host r,
// and returns its rows.
func runGloo(ctx context.Context, python, script string, o bench.AllReduceOptions, hosts []*netlab.Host) ([]bench.AllReduceRow, error) {
	sizes := make([]string, len(o.Sizes))
	for i, s := range o.Sizes {
		sizes[i] = strconv.Itoa(s)
	}
	var ns, addrs []string
	for _, h := range hosts {
		ns, addrs = append(ns, h.NS), append(addrs, h.IP)
	}
	cmd := exec.CommandContext(ctx, python, script, "--world", strconv.Itoa(o.World), "--size", strings.Join(sizes, ","),
		"--iters", strconv.Itoa(o.Iters), "--warmup", strconv.Itoa(o.Warmup), "--json",
		"--netns", strings.Join(ns, ","), "--addrs", strings.Join(addrs, ","))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("gloo (%s): %w", script, err)
	}
	var res struct {
		Results []bench.AllReduceRow `json:"results"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || len(res.Results) != len(o.Sizes) {
		return nil, fmt.Errorf("gloo (%s): unreadable result %q: %v", script, out.String(), err)
	}
	return res.Results, nil
}
