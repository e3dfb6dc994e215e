package bench

import (
	"context"
	"fmt"
	"os/exec"

	"github.com/ringtrain/ringtrain/netlab"
)

// LabOptions place AllReduce's ranks in a network lab (package netlab): rank r
// runs in a namespace of its own whose link is Links[r] (else Link), in zone
// Zones[r] (nil: one zone), the zones joined by a Trunk.
type LabOptions struct {
	Link  netlab.Link
	Links map[int]netlab.Link
	Zones []string
	Trunk netlab.Link
}

// NewLab builds a lab of world hosts as o says; the caller closes it after the
// benchmark's processes have exited. Host i is rank i's.
func NewLab(ctx context.Context, world int, o LabOptions) (*netlab.Lab, error) {
	if o.Zones != nil && len(o.Zones) != world {
		return nil, fmt.Errorf("%w: %d zones for %d ranks", ErrBadOptions, len(o.Zones), world)
	}
	for r := range o.Links {
		if r < 0 || r >= world {
			return nil, fmt.Errorf("%w: a link for rank %d of %d", ErrBadOptions, r, world)
		}
	}
	lab, err := netlab.New(ctx, netlab.Options{Trunk: o.Trunk})
	if err != nil {
		return nil, err
	}
	for r := range world {
		link, ok := o.Links[r]
		if !ok {
			link = o.Link
		}
		zone := ""
		if o.Zones != nil {
			zone = o.Zones[r]
		}
		if _, err := lab.AddHost(ctx, rankName(r), zone, link); err != nil {
			lab.Close()
			return nil, err
		}
	}
	return lab, nil
}

// LabSpawner runs the processes another Spawner makes in a lab's hosts: rank r in
// Hosts[r], serving on its address, and the raw TCP measurement between Hosts[0]
// (listening) and Hosts[1], so that it measures the link the ring crosses.
type LabSpawner struct {
	Inner Spawner
	Hosts []*netlab.Host
}

func (s LabSpawner) AllReduceRank(ctx context.Context, o AllReduceOptions, rank int) (*exec.Cmd, error) {
	if rank < 0 || rank >= len(s.Hosts) {
		return nil, fmt.Errorf("%w: rank %d: the lab has %d hosts", ErrBadOptions, rank, len(s.Hosts))
	}
	h := s.Hosts[rank]
	o.Host = h.IP
	cmd, err := s.Inner.AllReduceRank(ctx, o, rank)
	if err != nil {
		return nil, err
	}
	return h.Wrap(ctx, cmd), nil
}

func (s LabSpawner) TCPEnd(ctx context.Context, o TCPEndOptions) (*exec.Cmd, error) {
	if len(s.Hosts) < 2 {
		return nil, fmt.Errorf("%w: the raw TCP measurement needs two lab hosts, the lab has %d", ErrBadOptions, len(s.Hosts))
	}
	h := s.Hosts[1]
	if o.Listen {
		h = s.Hosts[0]
		o.Host = h.IP
	}
	cmd, err := s.Inner.TCPEnd(ctx, o)
	if err != nil {
		return nil, err
	}
	return h.Wrap(ctx, cmd), nil
}
