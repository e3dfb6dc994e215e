// Package netlab builds a network laboratory on one Linux machine: each process of
// an experiment runs in its own network namespace (a "host"), joined to a zone's
// bridge by a veth pair whose two ends are shaped with tc (a token bucket, tbf, for
// the rate; netem for delay, jitter and loss), so that links behave like a
// cluster's and not like loopback, where every
// link is a memory copy. Every host has its own link settings, so one slow or lossy
// link can be modelled; hosts in different zones talk through one shared trunk (a
// veth pair between the zones' bridges) with settings of its own, as racks or
// availability zones joined by a slower link.
//
// # Who calls it
//
// `ringtrain bench allreduce --netlab ...` runs its ranks (and PyTorch gloo's, with
// --gloo) in a lab; the lab's own test checks that shaping takes effect. It needs
// root, iproute2 (ip, tc) and iptables; Available says why a lab cannot be built
// here, and callers skip or refuse with that reason.
//
// # Usage
//
//	link, _ := netlab.ParseLink("rate=1gbit,delay=0.5ms")
//	lab, err := netlab.New(ctx, netlab.Options{})
//	defer lab.Close()
//	a, _ := lab.AddHost(ctx, "a", "", link)
//	b, _ := lab.AddHost(ctx, "b", "", link)
//	cmd := a.Command(ctx, "iperf3", "-c", b.IP)
//
// # The model
//
// A host's link is shaped at both ends: its namespace's end (what the host sends)
// with the rate, delay, jitter and loss, and the bridge's end (what the host
// receives) with the rate alone. So a packet from a to b crosses a's rate, a's delay
// and b's rate: the one-way delay between two hosts with delay d is d and the round
// trip 2d, as with netem on every host's NIC; a slow host is slow both ways. The
// trunk between two zones is shaped the same way at both of its ends (each
// direction carries the trunk's delay once), and every flow between the zones
// shares it, which is what makes a ring's order matter.
//
// Kernels without sch_netem (some VM kernels) still shape rates; a link with a
// delay, jitter or loss then fails with ErrUnavailable saying so, rather than
// running unshaped. The root namespace has an address on the lab (RootIP), so a
// harness outside the lab reaches every host; Host.Do opens sockets inside a host
// from the calling process.
//
// Names: every namespace, bridge and veth carries the lab's random tag, so labs do
// not collide and Close (which removes them all, also after a partial New or
// AddHost) leaves nothing behind.
package netlab
