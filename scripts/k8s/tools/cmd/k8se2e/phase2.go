package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	nodeName = "e2e-node"
	bridge   = "rtk8s0"
	bridgeIP = "10.244.0.1"
	podCIDR  = "10.244.0.0/24"
	cgRoot   = "ringtrain-e2e"
	pauseRef = "docker.io/ringtrain-e2e/pause:1"
)

// phase2 runs the example overlay on a node of this machine: containerd with CRI,
// the kubelet, kube-proxy, CNI and CoreDNS beside the control plane.
type phase2 struct {
	*phase1
	m      *machine
	images string // a directory with pause.tar and ringtrain.tar (docker save)
	bins   string // ringtrain and coredns binaries
	start  time.Time
	sock   string
}

func (p *phase2) mark(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Printf("[%7.1fs] %s\n", time.Since(p.start).Seconds(), msg)
}

// nodeIP is the machine's first global IPv4 address off loopback and the bridges.
func nodeIP() (net.IP, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("interfaces: %w", err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 || i.Flags&net.FlagUp == 0 || strings.HasPrefix(i.Name, "docker") || strings.HasPrefix(i.Name, "br-") || strings.HasPrefix(i.Name, "veth") || i.Name == bridge {
			continue
		}
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP.To4(), nil
			}
		}
	}
	return nil, errors.New("no IPv4 address for the node")
}

func (p *phase2) writeFile(name, body string) (string, error) {
	path := p.c.path(name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	return path, os.WriteFile(path, []byte(body), 0o644)
}

// prepareMachine makes the bridge, the FORWARD rules and the cgroup root, each
// with its undo.
func (p *phase2) prepareMachine() error {
	m := p.m
	m.saveSysctls()
	if err := m.saveIptables(bridge); err != nil {
		return err
	}
	m.saveNetns()
	if _, err := sh("ip", "link", "add", bridge, "type", "bridge"); err != nil {
		return err
	}
	m.defer_("bridge "+bridge, func() error { _, err := sh("ip", "link", "del", bridge); return err })
	if _, err := sh("ip", "addr", "add", bridgeIP+"/24", "dev", bridge); err != nil {
		return err
	}
	if _, err := sh("ip", "link", "set", bridge, "up"); err != nil {
		return err
	}
	for _, dir := range []string{"-i", "-o"} {
		if _, err := sh("iptables", "-w", "-I", "FORWARD", "1", dir, bridge, "-j", "ACCEPT"); err != nil {
			return err
		}
	}
	// Pods reach Services through kube-proxy's DNAT on the same bridge.
	if err := m.setSysctl("net/bridge/bridge-nf-call-iptables", "1"); err != nil {
		return err
	}
	if err := m.setSysctl("net/ipv4/ip_forward", "1"); err != nil {
		return err
	}
	// A cgroup root of the node's own under every v1 hierarchy.
	ents, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return fmt.Errorf("cgroups: %w", err)
	}
	var made []string
	for _, e := range ents {
		d := filepath.Join("/sys/fs/cgroup", e.Name())
		if fi, err := os.Lstat(d); err != nil || !fi.IsDir() {
			continue
		}
		if err := os.Mkdir(filepath.Join(d, cgRoot), 0o755); err == nil {
			made = append(made, filepath.Join(d, cgRoot))
		}
	}
	m.defer_("cgroups /"+cgRoot, func() error {
		// Every process left in them is the node's: containers the kubelet did not stop.
		for _, d := range made {
			filepath.WalkDir(d, func(path string, e os.DirEntry, err error) error { //nolint:errcheck // best effort
				if err == nil && e.Name() == "cgroup.procs" {
					b, _ := os.ReadFile(path)
					for _, f := range strings.Fields(string(b)) {
						if pid, err := strconv.Atoi(f); err == nil {
							syscall.Kill(pid, syscall.SIGKILL) //nolint:errcheck // gone already is fine
						}
					}
				}
				return nil
			})
		}
		time.Sleep(time.Second)
		var errs []error
		for _, d := range made {
			var dirs []string
			filepath.WalkDir(d, func(path string, e os.DirEntry, err error) error { //nolint:errcheck // best effort
				if err == nil && e.IsDir() {
					dirs = append(dirs, path)
				}
				return nil
			})
			slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
			for _, x := range dirs {
				if err := os.Remove(x); err != nil {
					errs = append(errs, err)
				}
			}
		}
		return errors.Join(errs...)
	})
	p.mark("machine prepared: bridge %s %s/24, FORWARD accepts it, bridge-nf-call-iptables=1, cgroup root /%s (%d hierarchies)", bridge, bridgeIP, cgRoot, len(made))
	return nil
}

