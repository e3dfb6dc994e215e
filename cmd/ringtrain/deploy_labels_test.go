package main

// The Kubernetes recommended labels and the instances they tell apart: every object
// and pod carries app.kubernetes.io/{name,instance,component,part-of,version}, the
// selectors use the stable ones, each selects exactly the pods it is for, and two
// instances rendered into one namespace share no name and no selected pod.

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

const (
	labelName     = "app.kubernetes.io/name"
	labelInstance = "app.kubernetes.io/instance"
	labelComp     = "app.kubernetes.io/component"
	labelPartOf   = "app.kubernetes.io/part-of"
	labelVersion  = "app.kubernetes.io/version"
)

// recommendedLabels are the labels every object and pod carries.
var recommendedLabels = []string{labelName, labelInstance, labelComp, labelPartOf, labelVersion}

// selectorKeys are exactly the keys a selector uses: the labels that never change
// for a running object (a StatefulSet's selector is immutable; the version is not).
var selectorKeys = []string{labelComp, labelInstance, labelName}

// podSet is the pods of one workload, by the labels of its template.
type podSet struct {
	where  string
	labels map[string]string
}

// selector is one label selector of a rendering and the pods it is meant to pick.
type selector struct {
	where  string
	sel    labels.Selector
	keys   []string // the keys of its matchLabels
	target string   // the podSet it must select (its where)
}

// podSets returns the pod templates of a rendering.
func (r *rendered) podSets() []podSet {
	var out []podSet
	for _, s := range r.statefulSets {
		out = append(out, podSet{"StatefulSet " + s.Name, s.Spec.Template.Labels})
	}
	for _, j := range r.jobs {
		out = append(out, podSet{"Job " + j.Name, j.Spec.Template.Labels})
	}
	return out
}

// selectors returns every label selector of a rendering with the pods it is for:
// a Service's the workload it governs or fronts (by component), a StatefulSet's and
// a topology spread constraint's (with its matchLabelKeys taken from the pod's own
// labels, as the scheduler does) their own pods, a PodDisruptionBudget's the
// coordinators.
func (r *rendered) selectors(t *testing.T) []selector {
	t.Helper()
	var out []selector
	ownerOf := func(comp string) string {
		for _, p := range r.podSets() {
			if p.labels[labelComp] == comp {
				return p.where
			}
		}
		return "(no pods of component " + comp + ")"
	}
	add := func(where, target string, ml map[string]string, exprs []metav1.LabelSelectorRequirement) {
		sel, err := metav1.LabelSelectorAsSelector(&metav1.LabelSelector{MatchLabels: ml, MatchExpressions: exprs})
		if err != nil {
			t.Fatalf("%s: selector: %v", where, err)
		}
		out = append(out, selector{where: where, sel: sel, keys: slices.Sorted(maps.Keys(ml)), target: target})
	}
	spread := func(owner string, tmpl corev1.PodTemplateSpec) {
		for i, c := range tmpl.Spec.TopologySpreadConstraints {
			if c.LabelSelector == nil {
				t.Errorf("%s: topology spread constraint %d has no labelSelector", owner, i)
				continue
			}
			ml := maps.Clone(c.LabelSelector.MatchLabels)
			for _, k := range c.MatchLabelKeys {
				ml[k] = tmpl.Labels[k]
			}
			add(fmt.Sprintf("%s topology spread %d", owner, i), owner, ml, c.LabelSelector.MatchExpressions)
		}
	}
	for _, s := range r.services {
		add("Service "+s.Name, ownerOf(s.Labels[labelComp]), s.Spec.Selector, nil)
	}
	for _, s := range r.statefulSets {
		owner := "StatefulSet " + s.Name
		add(owner+" selector", owner, s.Spec.Selector.MatchLabels, s.Spec.Selector.MatchExpressions)
		spread(owner, s.Spec.Template)
	}
	for _, j := range r.jobs {
		spread("Job "+j.Name, j.Spec.Template)
	}
	for _, p := range r.pdbs {
		add("PodDisruptionBudget "+p.Name, ownerOf(p.Labels[labelComp]), p.Spec.Selector.MatchLabels, p.Spec.Selector.MatchExpressions)
	}
	return out
}

