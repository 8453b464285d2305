package vet

import (
	"errors"

	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type policyvPDB = policyv1.PodDisruptionBudget

// desiredHealthy is the disruption controller's desiredHealthy for a budget
// over a controller of replicas (pkg/controller/disruption): minAvailable,
// or the replicas less maxUnavailable, percentages rounded up.
func desiredHealthy(p *policyv1.PodDisruptionBudget, replicas int) (int, error) {
	switch s := p.Spec; {
	case s.MinAvailable != nil && s.MaxUnavailable != nil:
		return 0, errors.New("both minAvailable and maxUnavailable")
	case s.MinAvailable != nil:
		return intstr.GetScaledValueFromIntOrPercent(s.MinAvailable, replicas, true)
	case s.MaxUnavailable != nil:
		n, err := intstr.GetScaledValueFromIntOrPercent(s.MaxUnavailable, replicas, true)
		return max(replicas-n, 0), err
	}
	return 0, nil
}

func selectorOf(m map[string]string) labels.Selector { return labels.SelectorFromSet(labels.Set(m)) }