// containerd starts a containerd with CRI of its own (root, state, socket) and
// imports the pause and ringtrain images.
func (p *phase2) containerd(ctx context.Context) error {
	d := p.c.path("containerd")
	p.sock = filepath.Join(d, "containerd.sock")
	cniConf := p.c.path("cni", "net.d")
	if err := os.MkdirAll(cniConf, 0o755); err != nil {
		return err
	}
	cfg, err := p.writeFile("containerd/config.toml", fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, d+"/root", d+"/state", p.sock, p.sock+".ttrpc", pauseRef, cniConf, d+"/opt"))
	if err != nil {
		return err
	}
	ctrd, err := p.c.start("containerd", "/usr/bin/containerd", "--config", cfg)
	if err != nil {
		return err
	}
	p.m.defer_("containerd's shims and mounts", func() error {
		// The shims outlive containerd; they are the ones that name its socket.
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, f := range procs {
			b, err := os.ReadFile(f)
			if err == nil && strings.Contains(string(b), "containerd-shim") && strings.Contains(string(b), d) {
				if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
					syscall.Kill(pid, syscall.SIGKILL) //nolint:errcheck // gone already is fine
				}
			}
		}
		time.Sleep(500 * time.Millisecond)
		return unmountUnder(p.c.dir)
	})
	if err := eventually(ctx, time.Minute, "containerd socket", func() error {
		if err := ctrd.exited(); err != nil {
			return err
		}
		_, err := sh("ctr", "-a", p.sock, "version")
		return err
	}); err != nil {
		return err
	}
	for _, img := range []string{"pause.tar", "ringtrain.tar"} {
		if out, err := sh("ctr", "-a", p.sock, "-n", "k8s.io", "images", "import", filepath.Join(p.images, img)); err != nil {
			return fmt.Errorf("import %s: %w", img, err)
		} else {
			slog.Info("imported", "image", img, "out", strings.TrimSpace(out))
		}
	}
	out, _ := sh("ctr", "-a", p.sock, "-n", "k8s.io", "images", "ls", "-q")
	p.mark("containerd with CRI up (socket %s); images: %s", p.sock, strings.Join(strings.Fields(out), " "))
	// The pod network: a bridge, host-local addresses, portmap.
	_, err = p.writeFile("cni/net.d/10-ringtrain.conflist", fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "ringtrain-e2e",
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q, "gateway": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, bridge, p.c.path("cni", "ipam"), podCIDR, bridgeIP))
	return err
}

// coredns serves cluster.local from the API on the bridge's address, as the pods'
// resolver; every other name is NXDOMAIN (nothing outside is reachable).
func (p *phase2) coredns(ctx context.Context) error {
	cf, err := p.writeFile("coredns/Corefile", fmt.Sprintf(`cluster.local:53 in-addr.arpa:53 {
    bind %s
    errors
    kubernetes cluster.local in-addr.arpa {
        kubeconfig %s e2e
        ttl 2
    }
}
.:53 {
    bind %s
    errors
    template ANY ANY {
        rcode NXDOMAIN
    }
}
`, bridgeIP, p.c.Kubeconfig, bridgeIP))
	if err != nil {
		return err
	}
	dns, err := p.c.start("coredns", filepath.Join(p.bins, "coredns"), "-conf", cf)
	if err != nil {
		return err
	}
	if err := eventually(ctx, time.Minute, "coredns", func() error {
		if err := dns.exited(); err != nil {
			return err
		}
		var r net.Resolver
		r.PreferGo = true
		r.Dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "udp", bridgeIP+":53")
		}
		ips, err := r.LookupHost(ctx, "kubernetes.default.svc.cluster.local")
		if err != nil {
			return err
		}
		if !slices.Contains(ips, "10.0.0.1") {
			return fmt.Errorf("kubernetes.default: %v", ips)
		}
		return nil
	}); err != nil {
		return err
	}
	p.mark("CoreDNS serving cluster.local on %s:53 (kubernetes.default.svc.cluster.local -> 10.0.0.1)", bridgeIP)
	return nil
}

