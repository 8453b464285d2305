package vet

import (
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Workload is an object with a pod template: what the rules check.
type Workload struct {
	Kind string
	Meta *metav1.ObjectMeta
	// Replicas is the controller's replica count; 0 where the kind has
	// none (a DaemonSet has one per node, a Job its parallelism, a Pod is
	// one).
	Replicas int
	Pod      *corev1.PodSpec
	Labels   map[string]string // the pod template's
	// MaxReplicas is the most an autoscaler scales the workload to; 0
	// without one. With one, Replicas is its minReplicas: the manifest's
	// replicas field is not the count.
	MaxReplicas int
	// Deployment, DaemonSet and StatefulSet are set for their kinds, for
	// their rollout strategies.
	Deployment  *appsv1.Deployment
	DaemonSet   *appsv1.DaemonSet
	StatefulSet *appsv1.StatefulSet
	podPath     []any // the pod spec's path in the document
	src         *source
}

func newWorkload(kind string, obj any, src *source) *Workload {
	w := &Workload{Kind: kind, src: src}
	replicas := func(r *int32) int {
		if r == nil {
			return 1 // the API's default
		}
		return int(*r)
	}
	tmpl := func(t *corev1.PodTemplateSpec, path ...any) {
		w.Pod, w.Labels, w.podPath = &t.Spec, t.Labels, append(path, "spec")
	}
	switch o := obj.(type) {
	case *appsv1.Deployment:
		w.Meta, w.Replicas, w.Deployment = &o.ObjectMeta, replicas(o.Spec.Replicas), o
		tmpl(&o.Spec.Template, "spec", "template")
	case *appsv1.StatefulSet:
		w.Meta, w.Replicas, w.StatefulSet = &o.ObjectMeta, replicas(o.Spec.Replicas), o
		tmpl(&o.Spec.Template, "spec", "template")
	case *appsv1.ReplicaSet:
		w.Meta, w.Replicas = &o.ObjectMeta, replicas(o.Spec.Replicas)
		tmpl(&o.Spec.Template, "spec", "template")
	case *appsv1.DaemonSet:
		w.Meta, w.DaemonSet = &o.ObjectMeta, o
		tmpl(&o.Spec.Template, "spec", "template")
	case *batchv1.Job:
		w.Meta = &o.ObjectMeta
		tmpl(&o.Spec.Template, "spec", "template")
	case *batchv1.CronJob:
		w.Meta = &o.ObjectMeta
		tmpl(&o.Spec.JobTemplate.Spec.Template, "spec", "jobTemplate", "spec", "template")
	case *corev1.Pod:
		w.Meta, w.Replicas, w.Pod, w.Labels, w.podPath = &o.ObjectMeta, 1, &o.Spec, o.Labels, []any{"spec"}
	}
	return w
}

// Name is the workload as findings name it: Kind/name, with its
// namespace when set.
func (w *Workload) Name() string { return objectName(w.Kind, w.Meta) }

func objectName(kind string, m *metav1.ObjectMeta) string {
	if m.Namespace != "" {
		return kind + "/" + m.Namespace + "/" + m.Name
	}
	return kind + "/" + m.Name
}

// serves reports whether the workload's pods run until stopped, behind
// Services: Jobs and CronJobs end by themselves.
func (w *Workload) serves() bool { return w.Kind != "Job" && w.Kind != "CronJob" }

// grace is terminationGracePeriodSeconds (default 30 s).
func (w *Workload) grace() time.Duration {
	if g := w.Pod.TerminationGracePeriodSeconds; g != nil {
		return time.Duration(*g) * time.Second
	}
	return 30 * time.Second
}

// selectedBy reports whether a selector in namespace ns selects the pods.
func (w *Workload) selectedBy(ns string, sel labels.Selector) bool {
	return ns == w.Meta.Namespace && !sel.Empty() && sel.Matches(labels.Set(w.Labels))
}

// containerPath is the path of container i (an init container when init).
func (w *Workload) containerPath(init bool, i int, field ...any) []any {
	list := "containers"
	if init {
		list = "initContainers"
	}
	return append(append(append([]any(nil), w.podPath...), list, i), field...)
}

// env returns a container's literal environment (valueFrom is unknown
// here and left out).
func env(c *corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			m[e.Name] = e.Value
		}
	}
	return m
}

// sidecar reports an init container that runs beside the main ones (a
// native sidecar, restartPolicy Always).
func sidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

func seconds(n int32) string { return strconv.Itoa(int(n)) + "s" }
