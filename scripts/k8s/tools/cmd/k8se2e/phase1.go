package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
)

// instance is one rendering of deploy/k8s applied to the cluster.
type instance struct {
	name      string // for the log
	dir       string // the kustomization
	namespace string
	prefix    string // app.kubernetes.io/instance, the prefix of every name
	workers   int    // the worker Job's parallelism
}

type phase1 struct {
	c       *cluster
	repo    string
	kube    *kubernetes.Clientset
	dyn     dynamic.Interface
	disc    *discovery.DiscoveryClient
	checks  int
	tmpDirs []string
}

func newPhase1(c *cluster, repo string) (*phase1, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("admin kubeconfig: %w", err)
	}
	p := &phase1{c: c, repo: repo}
	if p.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if p.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	if p.disc, err = discovery.NewDiscoveryClientForConfig(cfg); err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	return p, nil
}

// pass records one check that held.
func (p *phase1) pass(format string, args ...any) {
	p.checks++
	slog.Info("ok: " + fmt.Sprintf(format, args...))
}

// kubectl runs kubectl as the admin and returns its output.
func (p *phase1) kubectl(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, filepath.Join(p.c.bin, "kubectl"), append([]string{"--kubeconfig=" + p.c.Kubeconfig}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.Env = append(os.Environ(), "KUBECTL_EXTERNAL_DIFF=diff -u")
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("kubectl %s: %w\n%s%s", strings.Join(args, " "), err, o.String(), e.String())
	}
	return o.String(), e.String(), err
}

// eventually polls f every half second until it returns nil or timeout passes.
func eventually(ctx context.Context, timeout time.Duration, what string, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %w)", what, ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (p *phase1) run(ctx context.Context) error {
	defer func() {
		for _, d := range p.tmpDirs {
			os.RemoveAll(d)
		}
	}()
	t0 := time.Now()
	crds := filepath.Join(p.repo, "scripts/k8s/testdata/cert-manager-crds.yaml")
	if _, _, err := p.kubectl(ctx, "apply", "--validate=strict", "-f", crds); err != nil {
		return fmt.Errorf("cert-manager CRDs: %w", err)
	}
	if _, _, err := p.kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s",
		"crd/issuers.cert-manager.io", "crd/certificates.cert-manager.io"); err != nil {
		return fmt.Errorf("cert-manager CRDs: %w", err)
	}
	p.pass("the cert-manager.io/v1 Issuer and Certificate CRDs established (%v)", time.Since(t0).Round(time.Millisecond))

	// overlays/csi-certs renders into namespace ringtrain, as the base does, and
	// changes the workers' Job template, which a Job never allows: it goes to a
	// namespace of its own through a kustomization around it.
	csi, err := os.MkdirTemp("", "ringtrain-csi-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	p.tmpDirs = append(p.tmpDirs, csi)
	// kustomize takes a base by a relative path only.
	rel, err := filepath.Rel(csi, filepath.Join(p.repo, "deploy/k8s/overlays/csi-certs"))
	if err != nil {
		return fmt.Errorf("csi-certs wrapper: %w", err)
	}
	wrap := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: ringtrain-csi\nresources:\n  - %s\n", rel)
	if err := os.WriteFile(filepath.Join(csi, "kustomization.yaml"), []byte(wrap), 0o644); err != nil {
		return fmt.Errorf("csi-certs wrapper: %w", err)
	}
	k8s := filepath.Join(p.repo, "deploy/k8s")
	instances := []instance{
		{"base", filepath.Join(k8s, "base"), "ringtrain", "ringtrain", 3},
		{"overlays/example", filepath.Join(k8s, "overlays/example"), "ringtrain-example", "ringtrain", 2},
		{"overlays/second", filepath.Join(k8s, "overlays/second"), "ringtrain-example", "second-ringtrain", 2},
		{"overlays/csi-certs", csi, "ringtrain-csi", "ringtrain", 3},
	}
	for _, in := range instances {
		t0 := time.Now()
		if err := p.apply(ctx, in); err != nil {
			return fmt.Errorf("%s: %w", in.name, err)
		}
		if err := p.workloads(ctx, in); err != nil {
			return fmt.Errorf("%s: %w", in.name, err)
		}
		slog.Info("instance checked", "instance", in.name, "took", time.Since(t0).Round(time.Millisecond))
	}
	if err := p.isolation(ctx, instances[1], instances[2]); err != nil {
		return err
	}
	if err := p.scale(ctx, instances[1]); err != nil {
		return fmt.Errorf("%s: %w", instances[1].name, err)
	}
	return p.deleteSecond(ctx, instances[1], instances[2])
}