// node starts the kubelet and kube-proxy and waits for the node to be Ready.
func (p *phase2) node(ctx context.Context) error {
	ip, err := nodeIP()
	if err != nil {
		return err
	}
	if _, err := p.c.issue("kubelet-serving", nodeName, nil, true, []string{nodeName, "localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), ip}); err != nil {
		return err
	}
	kport, err := freePort()
	if err != nil {
		return err
	}
	hport, err := freePort()
	if err != nil {
		return err
	}
	resolv, err := p.writeFile("kubelet/resolv.conf", "nameserver "+bridgeIP+"\n")
	if err != nil {
		return err
	}
	pki := func(f string) string { return p.c.path("pki", f) }
	cfg, err := p.writeFile("kubelet/config.yaml", fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /%s
containerRuntimeEndpoint: unix://%s
address: %s
port: %d
healthzBindAddress: 127.0.0.1
healthzPort: %d
readOnlyPort: 0
tlsCertFile: %s
tlsPrivateKeyFile: %s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %s}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: [%s]
resolvConf: %s
podLogsDir: %s
failSwapOn: false
registerNode: true
evictionHard: {memory.available: 100Mi, nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
`, cgRoot, p.sock, ip, kport, hport, pki("kubelet-serving.crt"), pki("kubelet-serving.key"), pki("ca.crt"), bridgeIP, resolv, p.c.path("kubelet", "pod-logs")))
	if err != nil {
		return err
	}
	root := p.c.path("kubelet", "root")
	p.m.defer_("the kubelet's mounts", func() error { return unmountUnder(root) })
	kl, err := p.c.start("kubelet", "kubelet", "--config="+cfg, "--kubeconfig="+p.c.path("kubelet.kubeconfig"),
		"--root-dir="+root, "--hostname-override="+nodeName, "--node-ip="+ip.String(), "--v=1")
	if err != nil {
		return err
	}
	if err := eventually(ctx, 3*time.Minute, "node Ready", func() error {
		if err := kl.exited(); err != nil {
			return err
		}
		n, err := p.kube.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("node %s not Ready: %v", nodeName, n.Status.Conditions)
	}); err != nil {
		return err
	}
	p.mark("kubelet up, node %s Ready (InternalIP %s)", nodeName, ip)

	hz, err := freePort()
	if err != nil {
		return err
	}
	mz, err := freePort()
	if err != nil {
		return err
	}
	pcfg, err := p.writeFile("kube-proxy/config.yaml", fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: %s}
hostnameOverride: %s
mode: iptables
clusterCIDR: %s
healthzBindAddress: 127.0.0.1:%d
metricsBindAddress: 127.0.0.1:%d
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
`, p.c.path("kube-proxy.kubeconfig"), nodeName, podCIDR, hz, mz))
	if err != nil {
		return err
	}
	kp, err := p.c.start("kube-proxy", "kube-proxy", "--config="+pcfg)
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, kp, &http2Client, fmt.Sprintf("http://127.0.0.1:%d/healthz", hz), time.Minute); err != nil {
		return err
	}
	p.mark("kube-proxy (iptables) healthy")
	return nil
}

