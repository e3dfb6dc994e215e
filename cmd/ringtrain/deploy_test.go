package main

// The deployment files under deploy/ checked against the binary they run: the
// Kubernetes manifests (rendered with kustomize, decoded strictly into the API types),
// the compose file and the image build script.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/jobspec"
	"github.com/ringtrain/ringtrain/trainer"
)

const (
	deployDir = "../../deploy"
	// imageName is the image every deployment file runs.
	imageName = "ringtrain:dev"
)

// decodeStrict decodes one YAML document into out, rejecting unknown fields.
func decodeStrict(doc []byte, out any) error {
	js, err := sigsyaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	return dec.Decode(out)
}

// typed returns an empty object of the API type of kind.
func typed(kind string) (any, error) {
	switch kind {
	case "Namespace":
		return &corev1.Namespace{}, nil
	case "Service":
		return &corev1.Service{}, nil
	case "ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}, nil
	case "StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "Job":
		return &batchv1.Job{}, nil
	case "PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	case "Certificate":
		return &certificate{}, nil
	case "Issuer":
		return &issuer{}, nil
	}
	return nil, fmt.Errorf("kind %q: not one ringtrain deploys", kind)
}

// decodeObject decodes a manifest document into its API type by its kind.
func decodeObject(doc []byte) (any, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := sigsyaml.Unmarshal(doc, &head); err != nil {
		return nil, err
	}
	obj, err := typed(head.Kind)
	if err != nil {
		return nil, err
	}
	if err := decodeStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", head.Kind, err)
	}
	want := map[string]string{"StatefulSet": "apps/v1", "Job": "batch/v1", "PodDisruptionBudget": "policy/v1",
		"NetworkPolicy": "networking.k8s.io/v1", "Certificate": "cert-manager.io/v1", "Issuer": "cert-manager.io/v1"}[head.Kind]
	if want == "" {
		want = "v1"
	}
	if head.APIVersion != want {
		return nil, fmt.Errorf("%s: apiVersion %q, want %q", head.Kind, head.APIVersion, want)
	}
	return obj, nil
}

// splitYAML splits a multi-document YAML stream.
func splitYAML(b []byte) [][]byte {
	var docs [][]byte
	for d := range strings.SplitSeq(string(b), "\n---") {
		if strings.TrimSpace(strings.TrimPrefix(d, "---")) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

// rendered is what one kustomization renders, by kind.
type rendered struct {
	dir          string
	namespaces   []*corev1.Namespace
	services     []*corev1.Service
	configMaps   []*corev1.ConfigMap
	pvcs         []*corev1.PersistentVolumeClaim
	statefulSets []*appsv1.StatefulSet
	jobs         []*batchv1.Job
	pdbs         []*policyv1.PodDisruptionBudget
	policies     []*networkingv1.NetworkPolicy
	certificates []*certificate
	issuers      []*issuer
	all          []metav1.Object // every object, in the order rendered
}

// objects returns every rendered object.
func (r *rendered) objects() []metav1.Object { return r.all }

func render(t *testing.T, dir string) *rendered {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), abs)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	r := &rendered{dir: dir}
	for _, doc := range splitYAML(out) {
		obj, err := decodeObject(doc)
		if err != nil {
			t.Fatalf("%s: %v\n%s", dir, err, doc)
		}
		checkNames(t, dir, obj)
		r.all = append(r.all, obj.(metav1.Object))
		switch o := obj.(type) {
		case *corev1.Namespace:
			r.namespaces = append(r.namespaces, o)
		case *corev1.Service:
			r.services = append(r.services, o)
		case *corev1.ConfigMap:
			r.configMaps = append(r.configMaps, o)
		case *corev1.PersistentVolumeClaim:
			r.pvcs = append(r.pvcs, o)
		case *appsv1.StatefulSet:
			r.statefulSets = append(r.statefulSets, o)
		case *batchv1.Job:
			r.jobs = append(r.jobs, o)
		case *policyv1.PodDisruptionBudget:
			r.pdbs = append(r.pdbs, o)
		case *networkingv1.NetworkPolicy:
			r.policies = append(r.policies, o)
		case *certificate:
			r.certificates = append(r.certificates, o)
		case *issuer:
			r.issuers = append(r.issuers, o)
		}
	}
	return r
}

// checkNames applies the API server's rules for names, labels, port names and
// environment variable names, which a strict decode does not check.
func checkNames(t *testing.T, dir string, obj any) {
	t.Helper()
	m, ok := obj.(metav1.Object)
	if !ok {
		t.Fatalf("%s: %T has no metadata", dir, obj)
	}
	where := fmt.Sprintf("%s: %T %s", dir, obj, m.GetName())
	bad := func(what string, errs []string) {
		if len(errs) > 0 {
			t.Errorf("%s: %s: %s", where, what, strings.Join(errs, "; "))
		}
	}
	bad("name", validation.IsDNS1123Subdomain(m.GetName()))
	checkLabels := func(l map[string]string) {
		for k, v := range l {
			bad("label key "+k, validation.IsQualifiedName(k))
			bad("label value "+v, validation.IsValidLabelValue(v))
		}
	}
	checkLabels(m.GetLabels())
	var tmpl *corev1.PodTemplateSpec
	switch o := obj.(type) {
	case *corev1.Service:
		// A Service's name is a DNS label (RFC 1035): its host name.
		bad("Service name", validation.IsDNS1035Label(o.Name))
		for _, p := range o.Spec.Ports {
			bad("service port name", validation.IsValidPortName(p.Name))
		}
	case *appsv1.StatefulSet:
		// Pod names are <name>-<ordinal> and must stay DNS labels.
		bad("StatefulSet name", validation.IsDNS1123Label(o.Name+"-99"))
		tmpl = &o.Spec.Template
	case *batchv1.Job:
		// An Indexed Job's pods have the host names <name>-<index>, DNS labels.
		if o.Spec.CompletionMode != nil && *o.Spec.CompletionMode == batchv1.IndexedCompletion {
			bad("Indexed Job name", validation.IsDNS1123Label(o.Name+"-99"))
		}
		tmpl = &o.Spec.Template
	}
	if tmpl == nil {
		return
	}
	checkLabels(tmpl.Labels)
	for _, c := range append(slices.Clone(tmpl.Spec.InitContainers), tmpl.Spec.Containers...) {
		bad("container name", validation.IsDNS1123Label(c.Name))
		for _, p := range c.Ports {
			bad("container port name", validation.IsValidPortName(p.Name))
		}
		for _, e := range c.Env {
			bad("env name", validation.IsEnvVarName(e.Name))
		}
	}
}

