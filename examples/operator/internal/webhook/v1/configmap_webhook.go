// Package v1 holds the example's admission webhook on core v1 ConfigMaps.
package v1

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// DenyLabel makes the webhook deny a ConfigMap, when "true".
const DenyLabel = "example.drainwell.dev/deny"

// log is for logging in this package.
var configmaplog = logf.Log.WithName("configmap-resource")

// SetupConfigMapWebhookWithManager registers the webhook for ConfigMap in the manager.
func SetupConfigMapWebhookWithManager(mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &corev1.ConfigMap{}).
		WithValidator(&ConfigMapValidator{}).
		Complete()
}

// +kubebuilder:webhook:path=/validate--v1-configmap,mutating=false,failurePolicy=fail,sideEffects=None,groups="",resources=configmaps,verbs=create;update,versions=v1,name=vconfigmap-v1.kb.io,admissionReviewVersions=v1

// ConfigMapValidator denies the ConfigMaps labelled DenyLabel "true" and allows the rest.
type ConfigMapValidator struct{}

// ValidateCreate implements admission.Validator so a webhook will be registered for the type ConfigMap.
func (v *ConfigMapValidator) ValidateCreate(_ context.Context, obj *corev1.ConfigMap) (admission.Warnings, error) {
	return nil, validate(obj)
}

// ValidateUpdate implements admission.Validator so a webhook will be registered for the type ConfigMap.
func (v *ConfigMapValidator) ValidateUpdate(_ context.Context, _, newObj *corev1.ConfigMap) (admission.Warnings, error) {
	return nil, validate(newObj)
}

// ValidateDelete implements admission.Validator so a webhook will be registered for the type ConfigMap.
func (v *ConfigMapValidator) ValidateDelete(_ context.Context, _ *corev1.ConfigMap) (admission.Warnings, error) {
	return nil, nil
}

func validate(cm *corev1.ConfigMap) error {
	if cm.Labels[DenyLabel] != "true" {
		return nil
	}
	configmaplog.V(1).Info("Denied", "namespace", cm.Namespace, "name", cm.Name)
	return fmt.Errorf("configmap %s is labelled %s=true", cm.Name, DenyLabel)
}