// volumes makes hostPath PersistentVolumes for the data claim and the three Raft
// claims, owned by the pods' user (hostPath volumes get no fsGroup).
func (p *phase2) volumes(ctx context.Context) error {
	for i := range 5 {
		dir := p.c.path("pv", strconv.Itoa(i))
		// The workers' audit logs go to run/audit on the data volume, whichever
		// volume that is.
		for _, d := range []string{dir, filepath.Join(dir, "run"), filepath.Join(dir, "run", "audit")} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
			if err := os.Chown(d, 65532, 65532); err != nil {
				return err
			}
		}
		pv := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("e2e-pv-%d", i)},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")},
				AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce, corev1.ReadWriteMany},
				PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
				PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir}},
			},
		}
		if _, err := p.kube.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("volume %s: %w", pv.Name, err)
		}
	}
	return nil
}

// secrets issues every identity's certificate with `ringtrain certs cluster`, the
// way docs/security.md makes them without cert-manager, as the Secrets the
// Certificates would have made.
func (p *phase2) secrets(ctx context.Context, ns string, workers int) error {
	out := p.c.path("ringtrain-certs")
	var ws []string
	for i := range workers {
		ws = append(ws, fmt.Sprintf("ringtrain-worker-%d", i))
	}
	if _, err := sh(filepath.Join(p.bins, "ringtrain"), "certs", "cluster", "--ca", p.c.path("ringtrain-ca"), "--out", out,
		"--coordinator-ids", "ringtrain-coordinator-0,ringtrain-coordinator-1,ringtrain-coordinator-2",
		"--worker-ids", strings.Join(ws, ","), "--admins", "ringtrain-submit"); err != nil {
		return err
	}
	ents, err := os.ReadDir(out)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		if name == "ringtrain-submit" {
			name = "ringtrain-admin"
		}
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Type: corev1.SecretTypeTLS, Data: map[string][]byte{}}
		for _, f := range []string{"ca.crt", "tls.crt", "tls.key"} {
			b, err := os.ReadFile(filepath.Join(out, e.Name(), f))
			if err != nil {
				return err
			}
			s.Data[f] = b
		}
		if _, err := p.kube.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("secret %s: %w", name, err)
		}
	}
	return nil
}

var digestRE = regexp.MustCompile(`done: step (\d+).*weights (\S+);`)

// ns2 is the namespace phase 2's scenario trains in.
const ns2 = "ringtrain-example"

// logTails prints the last lines of every container of every pod in ns: after a failed
// scenario, what the coordinators and workers were doing.
func (p *phase2) logTails(ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pods, err := p.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		slog.Warn("listing the pods for their logs", "err", err)
		return
	}
	tail := int64(30)
	for _, pod := range pods.Items {
		for _, c := range pod.Spec.Containers {
			b, err := p.kube.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{Container: c.Name, TailLines: &tail}).DoRaw(ctx)
			if err != nil {
				slog.Warn("pod log", "pod", pod.Name, "container", c.Name, "err", err)
				continue
			}
			slog.Info("pod log tail", "pod", pod.Name, "container", c.Name, "log", string(b))
		}
	}
}

// logs returns a container's log ("" when there is none yet).
func (p *phase2) logs(ctx context.Context, ns, pod, container string) string {
	b, err := p.kube.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
	if err != nil {
		return ""
	}
	return string(b)
}

