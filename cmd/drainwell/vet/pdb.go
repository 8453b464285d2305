package vet

import (
	"errors"

	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// DesiredHealthy is the disruption controller's desiredHealthy for a budget
// over a controller of replicas (pkg/controller/disruption): minAvailable,
// or the replicas less maxUnavailable, percentages rounded up. An eviction
// is allowed while the healthy pods (Ready, not being deleted) exceed it.
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

func selectorOf(m map[string]string) labels.Selector { return labels.SelectorFromSet(labels.Set(m)) }
