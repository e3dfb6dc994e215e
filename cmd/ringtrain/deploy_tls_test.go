package main

import (
	"fmt"
	"maps"
	"net"
	"os"
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

// tlsIdentity returns the identity of the certificate a container of pod reads
// from its --tls-dir, and whether that certificate is the pod's own (perPod): a
// cert-manager csi-driver volume, issued for this pod alone when it starts, or the
// mounted projected volume's Secret for that directory and the Certificate that
// makes it (shared by every pod of the template).
func tlsIdentity(t *testing.T, r *rendered, where string, pod podMeta, spec corev1.PodSpec, c corev1.Container, dir string) (id security.Identity, perPod bool) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		rel, err := filepath.Rel(m.MountPath, filepath.Join(dir, security.CertFile))
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			if v.CSI != nil {
				return csiIdentity(t, r, where+" volume "+v.Name, pod, spec, v.CSI, rel), true
			}
			if v.Projected == nil {
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
						return u, false
					}
				}
				t.Fatalf("%s: --tls-dir %s is Secret %s, which no Certificate makes", where, dir, src.Secret.Name)
			}
		}
	}
	t.Fatalf("%s: --tls-dir %s is neither on a csi-driver volume nor on a projected volume of certificate Secrets", where, dir)
	return security.Identity{}, false
}

// csiDriver is cert-manager's csi-driver, and csiAttributes the volume attributes
// it reads (github.com/cert-manager/csi-driver, pkg/apis/v1alpha1): one outside
// this set is a misspelling the driver would ignore.
const csiDriver = "csi.cert-manager.io"

var csiAttributes = map[string]bool{}

func init() {
	for _, k := range []string{"issuer-name", "issuer-kind", "issuer-group", "literal-subject", "common-name",
		"organizations", "organizationalunits", "countries", "provinces", "localities", "streetaddresses",
		"postalcodes", "serialnumber", "dns-names", "ip-sans", "uri-sans", "duration", "is-ca", "key-usages",
		"key-algorithm", "key-encoding", "key-size", "ca-file", "certificate-file", "privatekey-file", "fs-group",
		"renew-before", "reuse-private-key", "pkcs12-enable", "pkcs12-filename", "pkcs12-password"} {
		csiAttributes[csiDriver+"/"+k] = true
	}
}

// csiExpand expands the variables the csi-driver expands in a volume's names
// (${POD_NAME}, ${POD_NAMESPACE}, ${POD_UID}, ${SERVICE_ACCOUNT_NAME}) for pod; any
// other is an error, as the driver refuses it.
func csiExpand(t *testing.T, where string, pod podMeta, spec corev1.PodSpec, s string) string {
	t.Helper()
	sa := spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	vars := map[string]string{"POD_NAME": pod.name, "POD_NAMESPACE": pod.namespace, "POD_UID": "uid-of-" + pod.name, "SERVICE_ACCOUNT_NAME": sa}
	return os.Expand(s, func(k string) string {
		v, ok := vars[k]
		if !ok {
			t.Errorf("%s: %q: the csi-driver knows no variable %s", where, s, k)
		}
		return v
	})
}

