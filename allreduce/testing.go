package allreduce

import (
	"fmt"
	"strconv"
)

// NewInmemRings builds a ring of world members over a new InmemNetwork whose
// links hold buffer frames, for tests of the ring and of its callers. Members
// are named "r0", "r1", ...; tmpl supplies every other Config field (its
// Members and Rank are ignored). Close every ring when done.
func NewInmemRings(tmpl Config, world, buffer int) ([]*Ring, *InmemNetwork, error) {
	if world < 1 {
		return nil, nil, fmt.Errorf("%w: world %d", ErrBadConfig, world)
	}
	net := NewInmemNetwork(world, buffer)
	members := make([]string, world)
	for i := range members {
		members[i] = "r" + strconv.Itoa(i)
	}
	rings := make([]*Ring, 0, world)
	for r := range world {
		cfg := tmpl
		cfg.Members, cfg.Rank = members, r
		ring, err := NewRing(cfg, net.Transport(r))
		if err != nil {
			for _, x := range rings {
				x.Close()
			}
			return nil, nil, err
		}
		rings = append(rings, ring)
	}
	return rings, net, nil
}
