package netlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
)

// Options configure a Lab.
type Options struct {
	// Trunk shapes the link between zones: each zone after the first is joined to
	// the first zone's bridge by one veth pair shaped as Trunk at both ends. Every
	// flow between two zones shares it.
	Trunk Link
	// Log receives a debug line per command; nil logs nothing.
	Log *slog.Logger
}

// Lab is a set of network namespaces (hosts) joined by shaped links. Its methods
// are safe for concurrent use; Close removes everything it made.
type Lab struct {
	tag    string // random name prefix of everything the lab makes
	subnet string // "10.a.b.": every host's address is in 10.a.b.0/24
	trunk  Link
	log    *slog.Logger

	mu      sync.Mutex
	closed  bool
	bridges map[string]string // zone -> its bridge
	hosts   []*Host
	links   []string   // root-namespace links to delete: bridges and trunk ends
	rules   [][]string // iptables rules (as -I arguments) to delete
}

// Host is one network namespace of a lab with its address and link.
type Host struct {
	Name string // the caller's name for it
	Zone string // the zone (bridge) it hangs on
	NS   string // the namespace's name, for ip netns exec
	IP   string // its IPv4 address on the lab's /24
	Link Link   // its link's shaping
}

// Available returns nil when a lab can be built here, or an error wrapping
// ErrUnavailable that says why not: not Linux, not root, or ip, tc or iptables
// missing.
func Available() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("%w: network namespaces need Linux, this is %s", ErrUnavailable, runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: network namespaces need root (uid %d)", ErrUnavailable, os.Geteuid())
	}
	for _, tool := range []string{"ip", "tc", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%w: %s not found (apt-get install iproute2 iptables): %v", ErrUnavailable, tool, err)
		}
	}
	return nil
}

// New makes an empty lab; AddHost adds its hosts. It fails with ErrUnavailable
// when Available does.
func New(ctx context.Context, o Options) (*Lab, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Lab{
		tag:     "nl" + hex.EncodeToString(b[:2]),
		subnet:  fmt.Sprintf("10.%d.%d.", 200+int(b[2])%50, b[3]),
		trunk:   o.Trunk,
		log:     log,
		bridges: map[string]string{},
	}, nil
}

// Tag is the prefix of the names of every namespace, bridge and veth of the lab.
func (l *Lab) Tag() string { return l.tag }

// RootIP is the root namespace's address on the lab (on the first zone's bridge):
// processes outside the lab reach the hosts from it, unshaped but for the hosts'
// own links (and the trunk, for hosts in other zones).
func (l *Lab) RootIP() string { return l.subnet + "1" }

// Hosts returns the lab's hosts in the order they were added (a new slice).
func (l *Lab) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Host(nil), l.hosts...)
}

// AddHost makes a namespace named after name on zone's bridge (made on first use;
// "" is a zone like any other), with a veth link shaped as link. Hosts get
// addresses in the order they are added. It blocks while the commands run; on an
// error what it made so far is removed by Close.
func (l *Lab) AddHost(ctx context.Context, name, zone string, link Link) (*Host, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	if len(l.hosts) >= 240 {
		return nil, fmt.Errorf("netlab: host %q: at most 240 hosts in a lab", name)
	}
	br, err := l.bridge(ctx, zone)
	if err != nil {
		return nil, err
	}
	i := len(l.hosts)
	h := &Host{Name: name, Zone: zone, NS: fmt.Sprintf("%s-%d", l.tag, i), IP: fmt.Sprintf("%s%d", l.subnet, 10+i), Link: link}
	outer, inner := fmt.Sprintf("%sh%d", l.tag, i), fmt.Sprintf("%sc%d", l.tag, i)
	if err := l.run(ctx, "ip", "netns", "add", h.NS); err != nil {
		return nil, fmt.Errorf("netlab: host %q: %w", name, err)
	}
	l.hosts = append(l.hosts, h) // from here Close removes the namespace
	cmds := [][]string{
		{"ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", h.NS},
		{"ip", "link", "set", outer, "master", br},
		{"ip", "link", "set", outer, "up"},
		{"ip", "-n", h.NS, "addr", "add", h.IP + "/24", "dev", inner},
		{"ip", "-n", h.NS, "link", "set", inner, "up"},
		{"ip", "-n", h.NS, "link", "set", "lo", "up"},
	}
	cmds = append(cmds, link.shapeCmds(inner, []string{"-n", h.NS}, true)...)
	cmds = append(cmds, link.shapeCmds(outer, nil, false)...)
	for _, c := range cmds {
		if err := l.run(ctx, c...); err != nil {
			return nil, fmt.Errorf("host %q: %w", name, netemHint(link, err))
		}
	}
	l.log.Debug("netlab host", "name", name, "zone", zone, "ns", h.NS, "ip", h.IP, "link", link.String())
	return h, nil
}