// checkLabels checks a rendering's labels and selectors.
func checkLabels(t *testing.T, r *rendered) {
	t.Helper()
	instance := ""
	image := r.statefulSet(t, "coordinator").Spec.Template.Spec.Containers[0].Image
	_, tag, _ := strings.Cut(image, ":")
	have := func(where string, l map[string]string) {
		for _, k := range recommendedLabels {
			if l[k] == "" {
				t.Errorf("%s: no label %s (has %v)", where, k, l)
			}
		}
		if l[labelName] != "ringtrain" || l[labelPartOf] != "ringtrain" {
			t.Errorf("%s: %s=%q %s=%q, want ringtrain", where, labelName, l[labelName], labelPartOf, l[labelPartOf])
		}
		if l[labelVersion] != tag {
			t.Errorf("%s: %s=%q, want the image tag %q", where, labelVersion, l[labelVersion], tag)
		}
		if instance == "" {
			instance = l[labelInstance]
		} else if l[labelInstance] != instance {
			t.Errorf("%s: %s=%q, but other objects have %q", where, labelInstance, l[labelInstance], instance)
		}
	}
	for _, o := range r.objects() {
		where := fmt.Sprintf("%T %s", o, o.GetName())
		have(where, o.GetLabels())
		// The arguments derive the names from the instance label ($(INSTANCE)-...).
		if _, isNS := o.(*corev1.Namespace); !isNS && !strings.HasPrefix(o.GetName(), instance+"-") {
			t.Errorf("%s: the name does not start with the instance %q", where, instance+"-")
		}
	}
	for _, s := range r.statefulSets {
		if s.Spec.Template.Labels[labelComp] != s.Labels[labelComp] {
			t.Errorf("StatefulSet %s: pods of component %q, the StatefulSet %q", s.Name, s.Spec.Template.Labels[labelComp], s.Labels[labelComp])
		}
		// A StatefulSet's claim templates cannot change once created: their claims
		// carry the stable labels only, not the version an upgrade changes.
		for _, c := range s.Spec.VolumeClaimTemplates {
			if got := slices.Sorted(maps.Keys(c.Labels)); !slices.Equal(got, selectorKeys) || c.Labels[labelInstance] != instance {
				t.Errorf("StatefulSet %s claim %s: labels %v, want exactly %v of instance %s", s.Name, c.Name, c.Labels, selectorKeys, instance)
			}
		}
	}
	for _, j := range r.jobs {
		if j.Spec.Template.Labels[labelComp] != j.Labels[labelComp] {
			t.Errorf("Job %s: pods of component %q, the Job %q", j.Name, j.Spec.Template.Labels[labelComp], j.Labels[labelComp])
		}
	}
	for _, p := range r.podSets() {
		have(p.where+" pods", p.labels)
	}

	// Each selector uses name, instance and component (a topology spread takes the
	// instance from the pod, matchLabelKeys) and selects exactly its own pods.
	for _, s := range r.selectors(t) {
		if !strings.Contains(s.where, "topology spread") && !slices.Equal(s.keys, selectorKeys) {
			t.Errorf("%s: selects by %v, want exactly %v", s.where, s.keys, selectorKeys)
		}
		var picked []string
		for _, p := range r.podSets() {
			if s.sel.Matches(labels.Set(p.labels)) {
				picked = append(picked, p.where)
			}
		}
		if !slices.Equal(picked, []string{s.target}) {
			t.Errorf("%s (%v) selects %v, want exactly %s", s.where, s.sel, picked, s.target)
		}
	}
}

func TestKubernetesLabels(t *testing.T) {
	dirs := []string{filepath.Join(deployDir, "k8s/base")}
	overlays, err := filepath.Glob(filepath.Join(deployDir, "k8s/overlays/*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range append(dirs, overlays...) {
		t.Run(filepath.Base(dir), func(t *testing.T) { checkLabels(t, render(t, dir)) })
	}
}

// TestKubernetesInstancesSideBySide renders the example and the second instance,
// which share the namespace ringtrain-example, and checks that they do not
// collide: no object of one kind and name in both (the Namespace is the first's
// alone), no selector of one that selects a pod of the other, different instance
// labels, and different worker host names.
func TestKubernetesInstancesSideBySide(t *testing.T) {
	a := render(t, filepath.Join(deployDir, "k8s/overlays/example"))
	b := render(t, filepath.Join(deployDir, "k8s/overlays/second"))
	if len(b.namespaces) != 0 {
		t.Errorf("the second instance creates Namespace %s: deleting it would delete the first instance too", b.namespaces[0].Name)
	}
	ns := func(r *rendered) string { return r.statefulSet(t, "coordinator").Namespace }
	if ns(a) != ns(b) {
		t.Errorf("the instances are in namespaces %s and %s; the point is one namespace", ns(a), ns(b))
	}
	key := func(o metav1.Object) string { return fmt.Sprintf("%T %s/%s", o, o.GetNamespace(), o.GetName()) }
	names := map[string]bool{}
	for _, o := range a.objects() {
		names[key(o)] = true
	}
	for _, o := range b.objects() {
		if names[key(o)] {
			t.Errorf("both instances have %s", key(o))
		}
	}
	inst := func(r *rendered) string { return r.statefulSet(t, "coordinator").Labels[labelInstance] }
	if inst(a) == inst(b) {
		t.Errorf("both instances are labelled %s=%s", labelInstance, inst(a))
	}
	for _, pair := range [][2]*rendered{{a, b}, {b, a}} {
		for _, s := range pair[0].selectors(t) {
			for _, p := range pair[1].podSets() {
				if s.sel.Matches(labels.Set(p.labels)) {
					t.Errorf("%s's %s (%v) selects the other instance's %s", pair[0].dir, s.where, s.sel, p.where)
				}
			}
		}
	}
	// Derived names: the coordinators' Raft data claims <template>-<pod> and the
	// workers' host names <job>-<index>.
	derived := map[string]string{}
	for _, r := range []*rendered{a, b} {
		var mine []string
		for _, s := range r.statefulSets {
			for i := range int(*s.Spec.Replicas) {
				for _, c := range s.Spec.VolumeClaimTemplates {
					mine = append(mine, fmt.Sprintf("PVC %s-%s-%d", c.Name, s.Name, i))
				}
				mine = append(mine, fmt.Sprintf("pod %s-%d", s.Name, i))
			}
		}
		w := r.job(t, "worker")
		for i := range int(*w.Spec.Completions) {
			mine = append(mine, fmt.Sprintf("host %s-%d.%s", w.Name, i, w.Spec.Template.Spec.Subdomain))
		}
		for _, n := range mine {
			if other, ok := derived[n]; ok && other != r.dir {
				t.Errorf("both instances have %s", n)
			}
			derived[n] = r.dir
		}
	}
}