// csiIdentity checks a cert-manager csi-driver volume against the driver's rules
// and ringtrain's needs, and returns the identity of the certificate it issues
// for pod: a CA Issuer that is rendered, the files of the Secret layout at the
// mount's root (rel is tls.crt's path in the volume), an ECDSA P-256 key,
// server and client usage, durations with renew-before shorter, the files
// readable by the pod's group, and one ringtrain URI SAN.
func csiIdentity(t *testing.T, r *rendered, where string, pod podMeta, spec corev1.PodSpec, v *corev1.CSIVolumeSource, rel string) security.Identity {
	t.Helper()
	if v.Driver != csiDriver {
		t.Fatalf("%s: CSI driver %q, want %s", where, v.Driver, csiDriver)
	}
	if v.ReadOnly == nil || !*v.ReadOnly {
		t.Errorf("%s: want readOnly", where)
	}
	a := v.VolumeAttributes
	for k := range a {
		if !csiAttributes[k] {
			t.Errorf("%s: volume attribute %s is not one of the csi-driver's", where, k)
		}
	}
	attr := func(name, def string) string {
		if v, ok := a[csiDriver+"/"+name]; ok {
			return v
		}
		return def
	}
	// The driver's defaults for the files are the Secret layout's names.
	for name, want := range map[string]string{"ca-file": security.CAFile, "certificate-file": security.CertFile, "privatekey-file": security.KeyFile} {
		if got := attr(name, want); got != want {
			t.Errorf("%s: %s %q, want %q (--tls-dir reads the Secret layout)", where, name, got, want)
		}
	}
	if rel != security.CertFile {
		t.Errorf("%s: --tls-dir is %s's directory in the volume, the driver writes at its root", where, rel)
	}
	is := slices.IndexFunc(r.issuers, func(is *issuer) bool { return is.Name == attr("issuer-name", "") })
	if is < 0 || r.issuers[is].Spec.CA == nil || attr("issuer-kind", "Issuer") != "Issuer" || attr("issuer-group", "cert-manager.io") != "cert-manager.io" {
		t.Errorf("%s: issuer %s/%s is not a rendered CA Issuer", where, attr("issuer-kind", "Issuer"), attr("issuer-name", ""))
	}
	if attr("is-ca", "false") != "false" {
		t.Errorf("%s: is-ca: a process's certificate is no CA", where)
	}
	if !strings.EqualFold(attr("key-algorithm", "RSA"), "ECDSA") || attr("key-size", "") != "256" {
		t.Errorf("%s: key-algorithm %q key-size %q: want an ECDSA P-256 key (the driver's default is RSA)", where, attr("key-algorithm", ""), attr("key-size", ""))
	}
	var usages []string
	for u := range strings.SplitSeq(attr("key-usages", "digital signature,key encipherment"), ",") {
		usages = append(usages, strings.TrimSpace(u))
	}
	if !slices.Contains(usages, "server auth") || !slices.Contains(usages, "client auth") {
		t.Errorf("%s: key-usages %v: every process is a TLS server and client", where, usages)
	}
	d, err1 := time.ParseDuration(attr("duration", "2160h"))
	rb, err2 := time.ParseDuration(attr("renew-before", "0s"))
	if err1 != nil || err2 != nil || rb >= d {
		t.Errorf("%s: duration %q, renew-before %q: want durations with renew-before shorter", where, attr("duration", ""), attr("renew-before", ""))
	}
	// The driver writes the key for root alone unless fs-group names the group
	// that may read it: the process's.
	if psc := spec.SecurityContext; psc == nil || psc.RunAsGroup == nil || attr("fs-group", "") != strconv.FormatInt(*psc.RunAsGroup, 10) {
		t.Errorf("%s: fs-group %q: want the pod's runAsGroup, or the process cannot read its key", where, attr("fs-group", ""))
	}
	uris := strings.Split(csiExpand(t, where, pod, spec, attr("uri-sans", "")), ",")
	if len(uris) != 1 {
		t.Fatalf("%s: uri-sans %q: want one ringtrain URI SAN", where, attr("uri-sans", ""))
	}
	id, err := parseURI(strings.TrimSpace(uris[0]))
	if err != nil {
		t.Fatalf("%s: uri-sans: %v", where, err)
	}
	return id
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

// checkOwnKey checks what certificate keys a coordinator or worker pod holds. No
// pod mounts the CA's Secret (its key signs any identity). A pod with its own
// certificate (perPod: the csi-driver) mounts exactly one csi-driver volume and
// no Secret of a Certificate, so it holds no other identity's key; it gives no
// --id that the certificate does not name (without --id it takes the
// certificate's). With certificates shared through Secrets, every pod of the
// template mounts them all (the base's known limit, docs/security.md).
func checkOwnKey(t *testing.T, r *rendered, where string, spec corev1.PodSpec, p parsedCmd, own security.Identity, perPod bool) {
	t.Helper()
	certs := map[string]*certificate{}
	for _, c := range r.certificates {
		certs[c.Spec.SecretName] = c
	}
	var secrets []string
	csiVolumes := 0
	for _, v := range spec.Volumes {
		switch {
		case v.CSI != nil && v.CSI.Driver == csiDriver:
			csiVolumes++
		case v.Secret != nil:
			secrets = append(secrets, v.Secret.SecretName)
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.Secret != nil {
					secrets = append(secrets, src.Secret.Name)
				}
			}
		}
	}
	for _, name := range secrets {
		c := certs[name]
		switch {
		case c != nil && c.Spec.IsCA:
			t.Errorf("%s: mounts the CA's Secret %s, whose key signs any identity", where, name)
		case c != nil && perPod:
			t.Errorf("%s: has a certificate of its own but also mounts Secret %s of Certificate %s (%v)", where, name, c.Name, c.Spec.URIs)
		}
	}
	if perPod {
		if csiVolumes != 1 {
			t.Errorf("%s: %d csi-driver volumes, want exactly one (its own certificate)", where, csiVolumes)
		}
		if p.cmd.Flags().Changed("id") && p.flag("id") != own.ID {
			t.Errorf("%s: --id %s, its certificate names %s", where, p.flag("id"), own)
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
		got, perPod := tlsIdentity(t, r, pod, meta, co.Spec.Template.Spec, c, p.flag("tls-dir"))
		if got != (security.Identity{Role: security.RoleCoordinator, ID: pod}) {
			t.Errorf("coordinator %s runs with the certificate of %s", pod, got)
		}
		checkOwnKey(t, r, pod, co.Spec.Template.Spec, p, got, perPod)
	}
	for i := range int(*wk.Spec.Completions) {
		host := fmt.Sprintf("%s-%d", wk.Name, i)
		meta := indexedPod(ns, wk.Spec.Template, i)
		// The Job controller names an Indexed Job's pod <job>-<index>-<random suffix>.
		meta.name = fmt.Sprintf("%s-%d-x7k2q", wk.Name, i)
		c := wk.Spec.Template.Spec.Containers[0]
		env := containerEnv(t, host, c, meta)
		p := parseArgs(t, host, expandArgs(c.Args, env), env)
		got, perPod := tlsIdentity(t, r, host, meta, wk.Spec.Template.Spec, c, p.flag("tls-dir"))
		// A certificate shared through Secrets names the index's host name, the
		// worker's id from the environment; one of the pod's own names the pod,
		// and the worker, given no --id, takes its id from it.
		want := security.Identity{Role: security.RoleWorker, ID: host}
		if perPod {
			want.ID = meta.name
		}
		if got != want {
			t.Errorf("worker %s (pod %s) runs with the certificate of %s, want %s", host, meta.name, got, want)
		}
		checkOwnKey(t, r, host, wk.Spec.Template.Spec, p, got, perPod)
	}
	for _, c := range submit.Spec.Template.Spec.Containers {
		if p := submitCmds[c.Name]; p.cmd.Name() == "submit" {
			if got, _ := tlsIdentity(t, r, "Job "+submit.Name, podMeta{namespace: ns}, submit.Spec.Template.Spec, c, p.flag("tls-dir")); got.Role != security.RoleAdmin {
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

// TestKubernetesCSICertificates checks the csi-certs overlay beyond what every
// kustomization is checked for: each coordinator and worker pod runs with a
// certificate of its own from the csi-driver, naming its role and the pod
// (TestKubernetesManifests checks the names against the pods' ids), and no
// Certificate of a coordinator or worker is left, whose Secret would hold a key
// no pod needs.
func TestKubernetesCSICertificates(t *testing.T) {
	r := render(t, filepath.Join(deployDir, "k8s/overlays/csi-certs"))
	co := r.statefulSet(t, "coordinator")
	wk := r.job(t, "worker")
	coPod := podMeta{name: co.Name + "-1", namespace: co.Namespace, labels: maps.Clone(co.Spec.Template.Labels)}
	coPod.labels[appsv1.PodIndexLabel] = "1"
	wkPod := indexedPod(wk.Namespace, wk.Spec.Template, 1)
	wkPod.name = wk.Name + "-1-b8d4z"
	for _, tc := range []struct {
		role security.Role
		spec corev1.PodSpec
		meta podMeta
	}{
		{security.RoleCoordinator, co.Spec.Template.Spec, coPod},
		{security.RoleWorker, wk.Spec.Template.Spec, wkPod},
	} {
		where := string(tc.role) + " pod " + tc.meta.name
		c := tc.spec.Containers[0]
		env := containerEnv(t, where, c, tc.meta)
		p := parseArgs(t, where, expandArgs(c.Args, env), env)
		got, perPod := tlsIdentity(t, r, where, tc.meta, tc.spec, c, p.flag("tls-dir"))
		if !perPod || got != (security.Identity{Role: tc.role, ID: tc.meta.name}) {
			t.Errorf("%s: certificate %s (its own: %v), want one of its own naming %s://%s/%s", where, got, perPod, security.Scheme, tc.role, tc.meta.name)
		}
		if p.cmd.Flags().Changed("id") {
			t.Errorf("%s: gives --id %s; the certificate should decide", where, p.flag("id"))
		}
	}
	for _, c := range r.certificates {
		if c.Spec.IsCA {
			continue
		}
		for _, u := range c.Spec.URIs {
			if id, err := parseURI(u); err != nil || id.Role != security.RoleAdmin {
				t.Errorf("Certificate %s (%s): only the CA and the admin's are left, every pod has its own", c.Name, u)
			}
		}
	}
}
