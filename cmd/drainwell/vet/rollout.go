package vet

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var ruleRolloutAllAtOnce = Rule{
	Name: "rollout-all-at-once", Severity: Error,
	Summary: "the rollout strategy can take every replica at once",
	Explain: `A Deployment's RollingUpdate removes up to maxUnavailable pods before their
replacements are ready; with maxUnavailable at the replica count (100%, or 1 with
one replica and maxSurge 0) every pod goes at once, and Recreate kills them all
before starting any. Every endpoint is then terminating or absent: requests are
refused until a new pod is ready. Use maxSurge 1, maxUnavailable 0. A
DaemonSet with maxUnavailable 100% (and no surge) replaces every node's pod at
once; a StatefulSet of one replica cannot surge, so each update deletes its only
pod before the new one runs. It judges
pods a Service routes (a port not named for metrics): a singleton controller
no Service routes is often Recreate on purpose (no two leaders at once).`,
	check: checkRollout,
}

func checkRollout(c *checker, w *Workload) []Finding {
	if !c.servesTraffic(w) {
		return nil
	}
	switch {
	case w.DaemonSet != nil:
		return daemonSetRollout(w)
	case w.StatefulSet != nil:
		return statefulSetRollout(w)
	}
	d := w.Deployment
	if d == nil {
		return nil
	}
	if d.Spec.Strategy.Type == "Recreate" {
		p := []any{"spec", "strategy", "type"}
		return []Finding{w.finding("", p, fieldPath(p), "Recreate kills every pod before it starts new ones: requests are refused until one is ready",
			"type RollingUpdate with maxSurge 1, maxUnavailable 0")}
	}
	ru := d.Spec.Strategy.RollingUpdate
	def := intstr.FromString("25%")
	maxU, maxS := &def, &def
	if ru != nil {
		if ru.MaxUnavailable != nil {
			maxU = ru.MaxUnavailable
		}
		if ru.MaxSurge != nil {
			maxS = ru.MaxSurge
		}
	}
	unavailable, err1 := intstr.GetScaledValueFromIntOrPercent(maxU, w.Replicas, false)
	surge, err2 := intstr.GetScaledValueFromIntOrPercent(maxS, w.Replicas, true)
	if err1 != nil || err2 != nil || w.Replicas == 0 {
		return nil
	}
	// The Deployment controller takes at least one when both round to 0.
	if unavailable == 0 && surge == 0 {
		unavailable = 1
	}
	if unavailable < w.Replicas {
		return nil
	}
	p := []any{"spec", "strategy", "rollingUpdate", "maxUnavailable"}
	return []Finding{w.finding("", p, fieldPath(p),
		fmt.Sprintf("maxUnavailable %s (maxSurge %s) lets the rollout take all %d replicas at once", maxU.String(), maxS.String(), w.Replicas),
		"maxSurge 1, maxUnavailable 0")}
}

// daemonSetRollout flags a DaemonSet whose RollingUpdate replaces every
// node's pod at once. A RollingUpdate replaces maxUnavailable pods at a
// time, across every node, and the default is 1. Only maxUnavailable 100%
// is judged, since the node count is not in the manifest. A maxSurge other
// than 0 starts the new pods first, so it is not flagged.
func daemonSetRollout(w *Workload) []Finding {
	ru := w.DaemonSet.Spec.UpdateStrategy.RollingUpdate
	if w.DaemonSet.Spec.UpdateStrategy.Type == appsv1.OnDeleteDaemonSetStrategyType || ru == nil || ru.MaxUnavailable == nil {
		return nil
	}
	if ru.MaxSurge != nil && ru.MaxSurge.String() != "0" && ru.MaxSurge.String() != "0%" {
		return nil
	}
	if u := ru.MaxUnavailable; u.Type != intstr.String || u.StrVal != "100%" {
		return nil
	}
	p := []any{"spec", "updateStrategy", "rollingUpdate", "maxUnavailable"}
	return []Finding{w.finding("", p, fieldPath(p), "maxUnavailable 100% replaces every node's pod at once: requests are refused until new ones are ready",
		"maxUnavailable 1 (the default), or maxSurge 1 with maxUnavailable 0")}
}

// statefulSetRollout flags a StatefulSet of one replica that updates on
// its own (not OnDelete). A StatefulSet cannot surge. With one replica each
// update deletes the only pod before its replacement exists.
func statefulSetRollout(w *Workload) []Finding {
	ss := w.StatefulSet
	if ss.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType || w.Replicas != 1 {
		return nil
	}
	p := []any{"spec", "replicas"}
	return []Finding{w.finding("", p, fieldPath(p), "a StatefulSet of 1 replica cannot surge: each update deletes the only pod before its replacement runs, and its requests are refused meanwhile",
		"two or more replicas, or a Deployment (maxSurge 1, maxUnavailable 0) if the pods need no identity")}
}
