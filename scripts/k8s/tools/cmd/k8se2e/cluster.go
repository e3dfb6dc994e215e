package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one control-plane process, its output in dir/logs/<name>.log.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done is closed
}

// exited reports whether the process is gone, with its status and the tail of its log.
func (p *proc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v); its log ends:\n%s", p.name, p.err, tail(p.log, 30))
	default:
		return nil
	}
}

// stop sends SIGTERM to the process group and SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		slog.Warn("process did not stop on SIGTERM, killing it", "name", p.name)
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// Whatever the process group still holds (children) goes too.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// cluster is a control plane on loopback with its own temporary directory.
type cluster struct {
	dir  string // everything the cluster writes: certificates, etcd, logs
	bin  string // the directory holding the Kubernetes and etcd binaries
	keep bool   // leave dir behind (for debugging)
	// beforeRemove runs after the processes stopped, before dir is removed (phase 2
	// unmounts and restores the machine there).
	beforeRemove func()

	mu    sync.Mutex
	procs []*proc

	ca      *x509.Certificate
	caKey   *ecdsa.PrivateKey
	apiPort int
	// Kubeconfig is the admin kubeconfig (system:masters).
	Kubeconfig string
	admin      tls.Certificate
}

func newCluster(bin string, keep bool) (*cluster, error) {
	dir, err := os.MkdirTemp("", "ringtrain-k8s-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	c := &cluster{dir: dir, bin: bin, keep: keep}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("logs dir: %w", err)
	}
	return c, nil
}

// Close stops every process, last started first, and removes the directory.
func (c *cluster) Close() {
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(15 * time.Second)
	}
	if c.beforeRemove != nil {
		c.beforeRemove()
		c.beforeRemove = nil
	}
	if c.keep {
		slog.Info("kept the cluster's directory", "dir", c.dir)
		return
	}
	if err := os.RemoveAll(c.dir); err != nil {
		slog.Error("removing the cluster's directory", "dir", c.dir, "err", err)
	}
}

func (c *cluster) path(elem ...string) string {
	return filepath.Join(append([]string{c.dir}, elem...)...)
}