// render returns the objects kustomize makes of dir, as kubectl renders them.
func (p *phase1) render(ctx context.Context, dir string) ([]*unstructured.Unstructured, error) {
	out, _, err := p.kubectl(ctx, "kustomize", dir)
	if err != nil {
		return nil, err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("rendered %s: %w", dir, err)
		}
		if m != nil {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("rendered %s: no objects", dir)
	}
	return objs, nil
}

func ref(o *unstructured.Unstructured) string {
	return fmt.Sprintf("%s/%s %s/%s", o.GetAPIVersion(), o.GetKind(), o.GetNamespace(), o.GetName())
}

// apply applies the kustomization, then checks that every object is stored, that a
// server-side dry run and kubectl diff find nothing to change, and that nothing
// drew a warning (PodSecurity warns of pod templates it would reject).
func (p *phase1) apply(ctx context.Context, in instance) error {
	objs, err := p.render(ctx, in.dir)
	if err != nil {
		return err
	}
	t0 := time.Now()
	out, stderr, err := p.kubectl(ctx, "apply", "--validate=strict", "-k", in.dir)
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(objs) {
		return fmt.Errorf("kubectl apply reported %d objects, kustomize rendered %d:\n%s", len(lines), len(objs), out)
	}
	for _, l := range lines {
		if !strings.HasSuffix(l, " created") {
			return fmt.Errorf("kubectl apply: %q, want every object created", l)
		}
	}
	if strings.Contains(stderr, "Warning") {
		return fmt.Errorf("kubectl apply warned:\n%s", stderr)
	}
	p.pass("%s: kubectl apply -k --validate=strict created all %d objects, no warning (%v)", in.name, len(objs), time.Since(t0).Round(time.Millisecond))

	groups, err := restmapper.GetAPIGroupResources(p.disc)
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	kinds := map[string]int{}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s: %w", ref(o), err)
		}
		got, err := p.dyn.Resource(m.Resource).Namespace(o.GetNamespace()).Get(ctx, o.GetName(), metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("%s after apply: %w", ref(o), err)
		}
		if got.GetUID() == "" {
			return fmt.Errorf("%s: stored without a uid", ref(o))
		}
		kinds[o.GetKind()]++
	}
	p.pass("%s: every rendered object is stored %v", in.name, kinds)

	if out, _, err := p.kubectl(ctx, "diff", "-k", in.dir); err != nil {
		return fmt.Errorf("kubectl diff after apply: %w\n%s", err, out)
	}
	p.pass("%s: kubectl diff -k finds no difference", in.name)

	out, stderr, err = p.kubectl(ctx, "apply", "--dry-run=server", "--validate=strict", "-k", in.dir)
	if err != nil {
		return err
	}
	var configured []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		switch {
		case strings.HasSuffix(l, " unchanged (server dry run)"):
		case strings.HasSuffix(l, " configured (server dry run)"):
			// kubectl's client-side apply sends some fields whole, and the stored
			// object carries what the API server defaulted in them, so the patch is
			// never empty: a StatefulSet's volumeClaimTemplates (a list without a
			// merge key; the stored templates have volumeMode and status), a
			// PodDisruptionBudget's selector (patch strategy replace). kubectl diff
			// above showed that applying them changes nothing.
			configured = append(configured, strings.Fields(l)[0])
		default:
			_, verbose, _ := p.kubectl(ctx, "apply", "--dry-run=server", "-k", in.dir, "-v=8")
			var patches []string
			for _, v := range strings.Split(verbose, "\n") {
				if strings.Contains(v, "Request Body") {
					patches = append(patches, v)
				}
			}
			return fmt.Errorf("kubectl apply --dry-run=server: %q, want unchanged; the patches:\n%s", l, strings.Join(patches, "\n"))
		}
	}
	if strings.Contains(stderr, "Warning") {
		return fmt.Errorf("kubectl apply --dry-run=server warned:\n%s", stderr)
	}
	p.pass("%s: kubectl apply --dry-run=server: every object unchanged but %v (whole-field patches that change nothing), no warning", in.name, configured)
	return nil
}

