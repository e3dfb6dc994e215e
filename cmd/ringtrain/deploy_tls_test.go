package main

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ringtrain/ringtrain/security"
)

// cert-manager's Certificate and Issuer are not in k8s.io/api: these are the
// fields of their cert-manager.io/v1 schema the manifests use, decoded strictly,
// so a misspelt or unknown field fails the test as it would fail the API server.
type certificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretName  string   `json:"secretName"`
		CommonName  string   `json:"commonName,omitempty"`
		IsCA        bool     `json:"isCA,omitempty"`
		URIs        []string `json:"uris,omitempty"`
		DNSNames    []string `json:"dnsNames,omitempty"`
		Duration    string   `json:"duration,omitempty"`
		RenewBefore string   `json:"renewBefore,omitempty"`
		Usages      []string `json:"usages,omitempty"`
		PrivateKey  *struct {
			Algorithm      string `json:"algorithm,omitempty"`
			Size           int    `json:"size,omitempty"`
			RotationPolicy string `json:"rotationPolicy,omitempty"`
		} `json:"privateKey,omitempty"`
		IssuerRef struct {
			Name  string `json:"name"`
			Kind  string `json:"kind,omitempty"`
			Group string `json:"group,omitempty"`
		} `json:"issuerRef"`
	} `json:"spec"`
}

type issuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SelfSigned *struct{} `json:"selfSigned,omitempty"`
		CA         *struct {
			SecretName string `json:"secretName"`
		} `json:"ca,omitempty"`
	} `json:"spec"`
}

// checkCertManager checks the cert-manager objects against cert-manager's rules:
// an Issuer is exactly one kind; every Certificate has a Secret of its own name,
// an Issuer that is rendered, durations that parse with renewBefore shorter, the
// usages and keys ringtrain needs; a CA Issuer signs with a CA Certificate's Secret.
func checkCertManager(t *testing.T, r *rendered) {
	t.Helper()
	issuers := map[string]*issuer{}
	for _, is := range r.issuers {
		issuers[is.Name] = is
		if (is.Spec.SelfSigned == nil) == (is.Spec.CA == nil) {
			t.Errorf("Issuer %s: want exactly one of selfSigned and ca", is.Name)
		}
	}
	secrets := map[string]*certificate{}
	for _, c := range r.certificates {
		where := "Certificate " + c.Name
		if secrets[c.Spec.SecretName] != nil {
			t.Errorf("%s: Secret %s is also %s's", where, c.Spec.SecretName, secrets[c.Spec.SecretName].Name)
		}
		secrets[c.Spec.SecretName] = c
		if c.Spec.SecretName != c.Name {
			t.Errorf("%s: secretName %s, want the Certificate's name (kustomizeconfig.yaml renames them together)", where, c.Spec.SecretName)
		}
		if is := issuers[c.Spec.IssuerRef.Name]; is == nil || (c.Spec.IssuerRef.Kind != "" && c.Spec.IssuerRef.Kind != "Issuer") {
			t.Errorf("%s: issuerRef %+v is not a rendered Issuer", where, c.Spec.IssuerRef)
		}
		d, err1 := time.ParseDuration(c.Spec.Duration)
		rb := time.Duration(0)
		var err2 error
		if c.Spec.RenewBefore != "" {
			rb, err2 = time.ParseDuration(c.Spec.RenewBefore)
		}
		if err1 != nil || err2 != nil || rb >= d {
			t.Errorf("%s: duration %q, renewBefore %q: want durations with renewBefore shorter", where, c.Spec.Duration, c.Spec.RenewBefore)
		}
		if pk := c.Spec.PrivateKey; pk == nil || pk.Algorithm != "ECDSA" || pk.Size != 256 {
			t.Errorf("%s: want an ECDSA P-256 key", where)
		}
		if c.Spec.IsCA {
			continue
		}
		if !slices.Contains(c.Spec.Usages, "server auth") || !slices.Contains(c.Spec.Usages, "client auth") {
			t.Errorf("%s: usages %v: every process is a TLS server and client", where, c.Spec.Usages)
		}
		if len(c.Spec.URIs) != 1 {
			t.Errorf("%s: want one ringtrain URI SAN, have %v", where, c.Spec.URIs)
		}
	}
	for _, is := range r.issuers {
		if is.Spec.CA != nil {
			if ca := secrets[is.Spec.CA.SecretName]; ca == nil || !ca.Spec.IsCA {
				t.Errorf("Issuer %s: ca.secretName %s is no CA Certificate's Secret", is.Name, is.Spec.CA.SecretName)
			}
		}
	}
}

