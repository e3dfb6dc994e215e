package system_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// netLab gives each process of a test its own network namespace, joined by a
// bridge in the root namespace, so that a test can cut the links between two
// processes with iptables in their namespaces: a real partition, with packets
// silently dropped. It needs root, iproute2 and iptables; newNetLab skips the test
// when they are missing.
type netLab struct {
	t      *testing.T
	tag    string // short random name prefix
	subnet string // "10.a.b."
	bridge string
	mu     sync.Mutex
	hosts  map[string]*netHost
}

type netHost struct {
	name, ns, ip string
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func newNetLab(t *testing.T) *netLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("partition scenarios need root for network namespaces")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("partition scenarios need %s: %v", tool, err)
		}
	}
	b := make([]byte, 3)
	rand.Read(b)
	l := &netLab{t: t, tag: "rt" + hex.EncodeToString(b)[:4], hosts: map[string]*netHost{}}
	l.subnet = fmt.Sprintf("10.%d.%d.", 100+int(b[1])%100, int(b[2])%250)
	l.bridge = l.tag + "br"
	if err := run("ip", "link", "add", l.bridge, "type", "bridge"); err != nil {
		t.Skipf("partition scenarios need network namespaces: %v", err)
	}
	t.Cleanup(l.close)
	for _, cmd := range [][]string{
		{"ip", "addr", "add", l.subnet + "1/24", "dev", l.bridge},
		{"ip", "link", "set", l.bridge, "up"},
		// Bridged packets may traverse the root namespace's FORWARD chain (whose
		// policy a Docker host sets to DROP): let the lab's own through.
		{"iptables", "-I", "FORWARD", "-i", l.bridge, "-o", l.bridge, "-j", "ACCEPT"},
	} {
		if err := run(cmd...); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// host returns the namespace of a named process, creating it on first use.
func (l *netLab) host(name string) *netHost {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if h, ok := l.hosts[name]; ok {
		return h
	}
	i := len(l.hosts)
	h := &netHost{name: name, ns: fmt.Sprintf("%s-%s", l.tag, name), ip: fmt.Sprintf("%s%d", l.subnet, 10+i)}
	outer, inner := fmt.Sprintf("%sh%d", l.tag, i), fmt.Sprintf("%sc%d", l.tag, i)
	for _, cmd := range [][]string{
		{"ip", "netns", "add", h.ns},
		{"ip", "link", "add", outer, "type", "veth", "peer", "name", inner},
		{"ip", "link", "set", inner, "netns", h.ns},
		{"ip", "link", "set", outer, "master", l.bridge},
		{"ip", "link", "set", outer, "up"},
		{"ip", "-n", h.ns, "addr", "add", h.ip + "/24", "dev", inner},
		{"ip", "-n", h.ns, "link", "set", inner, "up"},
		{"ip", "-n", h.ns, "link", "set", "lo", "up"},
	} {
		if err := run(cmd...); err != nil {
			l.t.Fatal(err)
		}
	}
	l.hosts[name] = h
	return h
}

// cut drops every packet between hosts a and b, both ways; heal undoes every cut.
func (l *netLab) cut(a, b string) {
	l.t.Helper()
	ha, hb := l.host(a), l.host(b)
	for _, p := range [][2]*netHost{{ha, hb}, {hb, ha}} {
		for _, cmd := range [][]string{
			{"ip", "netns", "exec", p[0].ns, "iptables", "-A", "INPUT", "-s", p[1].ip, "-j", "DROP"},
			{"ip", "netns", "exec", p[0].ns, "iptables", "-A", "OUTPUT", "-d", p[1].ip, "-j", "DROP"},
		} {
			if err := run(cmd...); err != nil {
				l.t.Fatal(err)
			}
		}
	}
}

func (l *netLab) heal() {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range l.hosts {
		if err := run("ip", "netns", "exec", h.ns, "iptables", "-F"); err != nil {
			l.t.Fatal(err)
		}
	}
}

// close removes the namespaces, links and the FORWARD rule. The processes in the
// namespaces are stopped first by their own cleanups, registered later.
func (l *netLab) close() {
	for _, h := range l.hosts {
		run("ip", "netns", "del", h.ns)
	}
	run("ip", "link", "del", l.bridge)
	run("iptables", "-D", "FORWARD", "-i", l.bridge, "-o", l.bridge, "-j", "ACCEPT")
}

func (l *netLab) controlIP(host string) string { return l.host(host).ip }
func (l *netLab) ringIP(host string) string    { return l.host(host).ip }

// launch runs the binary in host's namespace (ip netns exec execs it, so the
// process is the binary itself).
func (l *netLab) launch(c *cluster, host, name string, env, args []string) *proc {
	l.t.Helper()
	return startEnv(l.t, "ip", c.dir, name, env, append([]string{"netns", "exec", l.host(host).ns, c.bin}, args...)...)
}

func (l *netLab) signal(_ string, p *proc, sig syscall.Signal) error {
	return p.cmd.Process.Signal(sig)
}