// pods lists the pods of the instance's component.
func (p *phase1) pods(ctx context.Context, in instance, component string) ([]corev1.Pod, error) {
	sel := labels.SelectorFromSet(labels.Set{
		"app.kubernetes.io/name":      "ringtrain",
		"app.kubernetes.io/instance":  in.prefix,
		"app.kubernetes.io/component": component,
	})
	l, err := p.kube.CoreV1().Pods(in.namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("pods of %s: %w", component, err)
	}
	return l.Items, nil
}

func podNames(pods []corev1.Pod) []string {
	var n []string
	for _, p := range pods {
		n = append(n, p.Name)
	}
	slices.Sort(n)
	return n
}

// selected lists the names of the pods in ns that sel selects.
func (p *phase1) selected(ctx context.Context, ns string, sel *metav1.LabelSelector) ([]string, error) {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, fmt.Errorf("selector %v: %w", sel, err)
	}
	l, err := p.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: s.String()})
	if err != nil {
		return nil, fmt.Errorf("pods for %v: %w", sel, err)
	}
	return podNames(l.Items), nil
}

// unschedulable checks that the scheduler has seen the pod and could not place it
// (there is no node).
func unschedulable(pod corev1.Pod) error {
	if pod.Status.Phase != corev1.PodPending {
		return fmt.Errorf("pod %s is %s, want Pending", pod.Name, pod.Status.Phase)
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return nil
		}
	}
	return fmt.Errorf("pod %s: no PodScheduled=False/Unschedulable condition from the scheduler yet", pod.Name)
}

// restricted checks what the API server and its admission made of a pod: no
// service-account token volume, the restricted security settings kept.
func restricted(pod corev1.Pod) error {
	for _, v := range pod.Spec.Volumes {
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.ServiceAccountToken != nil {
					return fmt.Errorf("pod %s: a service-account token is mounted (volume %s)", pod.Name, v.Name)
				}
			}
		}
	}
	sc := pod.Spec.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		return fmt.Errorf("pod %s: pod security context %+v", pod.Name, sc)
	}
	for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
		s := c.SecurityContext
		if s == nil || s.AllowPrivilegeEscalation == nil || *s.AllowPrivilegeEscalation ||
			s.ReadOnlyRootFilesystem == nil || !*s.ReadOnlyRootFilesystem ||
			s.Capabilities == nil || !slices.Equal(s.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			return fmt.Errorf("pod %s container %s: security context %+v", pod.Name, c.Name, s)
		}
	}
	if pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks {
		return fmt.Errorf("pod %s: service links on", pod.Name)
	}
	return nil
}