// tlsIdentity returns the identity of the certificate a container reads from
// its --tls-dir: the mounted projected volume's Secret for that directory and the
// Certificate that makes it.
func tlsIdentity(t *testing.T, r *rendered, where string, spec corev1.PodSpec, c corev1.Container, dir string) security.Identity {
	t.Helper()
	for _, m := range c.VolumeMounts {
		rel, err := filepath.Rel(m.MountPath, filepath.Join(dir, security.CertFile))
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name != m.Name || v.Projected == nil {
				continue
			}
			for _, src := range v.Projected.Sources {
				if src.Secret == nil {
					continue
				}
				found := len(src.Secret.Items) == 0 && rel == security.CertFile
				for _, it := range src.Secret.Items {
					found = found || (it.Key == security.CertFile && it.Path == rel)
				}
				if !found {
					continue
				}
				for _, cert := range r.certificates {
					if cert.Spec.SecretName == src.Secret.Name && len(cert.Spec.URIs) == 1 {
						u, err := parseURI(cert.Spec.URIs[0])
						if err != nil {
							t.Fatalf("%s: Certificate %s: %v", where, cert.Name, err)
						}
						checkSecretLayout(t, where, src.Secret, filepath.Dir(rel))
						return u
					}
				}
				t.Fatalf("%s: --tls-dir %s is Secret %s, which no Certificate makes", where, dir, src.Secret.Name)
			}
		}
	}
	t.Fatalf("%s: --tls-dir %s is not on a projected volume of certificate Secrets", where, dir)
	return security.Identity{}
}

// checkSecretLayout checks that a projected Secret gives the directory all three
// files of the Secret layout.
func checkSecretLayout(t *testing.T, where string, s *corev1.SecretProjection, dir string) {
	t.Helper()
	if len(s.Items) == 0 {
		return // the whole Secret: ca.crt, tls.crt and tls.key as they are
	}
	for _, f := range []string{security.CAFile, security.CertFile, security.KeyFile} {
		if !slices.ContainsFunc(s.Items, func(it corev1.KeyToPath) bool { return it.Key == f && it.Path == filepath.Join(dir, f) }) {
			t.Errorf("%s: Secret %s does not project %s into %s", where, s.Name, f, dir)
		}
	}
}

func parseURI(s string) (security.Identity, error) {
	role, id, ok := strings.Cut(strings.TrimPrefix(s, security.Scheme+"://"), "/")
	if !ok || !strings.HasPrefix(s, security.Scheme+"://") {
		return security.Identity{}, fmt.Errorf("URI %q is not %s://ROLE/ID", s, security.Scheme)
	}
	return security.NewIdentity(security.Role(role), id)
}