// bridge returns zone's bridge, making it (and its trunk to the first zone) on
// first use. l.mu is held.
func (l *Lab) bridge(ctx context.Context, zone string) (string, error) {
	if br, ok := l.bridges[zone]; ok {
		return br, nil
	}
	z := len(l.bridges)
	br := fmt.Sprintf("%sb%d", l.tag, z)
	if err := l.run(ctx, "ip", "link", "add", br, "type", "bridge"); err != nil {
		if len(l.bridges) == 0 {
			return "", fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return "", err
	}
	l.links = append(l.links, br)
	l.bridges[zone] = br
	if err := l.run(ctx, "ip", "link", "set", br, "up"); err != nil {
		return "", err
	}
	// Bridged packets may traverse the root namespace's FORWARD chain (whose policy
	// a Docker host sets to DROP): let the lab's own through.
	rule := []string{"FORWARD", "-i", br, "-o", br, "-j", "ACCEPT"}
	if err := l.run(ctx, append([]string{"iptables", "-I"}, rule...)...); err != nil {
		return "", err
	}
	l.rules = append(l.rules, rule)
	if z == 0 {
		// The root namespace's own address on the lab, so that a harness outside
		// the lab (a test, a benchmark) reaches every host.
		if err := l.run(ctx, "ip", "addr", "add", l.RootIP()+"/24", "dev", br); err != nil {
			return "", err
		}
		return br, nil
	}
	first := fmt.Sprintf("%sb0", l.tag)
	ta, tb := fmt.Sprintf("%st%da", l.tag, z), fmt.Sprintf("%st%db", l.tag, z)
	if err := l.run(ctx, "ip", "link", "add", ta, "type", "veth", "peer", "name", tb); err != nil {
		return "", err
	}
	l.links = append(l.links, ta)
	cmds := [][]string{
		{"ip", "link", "set", ta, "master", first},
		{"ip", "link", "set", tb, "master", br},
		{"ip", "link", "set", ta, "up"},
		{"ip", "link", "set", tb, "up"},
	}
	for _, end := range []string{ta, tb} {
		cmds = append(cmds, l.trunk.shapeCmds(end, nil, true)...)
	}
	for _, c := range cmds {
		if err := l.run(ctx, c...); err != nil {
			return "", fmt.Errorf("trunk to zone %q: %w", zone, netemHint(l.trunk, err))
		}
	}
	return br, nil
}

// Close removes every namespace, veth, bridge and iptables rule the lab made. The
// processes in its namespaces should have exited first (a namespace outlives its
// name while a process holds it). It is idempotent; it returns the removals that
// failed.
func (l *Lab) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	ctx := context.Background()
	var errs []error
	for _, h := range l.hosts { // deleting a namespace deletes its veth pair
		errs = append(errs, l.run(ctx, "ip", "netns", "del", h.NS))
	}
	for _, link := range l.links {
		errs = append(errs, l.run(ctx, "ip", "link", "del", link))
	}
	for _, r := range l.rules {
		errs = append(errs, l.run(ctx, append([]string{"iptables", "-D"}, r...)...))
	}
	return errors.Join(errs...)
}

// netemHint wraps a failed shaping command's error with ErrUnavailable when the
// link needs netem and the kernel lacks it (tc says "qdisc kind is unknown").
func netemHint(link Link, err error) error {
	if link.needsNetem() && strings.Contains(err.Error(), "kind is unknown") {
		return fmt.Errorf("%w: this kernel has no sch_netem, so delay, jitter and loss cannot be shaped (rate can): %v", ErrUnavailable, err)
	}
	return fmt.Errorf("netlab: %w", err)
}

// run runs one command and returns its output in the error when it fails.
func (l *Lab) run(ctx context.Context, args ...string) error {
	l.log.Debug("netlab", "cmd", strings.Join(args, " "))
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Command returns a command that runs name with args in the host's namespace (ip
// netns exec execs it, so the process is name itself, and killing it kills name).
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// Wrap returns cmd (not yet started) made to run in the host's namespace: the
// same program, arguments, environment, directory and standard streams, under ctx.
func (h *Host) Wrap(ctx context.Context, cmd *exec.Cmd) *exec.Cmd {
	c := h.Command(ctx, cmd.Path, cmd.Args[1:]...)
	c.Env, c.Dir = cmd.Env, cmd.Dir
	c.Stdin, c.Stdout, c.Stderr = cmd.Stdin, cmd.Stdout, cmd.Stderr
	c.WaitDelay = cmd.WaitDelay
	return c
}