func (r *rendered) statefulSet(t *testing.T, component string) *appsv1.StatefulSet {
	t.Helper()
	for _, s := range r.statefulSets {
		if s.Spec.Template.Labels["app.kubernetes.io/component"] == component {
			return s
		}
	}
	t.Fatalf("%s: no StatefulSet of component %s", r.dir, component)
	return nil
}

func (r *rendered) job(t *testing.T, component string) *batchv1.Job {
	t.Helper()
	for _, j := range r.jobs {
		if j.Spec.Template.Labels["app.kubernetes.io/component"] == component {
			return j
		}
	}
	t.Fatalf("%s: no Job of component %s", r.dir, component)
	return nil
}

func (r *rendered) service(name string) *corev1.Service {
	for _, s := range r.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// parsedCmd is a container's command line parsed by the binary's own flag set.
type parsedCmd struct {
	cmd  *cobra.Command
	args []string // positional arguments
}

func (p parsedCmd) flag(name string) string {
	if f := p.cmd.Flags().Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}

// parseArgs parses a container's arguments and RINGTRAIN_* environment with the
// real command (flags first, then the environment where no flag was given, as
// applyEnv does), failing on anything the binary would refuse.
func parseArgs(t *testing.T, where string, args []string, env map[string]string) parsedCmd {
	t.Helper()
	root := newRoot()
	cmd, rest, err := root.Find(args)
	if err != nil || cmd == root {
		t.Fatalf("%s: args %q name no ringtrain command (%v)", where, args, err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatalf("%s: args %q: %v", where, args, err)
	}
	pos := cmd.Flags().Args()
	if err := cmd.ValidateArgs(pos); err != nil {
		t.Fatalf("%s: args %q: %v", where, args, err)
	}
	for k, v := range env {
		name, ok := strings.CutPrefix(k, "RINGTRAIN_")
		if !ok {
			continue
		}
		flag := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		f := cmd.Flags().Lookup(flag)
		if f == nil {
			t.Errorf("%s: %s names no flag of %q", where, k, cmd.CommandPath())
			continue
		}
		if f.Changed {
			t.Errorf("%s: %s and --%s both given", where, k, flag)
			continue
		}
		if err := cmd.Flags().Set(flag, v); err != nil {
			t.Errorf("%s: %s=%q: %v", where, k, v, err)
		}
	}
	return parsedCmd{cmd: cmd, args: pos}
}

// port returns the port of a listen address such as ":7001".
func port(t *testing.T, where, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s: address %q: %v", where, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s: address %q: %v", where, addr, err)
	}
	return int32(n)
}

// servedPorts returns the ports the command listens on: gRPC servers and the
// metrics server.
func servedPorts(t *testing.T, where string, p parsedCmd) (grpcPorts []int32, metrics int32, all []int32) {
	t.Helper()
	switch p.cmd.Name() {
	case "coordinator":
		grpcPorts = []int32{port(t, where, p.flag("grpc-addr"))}
		all = append(all, port(t, where, p.flag("raft-addr")))
	case "worker":
		grpcPorts = []int32{port(t, where, p.flag("listen"))}
		if dp, _ := strconv.Atoi(p.flag("data-port")); dp > 0 {
			all = append(all, int32(dp))
		}
	}
	all = append(all, grpcPorts...)
	if m := p.flag("metrics-addr"); m != "" {
		metrics = port(t, where, m)
		all = append(all, metrics)
	}
	return grpcPorts, metrics, all
}

// podMeta is what the downward API tells a container about its pod.
type podMeta struct {
	name, namespace     string // name "" when not known in advance (a Job's pods)
	labels, annotations map[string]string
}

// indexedPod is the metadata of an Indexed Job's pod of completion index i: the
// template's labels and annotations plus the index the Job controller adds.
func indexedPod(namespace string, tmpl corev1.PodTemplateSpec, i int) podMeta {
	m := podMeta{namespace: namespace, labels: maps.Clone(tmpl.Labels), annotations: maps.Clone(tmpl.Annotations)}
	if m.labels == nil {
		m.labels = map[string]string{}
	}
	if m.annotations == nil {
		m.annotations = map[string]string{}
	}
	m.labels[batchv1.JobCompletionIndexAnnotation] = strconv.Itoa(i)
	m.annotations[batchv1.JobCompletionIndexAnnotation] = strconv.Itoa(i)
	return m
}

var (
	varRef       = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	labelOrAnnot = regexp.MustCompile(`^metadata\.(labels|annotations)\['([^']+)'\]$`)
)

// expandVars expands $(VAR) from vars as the kubelet does; a reference to a
// variable that is not defined stays as written.
func expandVars(s string, vars map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(ref string) string {
		if v, ok := vars[ref[2:len(ref)-1]]; ok {
			return v
		}
		return ref
	})
}

// bindingLabels are the pod labels the cluster itself may set when it binds the
// pod to a node (Kubernetes' PodTopologyLabelsAdmission copies the node's
// topology labels), so no manifest sets them; a missing one reads as "" (the
// kubelet's value for a label the pod lacks).
var bindingLabels = map[string]bool{"topology.kubernetes.io/zone": true, "topology.kubernetes.io/region": true}

// containerEnv resolves a container's environment as the kubelet does: a value's
// $(VAR) from the variables defined before it, a fieldRef from the pod's metadata.
// Variables whose value is not known here (resourceFieldRef, the name of a pod that
// has none in advance) are left out.
func containerEnv(t *testing.T, where string, c corev1.Container, pod podMeta) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = expandVars(e.Value, env)
		case e.ValueFrom.FieldRef != nil:
			path := e.ValueFrom.FieldRef.FieldPath
			if m := labelOrAnnot.FindStringSubmatch(path); m != nil {
				from := pod.labels
				if m[1] == "annotations" {
					from = pod.annotations
				}
				v, ok := from[m[2]]
				if !ok && !(m[1] == "labels" && bindingLabels[m[2]]) {
					t.Errorf("%s: %s from %s, which the pod does not have", where, e.Name, path)
				}
				env[e.Name] = v
				continue
			}
			switch path {
			case "metadata.namespace":
				env[e.Name] = pod.namespace
			case "metadata.name":
				if pod.name != "" {
					env[e.Name] = pod.name
				}
			}
		}
	}
	return env
}