// checkRenderedTLS checks the certificates and the network policy of a rendered
// kustomization: every coordinator replica and worker index runs with --tls-dir
// holding the certificate of its own identity (its pod name, its host name), the
// submit step with an admin's; the health probes read the same; and the
// NetworkPolicies admit only the instance's own pods, on the ports they serve.
func checkRenderedTLS(t *testing.T, r *rendered, co *appsv1.StatefulSet, wk *batchv1.Job, submit *batchv1.Job, replicas int, submitCmds map[string]parsedCmd) {
	t.Helper()
	checkCertManager(t, r)
	ns := co.Namespace
	for i := range replicas {
		pod := fmt.Sprintf("%s-%d", co.Name, i)
		meta := podMeta{name: pod, namespace: ns, labels: map[string]string{appsv1.PodIndexLabel: strconv.Itoa(i)}}
		for k, v := range co.Spec.Template.Labels {
			meta.labels[k] = v
		}
		c := co.Spec.Template.Spec.Containers[0]
		p := parseArgs(t, pod, expandArgs(c.Args, containerEnv(t, pod, c, meta)), containerEnv(t, pod, c, meta))
		if got := tlsIdentity(t, r, pod, co.Spec.Template.Spec, c, p.flag("tls-dir")); got != (security.Identity{Role: security.RoleCoordinator, ID: pod}) {
			t.Errorf("coordinator %s runs with the certificate of %s", pod, got)
		}
	}
	for i := range int(*wk.Spec.Completions) {
		host := fmt.Sprintf("%s-%d", wk.Name, i)
		meta := indexedPod(ns, wk.Spec.Template, i)
		c := wk.Spec.Template.Spec.Containers[0]
		env := containerEnv(t, host, c, meta)
		p := parseArgs(t, host, expandArgs(c.Args, env), env)
		if got := tlsIdentity(t, r, host, wk.Spec.Template.Spec, c, p.flag("tls-dir")); got != (security.Identity{Role: security.RoleWorker, ID: host}) {
			t.Errorf("worker %s runs with the certificate of %s", host, got)
		}
	}
	for _, c := range submit.Spec.Template.Spec.Containers {
		if p := submitCmds[c.Name]; p.cmd.Name() == "submit" {
			if got := tlsIdentity(t, r, "Job "+submit.Name, submit.Spec.Template.Spec, c, p.flag("tls-dir")); got.Role != security.RoleAdmin {
				t.Errorf("Job %s submits with the certificate of %s, want an admin's", submit.Name, got)
			}
		}
	}

	// The network policy: for every port a coordinator or worker serves (but
	// /metrics), some policy selecting its pods admits exactly the instance's pods
	// that call it; nothing admits a pod of another instance or the whole world.
	instance := co.Spec.Template.Labels["app.kubernetes.io/instance"]
	pods := map[string]map[string]string{"coordinator": co.Spec.Template.Labels, "worker": wk.Spec.Template.Labels, "submit": submit.Spec.Template.Labels}
	stranger := map[string]string{"app.kubernetes.io/name": "ringtrain", "app.kubernetes.io/instance": "other", "app.kubernetes.io/component": "worker"}
	admits := func(target map[string]string, port int32, from map[string]string) bool {
		for _, np := range r.policies {
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err != nil || !sel.Matches(labels.Set(target)) {
				continue
			}
			for _, rule := range np.Spec.Ingress {
				portOK := len(rule.Ports) == 0
				for _, p := range rule.Ports {
					portOK = portOK || (p.Port != nil && p.Port.IntValue() == int(port))
				}
				fromOK := len(rule.From) == 0
				for _, peer := range rule.From {
					if peer.IPBlock != nil || peer.NamespaceSelector != nil || peer.PodSelector == nil {
						t.Errorf("NetworkPolicy %s admits more than pods of its namespace: %+v", np.Name, peer)
						continue
					}
					ps, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
					fromOK = fromOK || (err == nil && ps.Matches(labels.Set(from)))
				}
				if portOK && fromOK {
					return true
				}
			}
		}
		return false
	}
	isolated := func(target map[string]string) bool {
		for _, np := range r.policies {
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err == nil && sel.Matches(labels.Set(target)) && slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
				return true
			}
		}
		return false
	}
	co0 := co.Spec.Template.Spec.Containers[0]
	cp := parseArgs(t, "coordinator", co0.Args, nil)
	wp := parseArgs(t, "worker", wk.Spec.Template.Spec.Containers[0].Args, nil)
	lanes, _ := strconv.Atoi(wp.flag("data-port"))
	if lanes == 0 {
		t.Errorf("worker: no --data-port: the lanes' port is a free one, which a NetworkPolicy cannot name")
	}
	for _, tc := range []struct {
		target, what string
		port         int32
		callers      []string
	}{
		{"coordinator", "Raft", port(t, "coordinator", cp.flag("raft-addr")), []string{"coordinator"}},
		{"coordinator", "gRPC", port(t, "coordinator", cp.flag("grpc-addr")), []string{"coordinator", "worker", "submit"}},
		{"worker", "peer gRPC", port(t, "worker", wp.flag("listen")), []string{"worker"}},
		{"worker", "lanes", int32(lanes), []string{"worker"}},
	} {
		if !isolated(pods[tc.target]) {
			t.Errorf("no NetworkPolicy isolates the %s pods (instance %s)", tc.target, instance)
		}
		for from, l := range pods {
			if want := slices.Contains(tc.callers, from); admits(pods[tc.target], tc.port, l) != want {
				t.Errorf("NetworkPolicy: %s pods reach the %s's %s port %d: %v, want %v", from, tc.target, tc.what, tc.port, !want, want)
			}
		}
		if admits(pods[tc.target], tc.port, stranger) {
			t.Errorf("NetworkPolicy: a pod of another instance reaches the %s's %s port %d", tc.target, tc.what, tc.port)
		}
	}
	if !isolated(pods["submit"]) || admits(pods["submit"], 7001, pods["worker"]) {
		t.Errorf("NetworkPolicy: the submit Job's pod should admit nothing")
	}
}

