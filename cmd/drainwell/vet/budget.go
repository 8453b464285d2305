package vet

import (
	"errors"
	"fmt"
	"strings"

	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var rulePDBBlocksEviction = Rule{
	Name: "pdb-blocks-eviction", Severity: Warning,
	Summary: "the disruption budget blocks every eviction",
	Explain: `The eviction API (kubectl drain, the cluster autoscaler) evicts a pod only
while the healthy pods exceed the budget's desired count (minAvailable, or the
replicas less maxUnavailable). With minAvailable at the replica count, or
maxUnavailable 0, no pod can ever be evicted: node drains hang until someone
deletes the pods by hand, which ignores the budget altogether.`,
	check: checkPDBBlocks,
}

var rulePDBAllowsAll = Rule{
	Name: "pdb-allows-all", Severity: Warning,
	Summary: "the disruption budget lets a drain evict every replica at once",
	Explain: `A budget that allows as many disruptions as there are replicas lets a node
drain evict them all together: every endpoint is terminating at once, and the
Service lives on kube-proxy's fallback to terminating endpoints that still serve
(KEP-1669) until the replacements are ready. Keep at least one replica: minAvailable 1
with two or more replicas.`,
	check: checkPDBAllowsAll,
}

// budget is a disruption budget that selects a workload. desired is its
// desired healthy count for the workload's replicas.
type budget struct {
	obj     *Object[policyv1.PodDisruptionBudget]
	desired int
}

// budgets returns the disruption budgets that select w. A budget that
// sets both minAvailable and maxUnavailable is left out, since the API
// server rejects it.
func (c *checker) budgets(w *Workload) []budget {
	var out []budget
	for _, p := range c.set.PDBs {
		sel, err := metav1.LabelSelectorAsSelector(p.Obj.Spec.Selector)
		if err != nil || !w.selectedBy(p.Meta.Namespace, sel) {
			continue
		}
		if desired, err := DesiredHealthy(&p.Obj.Spec, w.Replicas); err == nil {
			out = append(out, budget{p, desired})
		}
	}
	return out
}

// DesiredHealthy is the disruption controller's desiredHealthy for a budget
// over a controller of replicas (pkg/controller/disruption). It is
// minAvailable, or the replicas less maxUnavailable. Percentages are
// rounded up. An eviction is allowed while the healthy pods exceed it. A
// healthy pod is Ready and not being deleted.
func DesiredHealthy(spec *policyv1.PodDisruptionBudgetSpec, replicas int) (int, error) {
	switch {
	case spec.MinAvailable != nil && spec.MaxUnavailable != nil:
		return 0, errors.New("a budget sets minAvailable or maxUnavailable, not both")
	case spec.MinAvailable != nil:
		return intstr.GetScaledValueFromIntOrPercent(spec.MinAvailable, replicas, true)
	case spec.MaxUnavailable != nil:
		n, err := intstr.GetScaledValueFromIntOrPercent(spec.MaxUnavailable, replicas, true)
		return max(replicas-n, 0), err
	}
	return 0, nil
}

func checkPDBBlocks(c *checker, w *Workload) []Finding {
	if !w.serves() || w.Replicas == 0 {
		return nil
	}
	var out []Finding
	for _, b := range c.budgets(w) {
		if b.desired < w.Replicas {
			continue
		}
		if w.MaxReplicas > 0 {
			// An autoscaler owns the count, so the budget is judged
			// at its most. Below that it blocks only while the load
			// is low.
			if desired, err := DesiredHealthy(&b.obj.Obj.Spec, w.MaxReplicas); err != nil || desired < w.MaxReplicas {
				continue
			}
		}
		f := pdbFinding(b.obj, fmt.Sprintf("the budget wants %d healthy of %s's %s: no pod can ever be evicted, node drains hang", b.desired, w.Name(), replicas(w.Replicas)),
			"minAvailable below the replicas (and two or more replicas), or maxUnavailable 1")
		out = append(out, f)
	}
	return out
}

func checkPDBAllowsAll(c *checker, w *Workload) []Finding {
	if !w.serves() || w.Replicas < 2 {
		return nil
	}
	var out []Finding
	for _, b := range c.budgets(w) {
		if b.desired > 0 {
			continue
		}
		msg := fmt.Sprintf("the budget lets a drain evict all %d replicas of %s at once", w.Replicas, w.Name())
		if hooks := c.failClosedHooks(w).pod; len(hooks) > 0 {
			msg += fmt.Sprintf(": they serve %s, and the API server refuses every request the webhook is called for until one is ready", describe(hooks))
		}
		out = append(out, pdbFinding(b.obj, msg, "minAvailable 1, or maxUnavailable below the replicas"))
	}
	return out
}

func pdbFinding(p *Object[policyv1.PodDisruptionBudget], msg, fix string) Finding {
	field := "spec.minAvailable"
	if p.Obj.Spec.MaxUnavailable != nil {
		field = "spec.maxUnavailable"
	}
	return Finding{Object: objectName(p.Kind, p.Meta), Field: field, Message: msg, Fix: fix,
		File: p.src.file, Line: p.src.Line(strings.Split(field, ".")[0], strings.Split(field, ".")[1])}
}