// workloads checks what the controllers and the scheduler made of the instance.
func (p *phase1) workloads(ctx context.Context, in instance) error {
	ns := in.namespace
	nsObj, err := p.kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("namespace: %w", err)
	}
	if got := nsObj.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		return fmt.Errorf("namespace %s enforces %q, want restricted", ns, got)
	}
	coord := in.prefix + "-coordinator"
	worker := in.prefix + "-worker"
	t0 := time.Now()

	// The StatefulSet: its three pods (Parallel) and their Raft data claims.
	var want []string
	for i := range 3 {
		want = append(want, fmt.Sprintf("%s-%d", coord, i))
	}
	var coordPods []corev1.Pod
	if err := eventually(ctx, 2*time.Minute, "coordinator pods", func() error {
		pods, err := p.pods(ctx, in, "coordinator")
		if err != nil {
			return err
		}
		if got := podNames(pods); !slices.Equal(got, want) {
			return fmt.Errorf("coordinator pods %v, want %v", got, want)
		}
		for _, pod := range pods {
			if err := unschedulable(pod); err != nil {
				return err
			}
		}
		coordPods = pods
		return nil
	}); err != nil {
		return err
	}
	for _, pod := range coordPods {
		if o := metav1.GetControllerOf(&pod); o == nil || o.Kind != "StatefulSet" || o.Name != coord {
			return fmt.Errorf("pod %s: controller %v, want StatefulSet %s", pod.Name, o, coord)
		}
		if err := restricted(pod); err != nil {
			return err
		}
		if _, err := p.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "raft-"+pod.Name, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("the Raft claim of %s: %w", pod.Name, err)
		}
	}
	p.pass("%s: StatefulSet %s made pods %v with their claims raft-*, admitted as restricted, Pending and marked Unschedulable by the scheduler (%v)",
		in.name, coord, want, time.Since(t0).Round(time.Millisecond))

	// The Indexed Job: one pod per index, named <job>-<index> under the subdomain.
	var workerPods []corev1.Pod
	if err := eventually(ctx, 2*time.Minute, "worker pods", func() error {
		pods, err := p.pods(ctx, in, "worker")
		if err != nil {
			return err
		}
		if len(pods) != in.workers {
			return fmt.Errorf("%d worker pods %v, want %d", len(pods), podNames(pods), in.workers)
		}
		workerPods = pods
		return nil
	}); err != nil {
		return err
	}
	var idx []int
	for _, pod := range workerPods {
		i, err := strconv.Atoi(pod.Annotations["batch.kubernetes.io/job-completion-index"])
		if err != nil {
			return fmt.Errorf("pod %s: completion index: %w", pod.Name, err)
		}
		idx = append(idx, i)
		if want := fmt.Sprintf("%s-%d", worker, i); pod.Spec.Hostname != want || pod.Spec.Subdomain != worker {
			return fmt.Errorf("pod %s: host %s.%s, want %s.%s", pod.Name, pod.Spec.Hostname, pod.Spec.Subdomain, want, worker)
		}
		if o := metav1.GetControllerOf(&pod); o == nil || o.Kind != "Job" || o.Name != worker {
			return fmt.Errorf("pod %s: controller %v, want Job %s", pod.Name, o, worker)
		}
		if err := restricted(pod); err != nil {
			return err
		}
		if err := unschedulable(pod); err != nil {
			// The scheduler may not have reached this one yet.
			if err := eventually(ctx, time.Minute, "worker scheduled", func() error {
				got, err := p.kube.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				return unschedulable(*got)
			}); err != nil {
				return err
			}
		}
	}
	slices.Sort(idx)
	if want := slices.Collect(func(yield func(int) bool) {
		for i := range in.workers {
			if !yield(i) {
				return
			}
		}
	}); !slices.Equal(idx, want) {
		return fmt.Errorf("worker completion indexes %v, want %v", idx, want)
	}
	job, err := p.kube.BatchV1().Jobs(ns).Get(ctx, worker, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("worker Job: %w", err)
	}
	p.pass("%s: Indexed Job %s made %d pods, indexes %v, hosts %s-<index>.%s; backoffLimitPerIndex=%d, podReplacementPolicy=%s kept",
		in.name, worker, in.workers, idx, worker, worker, deref(job.Spec.BackoffLimitPerIndex), derefS(job.Spec.PodReplacementPolicy))

	submit := in.prefix + "-submit"
	if err := eventually(ctx, time.Minute, "submit pod", func() error {
		pods, err := p.pods(ctx, in, "submit")
		if err != nil {
			return err
		}
		if len(pods) != 1 {
			return fmt.Errorf("%d submit pods, want 1", len(pods))
		}
		if o := metav1.GetControllerOf(&pods[0]); o == nil || o.Kind != "Job" || o.Name != submit {
			return fmt.Errorf("pod %s: controller %v, want Job %s", pods[0].Name, o, submit)
		}
		return restricted(pods[0])
	}); err != nil {
		return err
	}
	p.pass("%s: Job %s made its pod (init container prepare, then submit)", in.name, submit)

	// The PodDisruptionBudget counts the three coordinators, none healthy yet.
	if err := eventually(ctx, time.Minute, "PodDisruptionBudget status", func() error {
		pdb, err := p.kube.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, coord, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s := pdb.Status
		if s.ObservedGeneration != pdb.Generation || s.ExpectedPods != 3 || s.CurrentHealthy != 0 || s.DesiredHealthy != 2 || s.DisruptionsAllowed != 0 {
			return fmt.Errorf("status observedGeneration %d/%d expectedPods %d currentHealthy %d desiredHealthy %d disruptionsAllowed %d, want 3 0 2 0",
				s.ObservedGeneration, pdb.Generation, s.ExpectedPods, s.CurrentHealthy, s.DesiredHealthy, s.DisruptionsAllowed)
		}
		got, err := p.selected(ctx, ns, pdb.Spec.Selector)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("PodDisruptionBudget selects %v, want %v", got, want)
		}
		return nil
	}); err != nil {
		return err
	}
	p.pass("%s: PodDisruptionBudget %s: expectedPods 3, currentHealthy 0, desiredHealthy 2, disruptionsAllowed 0, selects exactly %v", in.name, coord, want)

	// The Services: two headless ones that publish unready pods, one with a cluster IP.
	for _, name := range []string{coord, worker} {
		svc, err := p.kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("service: %w", err)
		}
		if svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses {
			return fmt.Errorf("service %s: clusterIP %q publishNotReadyAddresses %v, want None and true", name, svc.Spec.ClusterIP, svc.Spec.PublishNotReadyAddresses)
		}
		got, err := p.selected(ctx, ns, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector})
		if err != nil {
			return err
		}
		wantSel := want
		if name == worker {
			wantSel = podNames(workerPods)
		}
		if !slices.Equal(got, wantSel) {
			return fmt.Errorf("service %s selects %v, want %v", name, got, wantSel)
		}
	}
	client, err := p.kube.CoreV1().Services(ns).Get(ctx, coord+"-client", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("client service: %w", err)
	}
	if !strings.HasPrefix(client.Spec.ClusterIP, "10.0.0.") {
		return fmt.Errorf("service %s: cluster IP %q, want one from 10.0.0.0/24", client.Name, client.Spec.ClusterIP)
	}
	p.pass("%s: headless Services %s and %s (clusterIP None, publishNotReadyAddresses) select their pods; %s has cluster IP %s",
		in.name, coord, worker, client.Name, client.Spec.ClusterIP)

	// The NetworkPolicies select the pods of their component, and only this instance's.
	for comp, wantPods := range map[string][]string{"coordinator": want, "worker": podNames(workerPods), "submit": nil} {
		name := in.prefix + "-" + comp
		np, err := p.kube.NetworkingV1().NetworkPolicies(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("network policy: %w", err)
		}
		got, err := p.selected(ctx, ns, &np.Spec.PodSelector)
		if err != nil {
			return err
		}
		if comp == "submit" {
			pods, err := p.pods(ctx, in, "submit")
			if err != nil {
				return err
			}
			wantPods = podNames(pods)
		}
		if !slices.Equal(got, wantPods) {
			return fmt.Errorf("network policy %s selects %v, want %v", name, got, wantPods)
		}
	}
	p.pass("%s: NetworkPolicies %s-{coordinator,worker,submit} accepted, each selecting exactly its component's pods", in.name, in.prefix)
	return nil
}