// checkExecProbe checks an exec probe: `ringtrain health` by the image's binary on
// the loopback, reading the same certificate directory as the server (through
// the container's environment). It returns the port and service probed.
func checkExecProbe(t *testing.T, where string, probe *corev1.Probe, env map[string]string, server parsedCmd) (int32, string) {
	t.Helper()
	cmd := probe.Exec.Command
	if len(cmd) < 2 || cmd[0] != imageEntrypoint(t) {
		t.Errorf("%s: command %q: want the image's binary %s (the image has no shell)", where, cmd, imageEntrypoint(t))
		return 0, ""
	}
	// The probe runs in the container's environment: of its RINGTRAIN_* variables,
	// those that name a flag of `health` set it (RINGTRAIN_TLS_DIR: the certificate).
	health, _, err := newRoot().Find([]string{"health"})
	if err != nil {
		t.Fatal(err)
	}
	penv := map[string]string{}
	for k, v := range env {
		name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, "RINGTRAIN_"), "_", "-"))
		if strings.HasPrefix(k, "RINGTRAIN_") && health.Flags().Lookup(name) != nil {
			penv[k] = v
		}
	}
	for _, name := range []string{"addr", "service", "timeout"} {
		if v, ok := penv["RINGTRAIN_"+strings.ToUpper(name)]; ok {
			t.Errorf("%s: the container's environment sets --%s=%s of the check", where, name, v)
		}
	}
	p := parseArgs(t, where, cmd[1:], penv)
	if p.cmd.Name() != "health" {
		t.Fatalf("%s: runs %q, want `ringtrain health`", where, p.cmd.CommandPath())
	}
	if p.flag("tls-dir") != server.flag("tls-dir") {
		t.Errorf("%s: --tls-dir %q, the server's is %q", where, p.flag("tls-dir"), server.flag("tls-dir"))
	}
	host, _, err := net.SplitHostPort(p.flag("addr"))
	if err != nil || (host != "127.0.0.1" && host != "localhost") {
		t.Errorf("%s: --addr %s, want the loopback", where, p.flag("addr"))
	}
	check, err := time.ParseDuration(p.flag("timeout"))
	if err != nil || probe.TimeoutSeconds == 0 || check >= time.Duration(probe.TimeoutSeconds)*time.Second {
		t.Errorf("%s: health --timeout %s must end before the probe's timeoutSeconds %d", where, p.flag("timeout"), probe.TimeoutSeconds)
	}
	return port(t, where, p.flag("addr")), p.flag("service")
}