// expandArgs expands a container's arguments with its environment.
func expandArgs(args []string, env map[string]string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = expandVars(a, env)
	}
	return out
}

// checkPod checks a pod template's ringtrain containers against the binary and
// the platform's security conventions. It returns the parsed command of each
// container, by container name.
func checkPod(t *testing.T, where string, tmpl corev1.PodTemplateSpec, pod podMeta, wantImage string) map[string]parsedCmd {
	t.Helper()
	spec := tmpl.Spec
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("%s: pod securityContext must set runAsNonRoot and a non-zero runAsUser", where)
	}
	if psc != nil && (psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault) {
		t.Errorf("%s: pod securityContext must use the RuntimeDefault seccomp profile", where)
	}
	if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
		t.Errorf("%s: enableServiceLinks must be false (service links put RINGTRAIN_* variables in the environment)", where)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("%s: automountServiceAccountToken must be false (ringtrain does not call the API server)", where)
	}
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = true
	}
	out := map[string]parsedCmd{}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		cw := where + " container " + c.Name
		if c.Image != wantImage {
			t.Errorf("%s: image %q, want %q", cw, c.Image, wantImage)
		}
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("%s: no securityContext", cw)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("%s: allowPrivilegeEscalation must be false", cw)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("%s: readOnlyRootFilesystem must be true", cw)
		case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
			t.Errorf("%s: capabilities must drop ALL and add none", cw)
		case sc.Privileged != nil && *sc.Privileged:
			t.Errorf("%s: privileged", cw)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: resources must request cpu and memory and limit memory", cw)
		}
		mounts := map[string]bool{}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				t.Errorf("%s: mount %s: no such volume", cw, m.Name)
			}
			mounts[m.MountPath] = true
		}
		if len(c.Command) > 0 {
			t.Errorf("%s: command %q replaces the image's entrypoint; give args only", cw, c.Command)
		}
		env := containerEnv(t, cw, c, pod)
		args := expandArgs(c.Args, env)
		if i := slices.IndexFunc(args, varRef.MatchString); i >= 0 {
			t.Errorf("%s: argument %q refers to an undefined variable", cw, args[i])
		}
		p := parseArgs(t, cw, args, env)
		out[c.Name] = p

		// Every directory the command writes is a mounted volume (the root is read-only).
		for _, dir := range []string{p.flag("data-dir"), p.flag("out")} {
			if dir != "" && !underAny(dir, mounts) {
				t.Errorf("%s: %s is not on a mounted volume", cw, dir)
			}
		}

		grpcPorts, metrics, served := servedPorts(t, cw, p)
		declared := map[int32]bool{}
		for _, cp := range c.Ports {
			declared[cp.ContainerPort] = true
			if !slices.Contains(served, cp.ContainerPort) {
				t.Errorf("%s: containerPort %s/%d is not served by %q", cw, cp.Name, cp.ContainerPort, c.Args)
			}
		}
		for _, sp := range served {
			if !declared[sp] {
				t.Errorf("%s: serves port %d, which is not a containerPort", cw, sp)
			}
		}
		for name, probe := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
			if len(grpcPorts) == 0 {
				if probe != nil {
					t.Errorf("%s: %s probe on a command without a server", cw, name)
				}
				continue
			}
			if probe == nil || (probe.GRPC == nil) == (probe.Exec == nil) {
				t.Errorf("%s: needs a gRPC or exec %s probe", cw, name)
				continue
			}
			probePort, svc := int32(0), ""
			if probe.GRPC != nil {
				// The kubelet's gRPC probe speaks no TLS.
				if p.flag("tls-dir") != "" {
					t.Errorf("%s: %s: a gRPC probe cannot reach a server with --tls-dir; probe with `ringtrain health`", cw, name)
				}
				probePort = probe.GRPC.Port
				if probe.GRPC.Service != nil {
					svc = *probe.GRPC.Service
				}
			} else {
				probePort, svc = checkExecProbe(t, cw+" "+name+" probe", probe, env, p)
			}
			if !slices.Contains(grpcPorts, probePort) {
				t.Errorf("%s: %s probe on port %d, gRPC is served on %v", cw, name, probePort, grpcPorts)
			}
			// The worker's health server reports the server as a whole (""); the
			// coordinator's also reports its service by name.
			if svc != "" && (p.cmd.Name() != "coordinator" || svc != "ringtrain.v1.Coordinator") {
				t.Errorf("%s: %s probe asks about service %q, which the %s does not report", cw, name, svc, p.cmd.Name())
			}
		}
		if len(grpcPorts) > 0 {
			a := tmpl.Annotations
			if a["prometheus.io/scrape"] != "true" || a["prometheus.io/path"] != "/metrics" || a["prometheus.io/port"] != strconv.Itoa(int(metrics)) {
				t.Errorf("%s: prometheus.io annotations %v do not match --metrics-addr %q", cw, a, p.flag("metrics-addr"))
			}
		}
	}
	return out
}

func underAny(dir string, mounts map[string]bool) bool {
	for m := range mounts {
		if dir == m || strings.HasPrefix(dir, strings.TrimSuffix(m, "/")+"/") {
			return true
		}
	}
	return false
}

// selects reports whether a label selector selects the labels of a pod template.
func selects(sel map[string]string, podLabels map[string]string) bool {
	return len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(podLabels))
}

func TestKubernetesManifests(t *testing.T) {
	dirs := []string{filepath.Join(deployDir, "k8s/base")}
	overlays, err := filepath.Glob(filepath.Join(deployDir, "k8s/overlays/*"))
	if err != nil {
		t.Fatal(err)
	}
	dirs = append(dirs, overlays...)
	if len(overlays) == 0 {
		t.Errorf("no overlay under deploy/k8s/overlays")
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) { checkRendered(t, render(t, dir)) })
	}
}

