package vet

import (
	"testing"

	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestDesiredHealthy(t *testing.T) {
	ptr := func(v intstr.IntOrString) *intstr.IntOrString { return &v }
	tests := []struct {
		name     string
		pdb      policyv1.PodDisruptionBudgetSpec
		replicas int
		want     int
	}{
		{"minAvailable 1 of 2: one at a time", policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr(intstr.FromInt32(1))}, 2, 1},
		{"minAvailable 1 of 1: blocks every eviction", policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr(intstr.FromInt32(1))}, 1, 1},
		{"maxUnavailable 1 of 1: allows it", policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr(intstr.FromInt32(1))}, 1, 0},
		{"minAvailable 50% of 3 rounds up", policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr(intstr.FromString("50%"))}, 3, 2},
		{"maxUnavailable 50% of 3 rounds up", policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr(intstr.FromString("50%"))}, 3, 1},
		{"no limit", policyv1.PodDisruptionBudgetSpec{}, 3, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DesiredHealthy(&tt.pdb, tt.replicas)
			if err != nil || got != tt.want {
				t.Fatalf("DesiredHealthy = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}
