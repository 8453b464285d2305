// Package manifest builds the deploy/ kustomization and loads it strictly into
// Kubernetes' own API types, so that a misspelled or misplaced field fails
// as it would with kubectl's server-side validation, and checks the
// semantic rules a cluster would apply or silently ignore.
package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Set is every object of a kustomization, by kind.
type Set struct {
	Rendered    []byte // the kustomization's output, when built by LoadDir
	Deployments []*appsv1.Deployment
	Services    []*corev1.Service
	PDBs        []*policyv1.PodDisruptionBudget
	Webhooks    []*admissionregistrationv1.ValidatingWebhookConfiguration
}

// Deployment returns the Deployment called name, or nil.
func (s *Set) Deployment(name string) *appsv1.Deployment {
	for _, d := range s.Deployments {
		if d.Name == name {
			return d
		}
	}
	return nil
}

// Service returns the Service called name, or nil.
func (s *Set) Service(name string) *corev1.Service {
	for _, sv := range s.Services {
		if sv.Name == name {
			return sv
		}
	}
	return nil
}

// LoadDir builds the kustomization in dir with kustomize's own library (as
// `kubectl kustomize` does: bases, patches, images) and decodes every
// object it renders strictly.
func LoadDir(dir string) (*Set, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	set := &Set{Rendered: out}
	if err := set.Add("kustomize build "+dir, out); err != nil {
		return nil, err
	}
	return set, nil
}

// Add decodes every YAML document of data (named name in errors) strictly
// into its API type and validates it.
func (s *Set) Add(name string, data []byte) error {
	for i, doc := range splitDocuments(data) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return fmt.Errorf("%s, document %d: %w", name, i+1, err)
		}
		where := fmt.Sprintf("%s, document %d (%s)", name, i+1, tm.Kind)
		var err error
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 Deployment":
			d := &appsv1.Deployment{}
			if err = decodeStrict(doc, d); err == nil {
				err = ValidateDeployment(d)
				s.Deployments = append(s.Deployments, d)
			}
		case "v1 Service":
			sv := &corev1.Service{}
			if err = decodeStrict(doc, sv); err == nil {
				s.Services = append(s.Services, sv)
			}
		case "policy/v1 PodDisruptionBudget":
			p := &policyv1.PodDisruptionBudget{}
			if err = decodeStrict(doc, p); err == nil {
				s.PDBs = append(s.PDBs, p)
			}
		case "admissionregistration.k8s.io/v1 ValidatingWebhookConfiguration":
			w := &admissionregistrationv1.ValidatingWebhookConfiguration{}
			if err = decodeStrict(doc, w); err == nil {
				s.Webhooks = append(s.Webhooks, w)
			}
		default:
			err = fmt.Errorf("unsupported kind %q", tm.APIVersion+" "+tm.Kind)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	return nil
}

// decodeStrict decodes a YAML document as the API server does with
// fieldValidation=Strict: every unknown or duplicate field is an error
// that names its full path.
func decodeStrict(doc []byte, v any) error {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(j, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(append([]byte("\n"), data...), []byte("\n---")) {
		if len(bytes.TrimSpace(stripComments(d))) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

func stripComments(b []byte) []byte {
	var out []byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			out = append(out, l...)
		}
	}
	return out
}

// ValidateDeployment checks what the API server would reject, or what it
// would accept and then ignore, for the fields this project relies on.
func ValidateDeployment(d *appsv1.Deployment) error {
	var errs []error
	switch d.Spec.Strategy.Type {
	case appsv1.RollingUpdateDeploymentStrategyType, appsv1.RecreateDeploymentStrategyType, "":
	default:
		errs = append(errs, fmt.Errorf("spec.strategy.type %q: want RollingUpdate or Recreate", d.Spec.Strategy.Type))
	}
	if d.Spec.Selector == nil {
		errs = append(errs, errors.New("spec.selector is missing"))
	} else {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil {
			errs = append(errs, fmt.Errorf("spec.selector: %w", err))
		} else if sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			errs = append(errs, errors.New("spec.selector does not match spec.template.metadata.labels"))
		}
	}
	if len(d.Spec.Template.Spec.Containers) == 0 {
		errs = append(errs, errors.New("spec.template.spec.containers is empty"))
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == "" || c.Image == "" {
			errs = append(errs, fmt.Errorf("container %q: name and image are required", c.Name))
		}
	}
	return errors.Join(errs...)
}

// Env returns the container's environment as a map (literal values only).
func Env(c *corev1.Container) map[string]string {
	m := make(map[string]string, len(c.Env))
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

// Container returns the container called name in d, or nil.
func Container(d *appsv1.Deployment, name string) *corev1.Container {
	for i := range d.Spec.Template.Spec.Containers {
		if c := &d.Spec.Template.Spec.Containers[i]; c.Name == name {
			return c
		}
	}
	return nil
}

// PortNumber resolves a probe or Service port (a number, or the name of a
// container port) against c.
func PortNumber(c *corev1.Container, name string, number int32) (int32, error) {
	if name == "" {
		return number, nil
	}
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("container %q has no port named %q", c.Name, strings.TrimSpace(name))
}