// TestKubernetesFilesStrict decodes every manifest file and patch as written (not
// rendered), so a misspelt field in a patch is caught too.
func TestKubernetesFilesStrict(t *testing.T) {
	n := 0
	err := filepath.WalkDir(filepath.Join(deployDir, "k8s"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".yaml" {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		switch filepath.Base(path) {
		case "kustomization.yaml", "kustomizeconfig.yaml":
			return nil
		case "job.yaml":
			if _, err := trainer.LoadSpec(path); err != nil {
				t.Errorf("%s: %v", path, err)
			}
			return nil
		}
		for i, doc := range splitYAML(b) {
			if _, err := decodeObject(doc); err != nil {
				t.Errorf("%s document %d: %v", path, i, err)
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 8 {
		t.Errorf("decoded %d manifests, expected the whole base and overlay", n)
	}
}

func checkRendered(t *testing.T, r *rendered) {
	// One namespace for every object; the Namespace object itself, when the
	// kustomization creates it (an instance beside another one deploys into it).
	if len(r.namespaces) > 1 {
		t.Fatalf("%d Namespaces, want at most 1", len(r.namespaces))
	}
	ns := r.statefulSet(t, "coordinator").Namespace
	if len(r.namespaces) == 1 && r.namespaces[0].Name != ns {
		t.Errorf("Namespace %s, but the objects are in %q", r.namespaces[0].Name, ns)
	}
	for _, o := range r.objects() {
		if _, isNS := o.(*corev1.Namespace); !isNS && o.GetNamespace() != ns {
			t.Errorf("%T %s in namespace %q, want %q", o, o.GetName(), o.GetNamespace(), ns)
		}
	}

	// The image: one name, the one build.sh builds (an overlay may rename it, but
	// then every container must agree).
	image := imageName
	if filepath.Base(r.dir) != "base" {
		image = r.statefulSet(t, "coordinator").Spec.Template.Spec.Containers[0].Image
	}

	// Coordinators: an odd number of Raft voters behind a headless Service that
	// publishes not-ready addresses; --peers names exactly the pods.
	co := r.statefulSet(t, "coordinator")
	replicas := int(*co.Spec.Replicas)
	if replicas < 3 || replicas%2 == 0 {
		t.Errorf("coordinator replicas %d: want an odd number >= 3", replicas)
	}
	if co.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("coordinator podManagementPolicy %q, want Parallel (the replicas must start together to elect)", co.Spec.PodManagementPolicy)
	}
	if !selects(co.Spec.Selector.MatchLabels, co.Spec.Template.Labels) {
		t.Errorf("StatefulSet %s: selector does not select its own template", co.Name)
	}
	headless := checkHeadless(t, r, co.Spec.ServiceName, "StatefulSet "+co.Name, co.Spec.Template)
	if len(co.Spec.VolumeClaimTemplates) != 1 {
		t.Errorf("coordinator: want one volumeClaimTemplate (the Raft data), have %d", len(co.Spec.VolumeClaimTemplates))
	}
	if !hasFieldEnv(co.Spec.Template.Spec.Containers[0].Env, "POD_NAME", "metadata.name") {
		t.Errorf("coordinator: POD_NAME must come from metadata.name (it is the Raft server id)")
	}
	var cp parsedCmd
	var raftPort, grpcPort int32
	for i := range replicas {
		// Each replica's pod: its name, and the pod-index label the controller adds.
		pod := fmt.Sprintf("%s-%d", co.Name, i)
		meta := podMeta{name: pod, namespace: ns, labels: maps.Clone(co.Spec.Template.Labels)}
		meta.labels[appsv1.PodIndexLabel] = strconv.Itoa(i)
		coCmds := checkPod(t, "coordinator "+pod, withClaims(co), meta, image)
		var ok bool
		if cp, ok = coCmds["coordinator"]; !ok || cp.cmd.Name() != "coordinator" {
			t.Fatalf("coordinator StatefulSet: no container running `ringtrain coordinator`")
		}
		raftPort = port(t, "coordinator", cp.flag("raft-addr"))
		grpcPort = port(t, "coordinator", cp.flag("grpc-addr"))
		peers, err := coordinator.ParsePeers(cp.flag("peers"))
		if err != nil {
			t.Fatalf("coordinator --peers: %v", err)
		}
		if len(peers) != replicas {
			t.Errorf("coordinator --peers has %d replicas, the StatefulSet %d", len(peers), replicas)
		}
		for j := range replicas {
			peer := fmt.Sprintf("%s-%d", co.Name, j)
			want := net.JoinHostPort(peer+"."+headless.Name, strconv.Itoa(int(raftPort)))
			if !slices.ContainsFunc(peers, func(p coordinator.Peer) bool { return p.ID == peer && p.Addr == want }) {
				t.Errorf("coordinator --peers %v: want %s=%s (the pod name is its --id)", peers, peer, want)
			}
		}
		id, err := identityFromEnv(envOf(containerEnv(t, pod, co.Spec.Template.Spec.Containers[0], meta)), pod)
		if err != nil || id.Name != pod || id.Ordinal != i {
			t.Errorf("coordinator %s: identity %+v (%v), want the id %s and ordinal %d", pod, id, err, pod, i)
		}
	}
	if !servicePorts(headless, raftPort, grpcPort) {
		t.Errorf("coordinator headless Service ports %v, want %d and %d", headless.Spec.Ports, raftPort, grpcPort)
	}

	// The PDB keeps a quorum: it selects the coordinator pods and nothing else.
	if len(r.pdbs) != 1 {
		t.Fatalf("%d PodDisruptionBudgets, want 1", len(r.pdbs))
	}
	pdb := r.pdbs[0]
	if pdb.Spec.Selector == nil || !selects(pdb.Spec.Selector.MatchLabels, co.Spec.Template.Labels) || len(pdb.Spec.Selector.MatchExpressions) > 0 {
		t.Errorf("PDB %s selector %v does not select the coordinator pods %v", pdb.Name, pdb.Spec.Selector, co.Spec.Template.Labels)
	}
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 || pdb.Spec.MinAvailable != nil {
		t.Errorf("PDB %s: want maxUnavailable 1", pdb.Name)
	}
	wk := r.job(t, "worker")
	if pdb.Spec.Selector != nil && selects(pdb.Spec.Selector.MatchLabels, wk.Spec.Template.Labels) {
		t.Errorf("PDB %s also selects the workers", pdb.Name)
	}

	// The client Service reaches the coordinators' gRPC port.
	var client *corev1.Service
	for _, s := range r.services {
		if s.Spec.ClusterIP != corev1.ClusterIPNone && selects(s.Spec.Selector, co.Spec.Template.Labels) {
			client = s
		}
	}
	if client == nil || !servicePorts(client, grpcPort) {
		t.Fatalf("no client Service with the coordinators' gRPC port %d", grpcPort)
	}
	coordAddrs := map[string]bool{net.JoinHostPort(client.Name, strconv.Itoa(int(grpcPort))): true}
	for i := range replicas {
		coordAddrs[net.JoinHostPort(fmt.Sprintf("%s-%d.%s", co.Name, i, headless.Name), strconv.Itoa(int(grpcPort)))] = true
	}
	checkCoordinators := func(where string, p parsedCmd) {
		addrs := splitList([]string{strings.Trim(p.flag("coordinators"), "[]")})
		if len(addrs) == 0 {
			t.Errorf("%s: no --coordinators", where)
		}
		for _, a := range addrs {
			if !coordAddrs[a] {
				t.Errorf("%s: --coordinators %s is not a coordinator gRPC address (%v)", where, a, coordAddrs)
			}
		}
	}

	// Workers: an Indexed Job that completes when every index has exited 0, whose
	// pods keep their host name <job>-<index> under the headless Service (subdomain)
	// across replacements; a graceful leave is replaced without counting as done.
	checkWorkerJob(t, wk)
	whs := checkHeadless(t, r, wk.Spec.Template.Spec.Subdomain, "Job "+wk.Name+" subdomain", wk.Spec.Template)
	if selects(whs.Spec.Selector, co.Spec.Template.Labels) {
		t.Errorf("worker Service %s also selects the coordinators", whs.Name)
	}
	var wp parsedCmd
	var listen int32
	for i := range int(*wk.Spec.Completions) {
		meta := indexedPod(ns, wk.Spec.Template, i)
		wCmds := checkPod(t, fmt.Sprintf("worker %d", i), wk.Spec.Template, meta, image)
		var ok bool
		if wp, ok = wCmds["worker"]; !ok || wp.cmd.Name() != "worker" {
			t.Fatalf("worker Job: no container running `ringtrain worker`")
		}
		checkCoordinators("worker", wp)
		listen = port(t, "worker", wp.flag("listen"))
		host := fmt.Sprintf("%s-%d", wk.Name, i)
		wantAdv := fmt.Sprintf("%s.%s.%s.svc:%d", host, whs.Name, ns, listen)
		if got := wp.flag("advertise"); got != wantAdv {
			t.Errorf("worker %d advertises %q, want %q (the pod's stable DNS name)", i, got, wantAdv)
		}
		// The id is the host name, which a replacement pod keeps; the pod name
		// (POD_NAME, were it set) ends in a random suffix.
		env := containerEnv(t, host, wk.Spec.Template.Spec.Containers[0], meta)
		env["POD_NAME"] = host + "-x7k2q"
		id, err := identityFromEnv(envOf(env), host)
		if err != nil || id.Name != host || id.Ordinal != i {
			t.Errorf("worker %d: identity %+v (%v), want the id %s and ordinal %d", i, id, err, host, i)
		}
	}
	if code, _ := strconv.Atoi(wp.flag("leave-exit-code")); !ignoresExit(wk, "worker", int32(code)) {
		t.Errorf("worker Job: --leave-exit-code %s is not ignored by the pod failure policy (a graceful leave must be replaced, not counted)", wp.flag("leave-exit-code"))
	}
	if !servicePorts(whs, listen) {
		t.Errorf("worker headless Service ports %v, want %d", whs.Spec.Ports, listen)
	}
	if g := wk.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g < 15 {
		t.Errorf("worker terminationGracePeriodSeconds %v: want at least 15 s (a step plus a 5 s leave)", g)
	}

	// The shared data volume: the workers and the prepare step mount it, and the job
	// spec's data and run directories are on it.
	spec := jobSpec(t, r)
	dataMount := ""
	for _, m := range wk.Spec.Template.Spec.Containers[0].VolumeMounts {
		for _, v := range wk.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.PersistentVolumeClaim != nil {
				dataMount = m.MountPath
				if !slices.ContainsFunc(r.pvcs, func(p *corev1.PersistentVolumeClaim) bool { return p.Name == v.PersistentVolumeClaim.ClaimName }) {
					t.Errorf("worker volume %s: no PersistentVolumeClaim %s", v.Name, v.PersistentVolumeClaim.ClaimName)
				}
			}
		}
	}
	for _, d := range []string{spec.Data, spec.Out} {
		if dataMount == "" || !underAny(d, map[string]bool{dataMount: true}) {
			t.Errorf("job spec path %s is not on the workers' data volume (%q)", d, dataMount)
		}
	}

	// The submit Job prepares the shards where the job spec reads them, then
	// submits it.
	if len(r.jobs) != 2 {
		t.Fatalf("%d Jobs, want 2 (the workers and submit)", len(r.jobs))
	}
	job := r.job(t, "submit")
	jCmds := checkPod(t, "Job "+job.Name, job.Spec.Template, podMeta{namespace: ns, labels: job.Spec.Template.Labels}, image)
	var prepared, submitted bool
	for _, p := range jCmds {
		switch p.cmd.Name() {
		case "prepare":
			prepared = p.flag("out") == spec.Data
			if !prepared {
				t.Errorf("Job %s prepares %s, the job spec reads %s", job.Name, p.flag("out"), spec.Data)
			}
		case "submit":
			submitted = true
			checkCoordinators("Job "+job.Name, p)
			if n, _ := strconv.Atoi(p.flag("min-workers")); n > int(*wk.Spec.Parallelism) {
				t.Errorf("submit --min-workers %d but only %d workers", n, *wk.Spec.Parallelism)
			}
		}
	}
	if !prepared || !submitted {
		t.Errorf("Job %s: want `ringtrain prepare` then `ringtrain submit`", job.Name)
	}
	checkRenderedTLS(t, r, co, wk, job, replicas, jCmds)
	for _, c := range job.Spec.Template.Spec.InitContainers {
		if jCmds[c.Name].cmd.Name() != "prepare" {
			t.Errorf("Job %s: init container %s should prepare the shards", job.Name, c.Name)
		}
	}
}

// checkWorkerJob checks the shape of the workers' Job: Indexed with completions =
// parallelism (the shape that may be scaled by patching both), pods that are not
// restarted in place but replaced (restartPolicy Never, which backoffLimitPerIndex
// and a pod failure policy need) only once terminated (podReplacementPolicy
// Failed: two pods never hold one worker id), a failure budget per index, evictions
// not counted, and nothing that removes the finished Job before `kubectl wait`
// sees it.
func checkWorkerJob(t *testing.T, j *batchv1.Job) {
	t.Helper()
	s := j.Spec
	if s.CompletionMode == nil || *s.CompletionMode != batchv1.IndexedCompletion {
		t.Errorf("worker Job %s: completionMode %v, want Indexed", j.Name, s.CompletionMode)
	}
	if s.Completions == nil || s.Parallelism == nil || *s.Completions != *s.Parallelism || *s.Completions < 1 {
		t.Fatalf("worker Job %s: completions %v and parallelism %v must be set and equal", j.Name, s.Completions, s.Parallelism)
	}
	if s.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("worker Job %s: restartPolicy %q, want Never", j.Name, s.Template.Spec.RestartPolicy)
	}
	if s.BackoffLimitPerIndex == nil || *s.BackoffLimitPerIndex < 1 {
		t.Errorf("worker Job %s: want a backoffLimitPerIndex >= 1 (a crashing index is retried on its own)", j.Name)
	}
	if s.MaxFailedIndexes != nil {
		t.Errorf("worker Job %s: maxFailedIndexes would stop every worker when some indexes fail", j.Name)
	}
	if s.PodReplacementPolicy == nil || *s.PodReplacementPolicy != batchv1.Failed {
		t.Errorf("worker Job %s: podReplacementPolicy %v, want Failed", j.Name, s.PodReplacementPolicy)
	}
	if s.Selector != nil || (s.ManualSelector != nil && *s.ManualSelector) {
		t.Errorf("worker Job %s: let the Job controller generate the selector", j.Name)
	}
	if s.TTLSecondsAfterFinished != nil || s.ActiveDeadlineSeconds != nil || s.SuccessPolicy != nil {
		t.Errorf("worker Job %s: no TTL, deadline or success policy: the Job completes when every worker has exited 0, and stays to be waited for", j.Name)
	}
	disruption := s.PodFailurePolicy != nil && slices.ContainsFunc(s.PodFailurePolicy.Rules, func(r batchv1.PodFailurePolicyRule) bool {
		return r.Action == batchv1.PodFailurePolicyActionIgnore && slices.ContainsFunc(r.OnPodConditions, func(c batchv1.PodFailurePolicyOnPodConditionsPattern) bool {
			return c.Type == corev1.DisruptionTarget && (c.Status == "" || c.Status == corev1.ConditionTrue)
		})
	})
	if !disruption {
		t.Errorf("worker Job %s: want a pod failure policy that ignores DisruptionTarget (evictions, drains)", j.Name)
	}
	if s.Template.Spec.Subdomain == "" {
		t.Errorf("worker Job %s: no subdomain: the pods have no stable DNS names", j.Name)
	}
}

// ignoresExit reports whether the Job's pod failure policy ignores exit code of
// container (replaces the pod without counting a failure). Rules are tried in order,
// and the first that matches decides.
func ignoresExit(j *batchv1.Job, container string, code int32) bool {
	if code == 0 || j.Spec.PodFailurePolicy == nil {
		return false
	}
	for _, r := range j.Spec.PodFailurePolicy.Rules {
		e := r.OnExitCodes
		if e == nil || (e.ContainerName != nil && *e.ContainerName != container) {
			continue
		}
		in := slices.Contains(e.Values, code)
		if in == (e.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn) {
			return r.Action == batchv1.PodFailurePolicyActionIgnore
		}
	}
	return false
}

// withClaims returns a StatefulSet's pod template with its volumeClaimTemplates as
// volumes, as the controller adds them.
func withClaims(s *appsv1.StatefulSet) corev1.PodTemplateSpec {
	tmpl := *s.Spec.Template.DeepCopy()
	for _, c := range s.Spec.VolumeClaimTemplates {
		tmpl.Spec.Volumes = append(tmpl.Spec.Volumes, corev1.Volume{Name: c.Name,
			VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c.Name}}})
	}
	return tmpl
}

