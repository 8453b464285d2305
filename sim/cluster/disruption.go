package cluster

import (
	"context"
	"fmt"
	"time"

	policyv1 "k8s.io/api/policy/v1"

	"github.com/drainwell/drainwell/cmd/drainwell/vet"
)

// DeleteAll deletes every pod at once (`kubectl delete pod -l ...`, or the
// only replica deleted) and, as the ReplicaSet controller does, creates a
// replacement for each at once: pods being deleted no longer count
// towards the ReplicaSet's replicas (controller.FilterActivePods skips a
// pod with a deletion timestamp).
func (c *Cluster) DeleteAll() {
	c.mu.Lock()
	rev := c.revision
	c.mu.Unlock()
	var deleted []*Pod
	for _, p := range c.Pods() {
		if !p.terminating.Load() {
			p.Delete()
			deleted = append(deleted, p)
		}
	}
	for range deleted {
		c.createPod(rev, c.cfg.StartDelay)
	}
}

// DrainEvictionRetry is how long `kubectl drain` waits before it retries an
// eviction that the disruption budget refused (429).
const DrainEvictionRetry = 5 * time.Second

// Drain drains the node that every pod of the cluster runs on, as `kubectl
// drain` does: it asks the eviction API for every pod at once and retries
// each refused eviction every DrainEvictionRetry, until all have been
// evicted or ctx ends. An eviction is allowed while the budget pdb allows
// a disruption; each evicted pod is replaced (on another node) as by
// DeleteAll. pdb nil: no budget.
func (c *Cluster) Drain(ctx context.Context, pdb *policyv1.PodDisruptionBudgetSpec) error {
	c.mu.Lock()
	rev := c.revision
	c.mu.Unlock()
	var node []*Pod // the drained node's pods; replacements land elsewhere
	for _, p := range c.Pods() {
		if !p.terminating.Load() {
			node = append(node, p)
		}
	}
	for {
		left := 0
		for _, p := range node {
			if p.terminating.Load() {
				continue
			}
			ok, err := c.evictionAllowed(pdb)
			if err != nil {
				return err
			}
			if !ok {
				left++
				continue
			}
			p.Delete()
			c.event(p, Terminating, "evicted")
			c.createPod(rev, c.cfg.StartDelay)
		}
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drain: %d evictions still refused by the disruption budget: %w", left, ctx.Err())
		case <-time.After(DrainEvictionRetry):
		}
	}
}

// evictionAllowed is the eviction API's check of the budget
// (pkg/registry/core/pod/storage/eviction.go with the disruption
// controller's status, pkg/controller/disruption): a disruption is allowed
// while the healthy pods exceed the desired healthy count. Healthy pods are
// Ready and not being deleted (countHealthyPods); the desired count is
// minAvailable, or the expected count (the Deployment's replicas) less
// maxUnavailable, percentages rounded up (vet.DesiredHealthy).
func (c *Cluster) evictionAllowed(pdb *policyv1.PodDisruptionBudgetSpec) (bool, error) {
	if pdb == nil {
		return true, nil
	}
	healthy := 0
	for _, p := range c.Pods() {
		if p.ready.Load() && !p.terminating.Load() {
			healthy++
		}
	}
	desired, err := vet.DesiredHealthy(pdb, c.cfg.Spec.Replicas)
	if err != nil {
		return false, err
	}
	return healthy-desired > 0, nil
}
