package main

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// machine records every change phase 2 makes outside its temporary directory
// (sysctls, iptables rules, a bridge, cgroups, mounts) and undoes them, last first.
type machine struct {
	undo []func() error
	// sysctls are the values found before the run, restored at the end.
	sysctls map[string]string
	// rules are the iptables rules present before the run, per command and table.
	rules map[string]map[string]bool
	netns map[string]bool
}

func (m *machine) defer_(name string, f func() error) {
	m.undo = append(m.undo, func() error {
		if err := f(); err != nil {
			return fmt.Errorf("undo %s: %w", name, err)
		}
		slog.Info("undone", "what", name)
		return nil
	})
}

// restore undoes every change, last first, and reports each failure.
func (m *machine) restore() {
	for i := len(m.undo) - 1; i >= 0; i-- {
		if err := m.undo[i](); err != nil {
			slog.Error("restoring the machine", "err", err)
		}
	}
	m.undo = nil
}

func sh(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// The sysctls the kubelet, kube-proxy and the CNI plugins may set.
var watchedSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
	"net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet",
	"net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables",
	"net/netfilter/nf_conntrack_max", "net/netfilter/nf_conntrack_tcp_timeout_established",
	"net/netfilter/nf_conntrack_tcp_timeout_close_wait",
}

func readSysctl(k string) (string, bool) {
	b, err := os.ReadFile(filepath.Join("/proc/sys", k))
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

func writeSysctl(k, v string) error {
	return os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644)
}

// saveSysctls records the watched sysctls and restores any that changed at the end.
func (m *machine) saveSysctls() {
	m.sysctls = map[string]string{}
	for _, k := range watchedSysctls {
		if v, ok := readSysctl(k); ok {
			m.sysctls[k] = v
		}
	}
	m.defer_("sysctls", func() error {
		for _, k := range watchedSysctls {
			old, ok := m.sysctls[k]
			if !ok {
				continue
			}
			if now, _ := readSysctl(k); now != old {
				if err := writeSysctl(k, old); err != nil {
					return fmt.Errorf("%s back to %s: %w", k, old, err)
				}
				slog.Info("sysctl restored", "key", k, "from", now, "to", old)
			}
		}
		return nil
	})
}

// setSysctl sets k to v (restored by saveSysctls' undo).
func (m *machine) setSysctl(k, v string) error {
	if _, ok := m.sysctls[k]; !ok {
		return fmt.Errorf("sysctl %s: not recorded before the run", k)
	}
	if err := writeSysctl(k, v); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", k, v, err)
	}
	return nil
}

// ours says whether an iptables line belongs to the test cluster: Kubernetes' and
// CNI's chains, the pod bridge, the pod and service ranges.
func ours(line string, bridge string) bool {
	for _, s := range []string{"KUBE-", "CNI-", bridge, "10.244.0.", "10.0.0."} {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

func iptablesSave(cmd string) (map[string][]string, error) {
	// Standard output only: iptables-save warns on standard error (of legacy
	// tables), which would otherwise land in the middle of a rule.
	b, err := exec.Command(cmd + "-save").Output()
	if err != nil {
		return nil, fmt.Errorf("%s-save: %w", cmd, err)
	}
	out := string(b)
	tables := map[string][]string{}
	table := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "*"):
			table = l[1:]
		case strings.HasPrefix(l, ":") || strings.HasPrefix(l, "-A "):
			tables[table] = append(tables[table], l)
		}
	}
	return tables, nil
}

// saveIptables records the rules and chains there are now; the undo deletes every
// rule and chain of the test cluster's that was not there before.
func (m *machine) saveIptables(bridge string) error {
	m.rules = map[string]map[string]bool{}
	for _, cmd := range []string{"iptables", "ip6tables"} {
		t, err := iptablesSave(cmd)
		if err != nil {
			return err
		}
		for table, lines := range t {
			key := cmd + " " + table
			m.rules[key] = map[string]bool{}
			for _, l := range lines {
				if strings.HasPrefix(l, ":") {
					l = strings.Fields(l)[0]
				}
				m.rules[key][l] = true
			}
		}
	}
	m.defer_("iptables rules and chains", func() error {
		var errs []string
		for _, cmd := range []string{"iptables", "ip6tables"} {
			t, err := iptablesSave(cmd)
			if err != nil {
				return err
			}
			for table, lines := range t {
				before := m.rules[cmd+" "+table]
				var chains []string
				for _, l := range lines {
					if strings.HasPrefix(l, ":") {
						c := strings.Fields(l)[0]
						if !before[c] && ours(c, bridge) {
							chains = append(chains, c[1:])
						}
						continue
					}
					if before[l] || !ours(l, bridge) {
						continue
					}
					args := append([]string{"-w", "-t", table, "-D"}, splitRule(strings.TrimPrefix(l, "-A "))...)
					if out, err := sh(cmd, args...); err != nil {
						errs = append(errs, out)
					}
				}
				for _, c := range chains {
					sh(cmd, "-w", "-t", table, "-F", c) //nolint:errcheck // -X says
				}
				for _, c := range chains {
					if out, err := sh(cmd, "-w", "-t", table, "-X", c); err != nil {
						errs = append(errs, out)
					}
				}
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("%s", strings.Join(errs, "; "))
		}
		return nil
	})
	return nil
}

// splitRule splits an iptables-save rule into arguments, keeping quoted strings.
func splitRule(s string) []string {
	var args []string
	var cur strings.Builder
	inQ, have := false, false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\\' && inQ && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case ch == '"':
			inQ = !inQ
			have = true
		case ch == ' ' && !inQ:
			if have {
				args = append(args, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(ch)
			have = true
		}
	}
	if have {
		args = append(args, cur.String())
	}
	return args
}

// saveNetns records the network namespaces in /run/netns; the undo unmounts and
// removes the ones the run added (the pods' sandboxes).
func (m *machine) saveNetns() {
	m.netns = map[string]bool{}
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		m.netns[e.Name()] = true
	}
	m.defer_("pod network namespaces", func() error {
		ents, _ := os.ReadDir("/run/netns")
		for _, e := range ents {
			if m.netns[e.Name()] || !strings.HasPrefix(e.Name(), "cni-") {
				continue
			}
			p := filepath.Join("/run/netns", e.Name())
			sh("umount", "-l", p) //nolint:errcheck // it may not be mounted
			if err := os.Remove(p); err != nil {
				return err
			}
		}
		return nil
	})
}

// unmountUnder unmounts every mount below dir, deepest first.
func unmountUnder(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var mps []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			mps = append(mps, f[4])
		}
	}
	slices.SortFunc(mps, func(a, b string) int { return len(b) - len(a) })
	for _, mp := range mps {
		if out, err := sh("umount", "-l", mp); err != nil && !strings.Contains(out, "not mounted") {
			return err
		}
	}
	return nil
}