// checkHeadless returns the Service named name that governs the pods of tmpl
// (owner's serviceName or subdomain), checking that it is headless, publishes
// not-ready addresses and selects the pods.
func checkHeadless(t *testing.T, r *rendered, name, owner string, tmpl corev1.PodTemplateSpec) *corev1.Service {
	t.Helper()
	svc := r.service(name)
	if svc == nil {
		t.Fatalf("%s: %q names no Service", owner, name)
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("Service %s: clusterIP %q, want None (headless)", svc.Name, svc.Spec.ClusterIP)
	}
	if !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("Service %s: publishNotReadyAddresses must be true", svc.Name)
	}
	if !selects(svc.Spec.Selector, tmpl.Labels) {
		t.Errorf("Service %s selector %v does not select the pods of %s", svc.Name, svc.Spec.Selector, owner)
	}
	return svc
}

func servicePorts(s *corev1.Service, ports ...int32) bool {
	for _, p := range ports {
		if !slices.ContainsFunc(s.Spec.Ports, func(sp corev1.ServicePort) bool {
			return sp.Port == p && (sp.TargetPort.IntValue() == int(p) || sp.TargetPort.StrVal != "")
		}) {
			return false
		}
	}
	return true
}

func hasFieldEnv(env []corev1.EnvVar, name, field string) bool {
	return slices.ContainsFunc(env, func(e corev1.EnvVar) bool {
		return e.Name == name && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == field
	})
}

