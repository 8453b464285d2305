// Package controller holds the example's reconciler.
package controller

import (
	"context"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

const (
	// WatchLabel marks the ConfigMaps the reconciler takes, when "true".
	WatchLabel = "example.drainwell.dev/watch"
	// ReconciledByAnnotation names the replica that first reconciled a ConfigMap.
	ReconciledByAnnotation = "example.drainwell.dev/reconciled-by"
)

// ConfigMapReconciler reconciles a ConfigMap object
type ConfigMapReconciler struct {
	client.Client
	Scheme *runtime.Scheme
	// Identity is written in the annotation.
	// Empty takes POD_NAME, or the host name and process id.
	Identity string
}

// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;update;patch

// Reconcile writes the annotation on a watched ConfigMap that has none.
// The first replica to reconcile it is named; the next leaders leave it.
func (r *ConfigMapReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx)

	var cm corev1.ConfigMap
	if err := r.Get(ctx, req.NamespacedName, &cm); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if _, done := cm.Annotations[ReconciledByAnnotation]; done {
		return ctrl.Result{}, nil
	}
	patch := client.MergeFrom(cm.DeepCopy())
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	cm.Annotations[ReconciledByAnnotation] = r.Identity
	if err := r.Patch(ctx, &cm, patch); err != nil {
		return ctrl.Result{}, fmt.Errorf("annotating configmap %s: %w", req.NamespacedName, err)
	}
	log.Info("Reconciled", "by", r.Identity)
	return ctrl.Result{}, nil
}

// SetupWithManager sets up the controller with the Manager.
func (r *ConfigMapReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Identity == "" {
		r.Identity = defaultIdentity()
	}
	watched := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetLabels()[WatchLabel] == "true"
	})
	return ctrl.NewControllerManagedBy(mgr).
		For(&corev1.ConfigMap{}, builder.WithPredicates(watched)).
		Named("configmap").
		Complete(r)
}

// defaultIdentity is the pod's name (the downward API's POD_NAME), else the
// host name and the process id.
func defaultIdentity() string {
	if name := os.Getenv("POD_NAME"); name != "" {
		return name
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}