// start runs bin with args in its own process group; it dies with this process.
func (c *cluster) start(name, bin string, args ...string) (*proc, error) {
	logPath := c.path("logs", name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("log of %s: %w", name, err)
	}
	if !strings.Contains(bin, "/") {
		bin = filepath.Join(c.bin, bin)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = c.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	slog.Info("started", "name", name, "pid", cmd.Process.Pid, "log", logPath)
	return p, nil
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitHTTP polls url until it answers 200, the process dies or ctx ends.
func waitHTTP(ctx context.Context, p *proc, client *http.Client, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		if err := p.exited(); err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("request %s: %w", url, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			var b bytes.Buffer
			_, _ = b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, b.String())
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %w (last answer: %s); its log ends:\n%s", p.name, url, ctx.Err(), last, tail(p.log, 30))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// writePEM writes one PEM block to path.
func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// issue makes a key and a certificate signed by the cluster's CA, written as
// name.crt and name.key.
func (c *cluster) issue(name, cn string, orgs []string, server bool, dns []string, ips []net.IP) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("key for %s: %w", name, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("serial for %s: %w", name, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(48 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	if server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.ca, &key.PublicKey, c.caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate for %s: %w", name, err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("key for %s: %w", name, err)
	}
	if err := writePEM(c.path("pki", name+".crt"), "CERTIFICATE", der, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	if err := writePEM(c.path("pki", name+".key"), "EC PRIVATE KEY", kder, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// makePKI writes the CA, the API server's serving certificate, the clients'
// certificates, the service-account key pair and a kubeconfig per client.
func (c *cluster) makePKI(clients map[string][2]string) error {
	if err := os.MkdirAll(c.path("pki"), 0o700); err != nil {
		return fmt.Errorf("pki dir: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ringtrain-e2e-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(48 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("CA certificate: %w", err)
	}
	if c.ca, err = x509.ParseCertificate(der); err != nil {
		return fmt.Errorf("CA certificate: %w", err)
	}
	c.caKey = key
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("CA key: %w", err)
	}
	if err := writePEM(c.path("pki", "ca.crt"), "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	if err := writePEM(c.path("pki", "ca.key"), "EC PRIVATE KEY", kder, 0o600); err != nil {
		return err
	}
	// The service-account token signing key.
	sa, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("service-account key: %w", err)
	}
	saDER, err := x509.MarshalECPrivateKey(sa)
	if err != nil {
		return fmt.Errorf("service-account key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		return fmt.Errorf("service-account key: %w", err)
	}
	if err := writePEM(c.path("pki", "sa.key"), "EC PRIVATE KEY", saDER, 0o600); err != nil {
		return err
	}
	if err := writePEM(c.path("pki", "sa.pub"), "PUBLIC KEY", pubDER, 0o644); err != nil {
		return err
	}
	if _, err := c.issue("apiserver", "kube-apiserver", nil, true,
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		[]net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 0, 0, 1)}); err != nil {
		return err
	}
	if _, err := c.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, false, nil, nil); err != nil {
		return err
	}
	if c.apiPort, err = freePort(); err != nil {
		return err
	}
	for name, subj := range clients {
		var orgs []string
		if subj[1] != "" {
			orgs = []string{subj[1]}
		}
		cert, err := c.issue(name, subj[0], orgs, false, nil, nil)
		if err != nil {
			return err
		}
		if name == "admin" {
			c.admin = cert
		}
		if err := c.writeKubeconfig(name); err != nil {
			return err
		}
	}
	c.Kubeconfig = c.path(admin + ".kubeconfig")
	return nil
}

const admin = "admin"

// writeKubeconfig writes name.kubeconfig for the client certificate name.
func (c *cluster) writeKubeconfig(name string) error {
	read := func(f string) (string, error) {
		b, err := os.ReadFile(c.path("pki", f))
		return base64.StdEncoding.EncodeToString(b), err
	}
	ca, err := read("ca.crt")
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", name, err)
	}
	crt, err := read(name + ".crt")
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", name, err)
	}
	key, err := read(name + ".key")
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", name, err)
	}
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://127.0.0.1:%d
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: e2e
  context:
    cluster: e2e
    user: %s
current-context: e2e
`, c.apiPort, ca, name, crt, key, name)
	p := c.path(name + ".kubeconfig")
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		return fmt.Errorf("kubeconfig %s: %w", name, err)
	}
	return nil
}

// adminHTTP is an HTTPS client that trusts the cluster's CA and presents the
// admin certificate.
func (c *cluster) adminHTTP() *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(c.ca)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{c.admin}},
	}}
}

// selfSignedHTTP is for the components' own serving certificates, which they make
// themselves at start (loopback only).
func selfSignedHTTP() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // a loopback health check
	}}
}

// controlPlane starts etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler and waits for each to be ready.
func (c *cluster) controlPlane(ctx context.Context, more map[string][2]string, extraAPIServer ...string) error {
	clients := map[string][2]string{
		admin:                     {"kubernetes-admin", "system:masters"},
		"kube-controller-manager": {"system:kube-controller-manager", ""},
		"kube-scheduler":          {"system:kube-scheduler", ""},
	}
	maps.Copy(clients, more)
	if err := c.makePKI(clients); err != nil {
		return err
	}
	clientPort, err := freePort()
	if err != nil {
		return err
	}
	peerPort, err := freePort()
	if err != nil {
		return err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	t0 := time.Now()
	etcd, err := c.start("etcd", "etcd",
		"--name=e2e", "--data-dir="+c.path("etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=e2e="+peerURL,
		// A throwaway store: no fsync, which a shared disk makes slow.
		"--unsafe-no-fsync")
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, etcd, &http.Client{Timeout: 2 * time.Second}, etcdURL+"/health", time.Minute); err != nil {
		return err
	}
	slog.Info("etcd ready", "after", time.Since(t0).Round(time.Millisecond))

	pki := func(f string) string { return c.path("pki", f) }
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.apiPort),
		"--cert-dir=" + c.path("apiserver-certs"),
		"--tls-cert-file=" + pki("apiserver.crt"), "--tls-private-key-file=" + pki("apiserver.key"),
		"--client-ca-file=" + pki("ca.crt"),
		"--kubelet-client-certificate=" + pki("apiserver-kubelet-client.crt"),
		"--kubelet-client-key=" + pki("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority=" + pki("ca.crt"),
		"--service-account-key-file=" + pki("sa.pub"),
		"--service-account-signing-key-file=" + pki("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
		// Loopback is no address for the kubernetes Service's endpoints.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}
	t0 = time.Now()
	api, err := c.start("kube-apiserver", "kube-apiserver", append(args, extraAPIServer...)...)
	if err != nil {
		return err
	}
	base := "https://127.0.0.1:" + strconv.Itoa(c.apiPort)
	if err := waitHTTP(ctx, api, c.adminHTTP(), base+"/readyz", 3*time.Minute); err != nil {
		return err
	}
	slog.Info("kube-apiserver ready (/readyz)", "after", time.Since(t0).Round(time.Millisecond), "url", base)

	kcmPort, err := freePort()
	if err != nil {
		return err
	}
	kcmKC := c.path("kube-controller-manager.kubeconfig")
	t0 = time.Now()
	kcm, err := c.start("kube-controller-manager", "kube-controller-manager",
		"--kubeconfig="+kcmKC, "--authentication-kubeconfig="+kcmKC, "--authorization-kubeconfig="+kcmKC,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(kcmPort),
		"--cert-dir="+c.path("kcm-certs"),
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+pki("sa.key"),
		"--root-ca-file="+pki("ca.crt"),
		"--cluster-signing-cert-file="+pki("ca.crt"), "--cluster-signing-key-file="+pki("ca.key"),
		"--profiling=false")
	if err != nil {
		return err
	}
	schedPort, err := freePort()
	if err != nil {
		return err
	}
	schedKC := c.path("kube-scheduler.kubeconfig")
	sched, err := c.start("kube-scheduler", "kube-scheduler",
		"--kubeconfig="+schedKC, "--authentication-kubeconfig="+schedKC, "--authorization-kubeconfig="+schedKC,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(schedPort),
		"--cert-dir="+c.path("scheduler-certs"),
		"--leader-elect=false", "--profiling=false")
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, kcm, selfSignedHTTP(), "https://127.0.0.1:"+strconv.Itoa(kcmPort)+"/healthz", 2*time.Minute); err != nil {
		return err
	}
	if err := waitHTTP(ctx, sched, selfSignedHTTP(), "https://127.0.0.1:"+strconv.Itoa(schedPort)+"/healthz", 2*time.Minute); err != nil {
		return err
	}
	slog.Info("kube-controller-manager and kube-scheduler healthy", "after", time.Since(t0).Round(time.Millisecond))
	return nil
}

// healthy reports the first control-plane process that has exited.
func (c *cluster) healthy() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, p := range c.procs {
		if err := p.exited(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