// jobSpec returns the job spec of the rendered ConfigMap, loaded as `ringtrain
// submit` loads it.
func jobSpec(t *testing.T, r *rendered) trainer.Spec {
	t.Helper()
	for _, cm := range r.configMaps {
		if y, ok := cm.Data["job.yaml"]; ok {
			path := filepath.Join(t.TempDir(), "job.yaml")
			if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
				t.Fatal(err)
			}
			spec, err := trainer.LoadSpec(path)
			if err != nil {
				t.Fatalf("ConfigMap %s job.yaml: %v", cm.Name, err)
			}
			if _, err := jobspec.Encode(spec, 1, 0); err != nil {
				t.Fatalf("ConfigMap %s job.yaml: %v", cm.Name, err)
			}
			return spec
		}
	}
	t.Fatalf("no ConfigMap with job.yaml")
	return trainer.Spec{}
}

// TestComposeFile checks deploy/docker/compose.yaml against the binary: an odd
// number of coordinators whose --peers name exactly them, every command and
// RINGTRAIN_* variable accepted by the real command, workers that advertise their
// own service name, and the image build.sh builds.
func TestComposeFile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(deployDir, "docker/compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	var coords, workers []string
	cmds := map[string]parsedCmd{}
	for name, s := range f.Services {
		if s.Image != "${RINGTRAIN_IMAGE:-"+imageName+"}" {
			t.Errorf("service %s: image %q, want %s (overridable with RINGTRAIN_IMAGE)", name, s.Image, imageName)
		}
		if s.User == "" || strings.HasPrefix(s.User, "0") || !s.ReadOnly || !slices.Equal(s.CapDrop, []string{"ALL"}) {
			t.Errorf("service %s: want a non-root user, read_only and cap_drop [ALL]", name)
		}
		p := parseArgs(t, "service "+name, s.Command, s.Environment)
		cmds[name] = p
		switch p.cmd.Name() {
		case "coordinator":
			coords = append(coords, name)
			if p.flag("id") != name {
				t.Errorf("service %s: --id %q, want the service name", name, p.flag("id"))
			}
		case "worker":
			workers = append(workers, name)
			if want := net.JoinHostPort(name, strconv.Itoa(int(port(t, name, p.flag("listen"))))); p.flag("advertise") != want {
				t.Errorf("service %s: --advertise %q, want %q", name, p.flag("advertise"), want)
			}
		}
	}
	slices.Sort(coords)
	if len(coords) < 3 || len(coords)%2 == 0 {
		t.Errorf("%d coordinators %v: want an odd number >= 3", len(coords), coords)
	}
	if len(workers) < 2 {
		t.Errorf("%d workers: want at least 2", len(workers))
	}
	var grpcAddrs []string
	for _, name := range coords {
		p := cmds[name]
		peers, err := coordinator.ParsePeers(p.flag("peers"))
		if err != nil {
			t.Fatalf("service %s --peers: %v", name, err)
		}
		var ids []string
		for _, pe := range peers {
			ids = append(ids, pe.ID)
			if want := net.JoinHostPort(pe.ID, strconv.Itoa(int(port(t, name, p.flag("raft-addr"))))); pe.Addr != want {
				t.Errorf("service %s: peer %s at %s, want %s", name, pe.ID, pe.Addr, want)
			}
		}
		slices.Sort(ids)
		if !slices.Equal(ids, coords) {
			t.Errorf("service %s: --peers %v, want exactly the coordinator services %v", name, ids, coords)
		}
		grpcAddrs = append(grpcAddrs, net.JoinHostPort(name, strconv.Itoa(int(port(t, name, p.flag("grpc-addr"))))))
	}
	for name, p := range cmds {
		if p.cmd.Flags().Lookup("coordinators") == nil {
			continue
		}
		got := splitList([]string{strings.Trim(p.flag("coordinators"), "[]")})
		slices.Sort(got)
		if !slices.Equal(got, grpcAddrs) {
			t.Errorf("service %s: --coordinators %v, want %v", name, got, grpcAddrs)
		}
	}
	if _, err := trainer.LoadSpec(filepath.Join(deployDir, "docker/job.yaml")); err != nil {
		t.Errorf("docker/job.yaml: %v", err)
	}
	checkComposeTLS(t, f.Services, cmds)

	// Health checks and start order: every server checks itself with the image's
	// own binary; the workers and the submit step wait for healthy coordinators, and
	// the submit step for the shards.
	entry := imageEntrypoint(t)
	for name, s := range f.Services {
		p := cmds[name]
		switch p.cmd.Name() {
		case "coordinator", "worker":
			checkHealthcheck(t, name, s, p, entry)
		}
		switch p.cmd.Name() {
		case "worker", "submit":
			for _, c := range coords {
				if got := s.DependsOn[c].Condition; got != "service_healthy" {
					t.Errorf("service %s: depends on %s with condition %q, want service_healthy", name, c, got)
				}
			}
		}
		if p.cmd.Name() == "submit" {
			for dep, d := range s.DependsOn {
				if cmds[dep].cmd.Name() == "prepare" && d.Condition != "service_completed_successfully" {
					t.Errorf("service %s: depends on %s with condition %q, want service_completed_successfully", name, dep, d.Condition)
				}
			}
		}
	}
}