func ready(pod corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// watchReady logs every change of a pod's readiness in ns until ctx ends, and
// counts the flips.
func (p *phase2) watchReady(ctx context.Context, ns string, flips map[string]int) {
	seen := map[string]bool{}
	for ctx.Err() == nil {
		l, err := p.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, pod := range l.Items {
				r := ready(pod)
				if old, ok := seen[pod.Name]; !ok && r || ok && old != r {
					p.mark("probe: pod %s Ready=%v", pod.Name, r)
					flips[pod.Name]++
				}
				seen[pod.Name] = r
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

var http2Client = *selfSignedHTTP()

// leader returns the coordinator pod whose log says it became leader last, and the term.
func (p *phase2) leader(ctx context.Context, ns string) (string, int, error) {
	best, bestTerm := "", -1
	for i := range 3 {
		pod := fmt.Sprintf("ringtrain-coordinator-%d", i)
		for _, l := range strings.Split(p.logs(ctx, ns, pod, "coordinator"), "\n") {
			if !strings.Contains(l, "became leader") {
				continue
			}
			m := regexp.MustCompile(`term[=:" ]+(\d+)`).FindStringSubmatch(l)
			t := 0
			if m != nil {
				t, _ = strconv.Atoi(m[1])
			}
			if t > bestTerm {
				best, bestTerm = pod, t
			}
		}
	}
	if best == "" {
		return "", 0, errors.New("no coordinator says it became leader")
	}
	return best, bestTerm, nil
}

// resolve checks that CoreDNS answers each worker's stable host name under the
// headless Service with the address of the pod that holds it now.
func (p *phase2) resolve(ctx context.Context, ns string) error {
	pods, err := p.pods(ctx, instance{namespace: ns, prefix: "ringtrain"}, "worker")
	if err != nil {
		return err
	}
	r := net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", bridgeIP+":53")
	}}
	var seen []string
	for _, pod := range pods {
		if pod.Status.Phase != corev1.PodRunning || pod.DeletionTimestamp != nil {
			continue
		}
		name := fmt.Sprintf("%s.ringtrain-worker.%s.svc.cluster.local", pod.Spec.Hostname, ns)
		ips, err := r.LookupHost(ctx, name)
		if err != nil {
			return fmt.Errorf("resolve %s: %w", name, err)
		}
		if !slices.Equal(ips, []string{pod.Status.PodIP}) {
			return fmt.Errorf("%s resolves to %v, pod %s has %s", name, ips, pod.Name, pod.Status.PodIP)
		}
		seen = append(seen, name+" -> "+pod.Status.PodIP)
	}
	if len(seen) < 2 {
		return fmt.Errorf("only %d running workers to resolve", len(seen))
	}
	p.mark("DNS: %s", strings.Join(seen, ", "))
	return nil
}

// workerStep returns the highest training step any worker's log has reached.
func (p *phase2) workerStep(ctx context.Context, ns string) int {
	pods, _ := p.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=worker"})
	best := 0
	re := regexp.MustCompile(`step["=: ]+(\d+)`)
	for _, pod := range pods.Items {
		for _, m := range re.FindAllStringSubmatch(p.logs(ctx, ns, pod.Name, "worker"), -1) {
			if s, _ := strconv.Atoi(m[1]); s > best {
				best = s
			}
		}
	}
	return best
}

func (p *phase2) scenario(ctx context.Context) error {
	ns := ns2
	crds := filepath.Join(p.repo, "scripts/k8s/testdata/cert-manager-crds.yaml")
	if _, _, err := p.kubectl(ctx, "apply", "-f", crds); err != nil {
		return err
	}
	if _, _, err := p.kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd/certificates.cert-manager.io", "crd/issuers.cert-manager.io"); err != nil {
		return err
	}
	if err := p.volumes(ctx); err != nil {
		return err
	}
	// The example overlay, with an audit log per worker pod on the data volume.
	dir, err := os.MkdirTemp("", "ringtrain-phase2-")
	if err != nil {
		return err
	}
	p.tmpDirs = append(p.tmpDirs, dir)
	rel, err := filepath.Rel(dir, filepath.Join(p.repo, "deploy/k8s/overlays/example"))
	if err != nil {
		return err
	}
	kust := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %s
patches:
  - target: {group: batch, kind: Job, name: ringtrain-worker}
    patch: |-
      - op: add
        path: /spec/template/spec/containers/0/env/-
        value: {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
      - op: add
        path: /spec/template/spec/containers/0/env/-
        value: {name: RINGTRAIN_AUDIT_LOG, value: /data/run/audit/$(POD_NAME).jsonl}
`, rel)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kust), 0o644); err != nil {
		return err
	}
	// The namespace first, for the Secrets; then everything.
	if _, _, err := p.kubectl(ctx, "create", "namespace", ns, "--save-config"); err != nil {
		return err
	}
	if err := p.secrets(ctx, ns, 3); err != nil {
		return err
	}
	out, stderr, err := p.kubectl(ctx, "apply", "-k", dir)
	if err != nil {
		return err
	}
	p.mark("applied the example overlay (+ audit logs): %d objects; %s", len(strings.Split(strings.TrimSpace(out), "\n")), strings.TrimSpace(stderr))
	flips := map[string]int{}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go p.watchReady(wctx, ns, flips)

	if err := eventually(ctx, 5*time.Minute, "coordinators ready", func() error {
		if err := p.c.healthy(); err != nil {
			return err
		}
		pods, err := p.pods(ctx, instance{namespace: ns, prefix: "ringtrain"}, "coordinator")
		if err != nil {
			return err
		}
		n := 0
		for _, pod := range pods {
			if ready(pod) {
				n++
			}
		}
		if n != 3 {
			return fmt.Errorf("%d of %d coordinators ready", n, len(pods))
		}
		return nil
	}); err != nil {
		return err
	}
	var lead string
	var term int
	if err := eventually(ctx, time.Minute, "a leader", func() (err error) {
		lead, term, err = p.leader(ctx, ns)
		return err
	}); err != nil {
		return err
	}
	p.mark("3 coordinators Ready; leader %s (term %d)", lead, term)
	if err := eventually(ctx, 5*time.Minute, "submit Job complete", func() error {
		j, err := p.kube.BatchV1().Jobs(ns).Get(ctx, "ringtrain-submit", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if j.Status.Succeeded != 1 {
			return fmt.Errorf("submit Job: %+v", j.Status)
		}
		return nil
	}); err != nil {
		return err
	}
	p.mark("Job ringtrain-submit complete (prepare, then submit)")
	if err := eventually(ctx, 2*time.Minute, "workers in DNS", func() error { return p.resolve(ctx, ns) }); err != nil {
		return err
	}

	// Faults while it trains.
	waitStep := func(s int) error {
		return eventually(ctx, 10*time.Minute, fmt.Sprintf("a worker at step %d", s), func() error {
			if got := p.workerStep(ctx, ns); got < s {
				return fmt.Errorf("step %d", got)
			}
			return nil
		})
	}
	if err := waitStep(200); err != nil {
		return err
	}
	pods, err := p.pods(ctx, instance{namespace: ns, prefix: "ringtrain"}, "worker")
	if err != nil {
		return err
	}
	var victim string
	for _, pod := range pods {
		if pod.Spec.Hostname == "ringtrain-worker-1" && pod.DeletionTimestamp == nil {
			victim = pod.Name
		}
	}
	if _, _, err := p.kubectl(ctx, "-n", ns, "delete", "pod", victim, "--wait=false"); err != nil {
		return err
	}
	p.mark("fault: deleted worker pod %s at step >= 200", victim)
	if err := waitStep(600); err != nil {
		return err
	}
	if lead, term, err = p.leader(ctx, ns); err != nil {
		return err
	}
	if _, _, err := p.kubectl(ctx, "-n", ns, "delete", "pod", lead, "--wait=false"); err != nil {
		return err
	}
	p.mark("fault: deleted the leader's pod %s (term %d) at step >= 600", lead, term)
	if err := eventually(ctx, 2*time.Minute, "a new leader", func() error {
		l, t, err := p.leader(ctx, ns)
		if err != nil {
			return err
		}
		if t <= term {
			return fmt.Errorf("leader %s term %d", l, t)
		}
		p.mark("new leader %s (term %d)", l, t)
		return nil
	}); err != nil {
		return err
	}
	if err := waitStep(900); err != nil {
		return err
	}
	if _, _, err := p.kubectl(ctx, "-n", ns, "patch", "job", "ringtrain-worker", "--type=merge", "-p", `{"spec":{"parallelism":3,"completions":3}}`); err != nil {
		return err
	}
	p.mark("scale: workers 2 -> 3 at step >= 900")
	if err := waitStep(1300); err != nil {
		return err
	}
	if _, _, err := p.kubectl(ctx, "-n", ns, "patch", "job", "ringtrain-worker", "--type=merge", "-p", `{"spec":{"parallelism":2,"completions":2}}`); err != nil {
		return err
	}
	p.mark("scale: workers 3 -> 2 at step >= 1300")
	if err := eventually(ctx, 15*time.Minute, "worker Job complete", func() error {
		if err := p.c.healthy(); err != nil {
			return err
		}
		j, err := p.kube.BatchV1().Jobs(ns).Get(ctx, "ringtrain-worker", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range j.Status.Conditions {
			if c.Type == "Failed" && c.Status == corev1.ConditionTrue {
				return fmt.Errorf("worker Job failed: %s", c.Message)
			}
			if c.Type == "Complete" && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("worker Job: succeeded %d active %d", j.Status.Succeeded, j.Status.Active)
	}); err != nil {
		return err
	}
	pods, err = p.pods(ctx, instance{namespace: ns, prefix: "ringtrain"}, "worker")
	if err != nil {
		return err
	}
	digests := map[string][]string{}
	for _, pod := range pods {
		if pod.Status.Phase != corev1.PodSucceeded {
			continue
		}
		m := digestRE.FindStringSubmatch(p.logs(ctx, ns, pod.Name, "worker"))
		if m == nil {
			continue
		}
		digests[m[2]] = append(digests[m[2]], pod.Name+"@"+m[1])
	}
	if len(digests) != 1 {
		return fmt.Errorf("final weights digests %v, want one", digests)
	}
	p.mark("worker Job Complete; final weights agree: %v", digests)
	stopWatch()
	// The audit, over every worker pod's log on the data volume.
	logs, _ := filepath.Glob(p.c.path("pv", "*", "run", "audit", "*.jsonl"))
	if len(logs) == 0 {
		return errors.New("no audit logs on the data volume")
	}
	if out, err := sh(filepath.Join(p.bins, "ringtrain"), append([]string{"audit", "--streams", "6"}, logs...)...); err != nil {
		return err
	} else {
		p.mark("ringtrain audit over %d logs: %s", len(logs), strings.TrimSpace(out))
	}
	p.mark("readiness flips observed: %v", flips)
	return nil
}

// runPhase2 is phase 2 from start to end; the machine is restored on every way out.
func runPhase2(ctx context.Context, c *cluster, repo, images, bins string) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("phase 2 needs root")
	}
	for _, b := range []string{"/usr/bin/containerd", "/usr/sbin/runc", "/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/portmap"} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("phase 2 needs %s (apt-get install containerd runc containernetworking-plugins): %w", b, err)
		}
	}
	m := &machine{}
	// c.Close (the caller's) stops the node's processes, then restores the machine,
	// then removes the directory.
	c.beforeRemove = m.restore
	p := &phase2{m: m, images: images, bins: bins, start: time.Now()}
	if err := c.controlPlane(ctx, map[string][2]string{
		"kubelet":    {"system:node:" + nodeName, "system:nodes"},
		"kube-proxy": {"system:kube-proxy", ""},
	}, "--kubelet-preferred-address-types=InternalIP"); err != nil {
		return err
	}
	p.mark("control plane ready")
	if p.phase1, err = newPhase1(c, repo); err != nil {
		return err
	}
	defer func() {
		for _, d := range p.tmpDirs {
			os.RemoveAll(d)
		}
	}()
	if err := p.prepareMachine(); err != nil {
		return err
	}
	if err := p.containerd(ctx); err != nil {
		return err
	}
	if err := p.coredns(ctx); err != nil {
		return err
	}
	if err := p.node(ctx); err != nil {
		return err
	}
	err = p.scenario(ctx)
	if err != nil {
		p.logTails(ns2)
	}
	// Pods first, so that the kubelet tears their sandboxes down.
	dctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, _, derr := p.kubectl(dctx, "delete", "namespace", ns2, "--wait=true", "--timeout=60s"); derr != nil {
		slog.Warn("deleting the namespace", "err", derr)
	}
	if err != nil {
		if b, e := exec.Command("sh", "-c", "tail -n 40 "+c.path("logs", "kubelet.log")).Output(); e == nil {
			slog.Info("kubelet log tail", "log", string(b))
		}
	}
	p.mark("phase 2 scenario done (err=%v); tearing down", err)
	return err
}
