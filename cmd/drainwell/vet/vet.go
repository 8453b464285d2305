// Package vet checks Kubernetes manifests for the timing relations that
// lose requests or restart pods when a service drains: the grace period
// against preStop and the drain's bound, probe periods against the drain
// delay and the liveness marker's age, rollout strategies and disruption
// budgets that can take every replica at once, readiness that opts out of
// kube-proxy's terminating-endpoint fallback, Services that route to no
// port. Each Rule has a stable name, a severity and an explanation; Check
// returns one Finding per problem, naming the object, the container, the
// field, the numbers that conflict and the fix.
//
// It knows the environment of github.com/drainwell/drainwell's pkg/health
// services (DRAIN_DELAY, SHUTDOWN_TIMEOUT, DRAIN_READINESS, LIVE_MAX_AGE,
// ADMIN_ADDR) and uses it where a container sets it.
package vet

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// Severity is how bad a finding is.
type Severity string

// The severities.
const (
	// Error: the manifest loses requests or restarts pods.
	Error Severity = "error"
	// Warning: it costs (node CPU, time to recover, stuck maintenance).
	Warning Severity = "warning"
)

// Finding is one problem in one object.
type Finding struct {
	Rule      string   `json:"rule"`
	Severity  Severity `json:"severity"`
	Object    string   `json:"object"`              // Kind/name or Kind/namespace/name
	Container string   `json:"container,omitempty"` // "" for the pod or the object
	Field     string   `json:"field"`               // the field's path in the object
	Message   string   `json:"message"`             // the numbers that conflict
	Fix       string   `json:"fix"`
	File      string   `json:"file"`
	Line      int      `json:"line,omitempty"` // 0: unknown
}

// String is the finding as one line of text.
func (f Finding) String() string {
	where := f.File
	if f.Line > 0 {
		where = fmt.Sprintf("%s:%d", f.File, f.Line)
	}
	obj := f.Object
	if f.Container != "" {
		obj += " container " + f.Container
	}
	return fmt.Sprintf("%s: %s %s: %s %s: %s; fix: %s", where, f.Severity, f.Rule, obj, f.Field, f.Message, f.Fix)
}

// Options are the facts Check cannot read from the manifests.
type Options struct {
	// KubeVersion is the oldest cluster minor version the manifests must
	// work on (33 for 1.33). Default DefaultKubeVersion.
	KubeVersion int
	// Propagation is how long an endpoint change takes to reach every
	// node's kube-proxy. Default DefaultPropagation.
	Propagation time.Duration
	// MaxWedge is the wedge-restart rule's bound on the time from a
	// process freezing to the kubelet killing it. Default MaxWedge.
	MaxWedge time.Duration
}

// Defaults of Options.
const (
	DefaultKubeVersion = 33
	DefaultPropagation = time.Second
)

// Check runs every rule over every workload of set and returns the
// findings, in input order, then by rule.
func Check(set *Set, opts Options) []Finding {
	if opts.KubeVersion == 0 {
		opts.KubeVersion = DefaultKubeVersion
	}
	if opts.Propagation == 0 {
		opts.Propagation = DefaultPropagation
	}
	if opts.MaxWedge == 0 {
		opts.MaxWedge = MaxWedge
	}
	c := &checker{set: set, opts: opts}
	autoscaled(set)
	var out []Finding
	for _, w := range set.Workloads {
		for _, r := range rules {
			if ignored(w.Meta.Annotations, r.Name) {
				continue
			}
			for _, f := range r.check(c, w) {
				f.Rule, f.Severity = r.Name, r.Severity
				out = append(out, f)
			}
		}
	}
	for _, svc := range set.Services {
		if ignored(svc.Meta.Annotations, ruleServiceTargetPort.Name) {
			continue
		}
		for _, f := range c.serviceTargets(svc) {
			f.Rule, f.Severity = ruleServiceTargetPort.Name, ruleServiceTargetPort.Severity
			out = append(out, f)
		}
	}
	// By file, in input order, then by line.
	files := map[string]int{}
	for _, f := range out {
		if _, ok := files[f.File]; !ok {
			files[f.File] = len(files)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if fi, fj := files[out[i].File], files[out[j].File]; fi != fj {
			return fi < fj
		}
		return out[i].Line < out[j].Line
	})
	return out
}

// IgnoreAnnotation is the prefix of the annotation that turns a rule off
// for one object: ignore.vet.drainwell.io/RULE, its value the reason.
const IgnoreAnnotation = "ignore.vet.drainwell.io/"

func ignored(annotations map[string]string, rule string) bool {
	_, ok := annotations[IgnoreAnnotation+rule]
	return ok
}

// Failed reports whether any finding is an error.
func Failed(fs []Finding) bool {
	return slices.ContainsFunc(fs, func(f Finding) bool { return f.Severity == Error })
}

// Rule is one check.
type Rule struct {
	Name     string
	Severity Severity
	Summary  string // one line
	Explain  string // why, and the Kubernetes behaviour behind it
	check    func(*checker, *Workload) []Finding
}

// Rules returns every rule, by name.
func Rules() []Rule {
	out := append([]Rule(nil), rules...)
	out = append(out, ruleServiceTargetPort)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Lookup returns the rule called name.
func Lookup(name string) (Rule, bool) {
	for _, r := range Rules() {
		if r.Name == name {
			return r, true
		}
	}
	return Rule{}, false
}

// checker is one Check's state.
type checker struct {
	set  *Set
	opts Options
}

// finding builds a finding at field (a path below the pod spec when
// container >= 0 or pod is true, else below the object).
func (w *Workload) finding(container string, path []any, field, msg, fix string) Finding {
	return Finding{Object: w.Name(), Container: container, Field: field, Message: msg, Fix: fix,
		File: w.src.file, Line: w.src.Line(path...)}
}

// fieldPath renders a path as Kubernetes writes it: a.b[0].c.
func fieldPath(path []any) string {
	s := ""
	for _, p := range path {
		switch v := p.(type) {
		case string:
			if s != "" {
				s += "."
			}
			s += v
		case int:
			s += fmt.Sprintf("[%d]", v)
		}
	}
	return s
}

// autoscaled gives each workload an autoscaler scales its count: between
// the HPA's minReplicas (default 1) and maxReplicas.
func autoscaled(set *Set) {
	for _, h := range set.autoscalers {
		ref := h.Spec.ScaleTargetRef
		for _, w := range set.Workloads {
			if w.Kind != ref.Kind || w.Meta.Name != ref.Name || w.Meta.Namespace != h.Namespace {
				continue
			}
			w.Replicas, w.MaxReplicas = 1, int(h.Spec.MaxReplicas)
			if m := h.Spec.MinReplicas; m != nil {
				w.Replicas = int(*m)
			}
		}
	}
}