// checkComposeTLS checks the compose file's certificates: one "certs cluster"
// service issues a certificate for every coordinator and worker (by service name)
// and an admin one; every coordinator, worker and submit step runs with
// --tls-dir naming its own certificate's directory in the volume that service
// writes, waits for it, and none mounts the CA's volume.
func checkComposeTLS(t *testing.T, services map[string]composeService, cmds map[string]parsedCmd) {
	t.Helper()
	var certs string
	for name, p := range cmds {
		if p.cmd.CommandPath() == "ringtrain certs cluster" {
			if certs != "" {
				t.Errorf("two certs services: %s and %s", certs, name)
			}
			certs = name
		}
	}
	if certs == "" {
		t.Fatal("no service runs `ringtrain certs cluster`")
	}
	cp := cmds[certs]
	out, caDir := cp.flag("out"), cp.flag("ca")
	issued := map[string]string{}
	for flag, role := range map[string]string{"coordinator-ids": "coordinator", "worker-ids": "worker", "admins": "admin"} {
		for _, id := range splitList([]string{strings.Trim(cp.flag(flag), "[]")}) {
			issued[id] = role
		}
	}
	volumeOf := func(s composeService, path string) string {
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && parts[1] == path {
				return parts[0]
			}
		}
		return ""
	}
	tlsVolume, caVolume := volumeOf(services[certs], out), volumeOf(services[certs], caDir)
	if tlsVolume == "" || caVolume == "" {
		t.Fatalf("service %s: --out %s and --ca %s must be volumes", certs, out, caDir)
	}
	for name, p := range cmds {
		if name == certs {
			continue
		}
		s := services[name]
		if volumeOf(s, caDir) != "" || slices.ContainsFunc(s.Volumes, func(v string) bool { return strings.HasPrefix(v, caVolume+":") }) {
			t.Errorf("service %s mounts the CA's volume %s", name, caVolume)
		}
		want := ""
		switch p.cmd.Name() {
		case "coordinator":
			want = "coordinator"
		case "worker":
			want = "worker"
		case "submit":
			want = "admin"
		default:
			continue
		}
		dir := p.flag("tls-dir")
		id := filepath.Base(dir)
		if filepath.Dir(dir) != out || issued[id] != want || (want != "admin" && id != name) {
			t.Errorf("service %s: --tls-dir %q, want %s/<its id> holding a %s certificate (issued: %v)", name, dir, out, want, issued)
		}
		if volumeOf(s, out) != tlsVolume || !slices.Contains(s.Volumes, tlsVolume+":"+out+":ro") {
			t.Errorf("service %s: want the volume %s mounted read-only at %s", name, tlsVolume, out)
		}
		if s.DependsOn[certs].Condition != "service_completed_successfully" {
			t.Errorf("service %s: want it to wait for %s (service_completed_successfully)", name, certs)
		}
	}
}