func deref[T any](p *T) T {
	var z T
	if p == nil {
		return z
	}
	return *p
}

func derefS[T ~string](p *T) string { return string(deref(p)) }

// isolation checks that two instances in one namespace do not select each other's pods.
func (p *phase1) isolation(ctx context.Context, a, b instance) error {
	for _, pair := range [][2]instance{{a, b}, {b, a}} {
		x, y := pair[0], pair[1]
		others, err := p.pods(ctx, y, "worker")
		if err != nil {
			return err
		}
		for _, comp := range []string{"coordinator", "worker"} {
			np, err := p.kube.NetworkingV1().NetworkPolicies(x.namespace).Get(ctx, x.prefix+"-"+comp, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("network policy: %w", err)
			}
			for _, rule := range np.Spec.Ingress {
				for _, peer := range rule.From {
					got, err := p.selected(ctx, x.namespace, peer.PodSelector)
					if err != nil {
						return err
					}
					for _, o := range podNames(others) {
						if slices.Contains(got, o) {
							return fmt.Errorf("network policy %s admits %s of instance %s", np.Name, o, y.prefix)
						}
					}
				}
			}
		}
	}
	p.pass("%s and %s share namespace %s; neither's NetworkPolicies admit the other's workers", a.name, b.name, a.namespace)
	return nil
}