// TestComposeConfig has every compose implementation installed here validate the
// compose file (`config -q`): the docker compose plugin (v2) and the Python
// docker-compose (v1) that Debian packages, which reads it too. It is skipped
// where neither is installed.
func TestComposeConfig(t *testing.T) {
	file := filepath.Join(deployDir, "docker/compose.yaml")
	ran := 0
	for _, bin := range [][]string{{"docker", "compose"}, {"docker-compose"}} {
		if _, err := exec.LookPath(bin[0]); err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		version := exec.CommandContext(ctx, bin[0], append(bin[1:], "version")...)
		if version.Run() != nil {
			cancel()
			continue // `docker` without the compose plugin
		}
		cmd := exec.CommandContext(ctx, bin[0], append(bin[1:], "-f", file, "config", "-q")...)
		cmd.Env = append(os.Environ(), "RINGTRAIN_IMAGE=", "RINGTRAIN_JOB_FILE=")
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("%s config: %v\n%s", strings.Join(bin, " "), err, out)
		} else {
			t.Logf("%s config: ok", strings.Join(bin, " "))
		}
		ran++
	}
	if ran == 0 {
		t.Skip("neither `docker compose` nor docker-compose is installed")
	}
}

// composeService is what TestComposeFile reads of a compose service.
type composeService struct {
	Image       string            `yaml:"image"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	User        string            `yaml:"user"`
	ReadOnly    bool              `yaml:"read_only"`
	CapDrop     []string          `yaml:"cap_drop"`
	Volumes     []string          `yaml:"volumes"`
	Healthcheck *struct {
		Test        []string `yaml:"test"`
		Interval    string   `yaml:"interval"`
		Timeout     string   `yaml:"timeout"`
		StartPeriod string   `yaml:"start_period"`
		Retries     int      `yaml:"retries"`
	} `yaml:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
}

// imageEntrypoint returns the binary's path in the image, from the Dockerfile's
// ENTRYPOINT.
func imageEntrypoint(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "docker/Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ENTRYPOINT \["([^"]+)"\]$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("Dockerfile: no ENTRYPOINT [\"...\"]")
	}
	return string(m[1])
}

// checkHealthcheck checks a compose server's health check: `ringtrain health`
// run by the image's binary (exec form: the image has no shell) against the
// process's own gRPC port on the loopback, about a service it reports, within the
// check's timeout, and not redirected by a RINGTRAIN_* variable of the service.
func checkHealthcheck(t *testing.T, name string, s composeService, server parsedCmd, entry string) {
	t.Helper()
	hc := s.Healthcheck
	if hc == nil || len(hc.Test) < 3 || hc.Test[0] != "CMD" || hc.Test[1] != entry {
		t.Errorf("service %s: want a healthcheck test [CMD, %s, health, ...] (the image has no shell), have %+v", name, entry, hc)
		return
	}
	where := "service " + name + " healthcheck"
	p := parseArgs(t, where, hc.Test[2:], nil)
	if p.cmd.Name() != "health" {
		t.Fatalf("%s: runs %q, want `ringtrain health`", where, p.cmd.CommandPath())
	}
	// The check runs in the service's environment, where RINGTRAIN_<FLAG> would
	// set a flag of `health` too.
	p.cmd.Flags().VisitAll(func(fl *pflag.Flag) {
		if fl.Name == "tls-dir" {
			return // meant for the check too: it proves itself with the service's own certificate
		}
		if v, ok := s.Environment["RINGTRAIN_"+strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))]; ok {
			t.Errorf("%s: the service's environment sets --%s=%s of the check", where, fl.Name, v)
		}
	})
	grpcPorts, _, _ := servedPorts(t, name, server)
	host, _, err := net.SplitHostPort(p.flag("addr"))
	if err != nil || (host != "127.0.0.1" && host != "localhost") || !slices.Contains(grpcPorts, port(t, where, p.flag("addr"))) {
		t.Errorf("%s: --addr %s, want the loopback and the gRPC port (%v)", where, p.flag("addr"), grpcPorts)
	}
	if svc := p.flag("service"); svc != "" && (server.cmd.Name() != "coordinator" || svc != "ringtrain.v1.Coordinator") {
		t.Errorf("%s: --service %q, which the %s does not report", where, svc, server.cmd.Name())
	}
	timeout, err := time.ParseDuration(hc.Timeout)
	check, err2 := time.ParseDuration(p.flag("timeout"))
	if err != nil || err2 != nil || check >= timeout {
		t.Errorf("%s: health --timeout %s must end before the check's timeout %q", where, p.flag("timeout"), hc.Timeout)
	}
	if _, err := time.ParseDuration(hc.Interval); err != nil || hc.Retries < 1 {
		t.Errorf("%s: want an interval and retries (%q, %d)", where, hc.Interval, hc.Retries)
	}
}

// TestImageNameAgrees checks that the build script builds the image the compose
// file and the Kubernetes base run.
func TestImageNameAgrees(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(deployDir, "docker/build.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`image="\$\{RINGTRAIN_IMAGE:-([^}]+)\}"`).FindSubmatch(b)
	if m == nil || string(m[1]) != imageName {
		t.Errorf("build.sh builds %q by default, want %s", m, imageName)
	}
	k, err := os.ReadFile(filepath.Join(deployDir, "k8s/base/kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	name, tag, _ := strings.Cut(imageName, ":")
	if !bytes.Contains(k, []byte("newName: "+name+"\n")) || !bytes.Contains(k, []byte("newTag: "+tag+"\n")) {
		t.Errorf("k8s/base/kustomization.yaml does not pin the image to %s", imageName)
	}
}