// scale grows the Indexed Job by one index and shrinks it back, as docs/kubernetes.md
// says an Indexed Job scales: parallelism and completions together.
func (p *phase1) scale(ctx context.Context, in instance) error {
	worker := in.prefix + "-worker"
	patch := func(n int) error {
		body := fmt.Sprintf(`{"spec":{"parallelism":%d,"completions":%d}}`, n, n)
		if _, _, err := p.kubectl(ctx, "-n", in.namespace, "patch", "job", worker, "--type=merge", "-p", body); err != nil {
			return err
		}
		return eventually(ctx, time.Minute, fmt.Sprintf("%d worker pods", n), func() error {
			pods, err := p.pods(ctx, in, "worker")
			if err != nil {
				return err
			}
			var live []string
			for _, pod := range pods {
				if pod.DeletionTimestamp == nil {
					live = append(live, pod.Spec.Hostname)
				}
			}
			slices.Sort(live)
			var want []string
			for i := range n {
				want = append(want, fmt.Sprintf("%s-%d", worker, i))
			}
			if !slices.Equal(live, want) {
				return fmt.Errorf("worker hosts %v, want %v", live, want)
			}
			return nil
		})
	}
	if err := patch(in.workers + 1); err != nil {
		return fmt.Errorf("scale up: %w", err)
	}
	if err := patch(in.workers); err != nil {
		return fmt.Errorf("scale down: %w", err)
	}
	p.pass("%s: Job %s scaled %d -> %d -> %d workers (parallelism = completions): index %d's pod made, then removed",
		in.name, worker, in.workers, in.workers+1, in.workers, in.workers)
	return nil
}

// deleteSecond deletes the second instance and checks the first one is untouched.
func (p *phase1) deleteSecond(ctx context.Context, first, second instance) error {
	before, err := p.render(ctx, first.dir)
	if err != nil {
		return err
	}
	uids := map[string]types.UID{}
	groups, err := restmapper.GetAPIGroupResources(p.disc)
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	get := func(o *unstructured.Unstructured) (*unstructured.Unstructured, error) {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref(o), err)
		}
		return p.dyn.Resource(m.Resource).Namespace(o.GetNamespace()).Get(ctx, o.GetName(), metav1.GetOptions{})
	}
	for _, o := range before {
		got, err := get(o)
		if err != nil {
			return fmt.Errorf("%s: %w", first.name, err)
		}
		uids[ref(o)] = got.GetUID()
	}
	objs, err := p.render(ctx, second.dir)
	if err != nil {
		return err
	}
	if _, _, err := p.kubectl(ctx, "delete", "--wait=true", "--timeout=2m", "-k", second.dir); err != nil {
		return err
	}
	for _, o := range objs {
		if _, err := get(o); !apierrors.IsNotFound(err) {
			return fmt.Errorf("%s after kubectl delete: %v, want NotFound", ref(o), err)
		}
	}
	if err := eventually(ctx, time.Minute, "the second instance's pods gone", func() error {
		for _, comp := range []string{"coordinator", "worker", "submit"} {
			pods, err := p.pods(ctx, second, comp)
			if err != nil {
				return err
			}
			if len(pods) != 0 {
				return fmt.Errorf("pods left: %v", podNames(pods))
			}
		}
		return nil
	}); err != nil {
		return err
	}
	for _, o := range before {
		got, err := get(o)
		if err != nil {
			return fmt.Errorf("%s after deleting %s: %w", first.name, second.name, err)
		}
		if got.GetUID() != uids[ref(o)] || got.GetDeletionTimestamp() != nil {
			return fmt.Errorf("%s: replaced or deleting after deleting %s", ref(o), second.name)
		}
	}
	pods, err := p.pods(ctx, first, "coordinator")
	if err != nil {
		return err
	}
	if len(pods) != 3 {
		return fmt.Errorf("%s: %d coordinator pods after deleting %s", first.name, len(pods), second.name)
	}
	p.pass("kubectl delete -k %s removed its %d objects and pods (its garbage collected); %s's %d objects, namespace included, untouched",
		second.name, len(objs), first.name, len(before))
	return nil
}
