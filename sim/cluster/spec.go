// Package cluster runs the app as Kubernetes would on one machine, as
// faithfully as a test can: pods are real processes on their own loopback
// addresses; a kubelet runs their probes and terminates them in
// Kubernetes' order; a Service proxy sends each new connection to a random
// ready endpoint, and learns of endpoint changes after a propagation lag;
// a Deployment controller rolls them by maxSurge and maxUnavailable.
package cluster

import (
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/drainwell/drainwell/e2e/manifest"
)

// Probe is a container probe, as the kubelet reads it.
type Probe struct {
	HTTPPath     string   // httpGet path, or
	Exec         []string // exec command
	InitialDelay time.Duration
	Period       time.Duration
	Timeout      time.Duration
	Success      int
	Failure      int
	// Grace is the probe-level terminationGracePeriodSeconds of a
	// liveness kill; 0: the pod's.
	Grace time.Duration
}

// Spec is what the harness takes from a Deployment.
type Spec struct {
	Replicas       int
	MaxSurge       int
	MaxUnavailable int
	Port           int               // the container port of the Service's "http" port (ADDR)
	ProbePort      int               // the readiness probe's port
	Ports          map[string]int    // the container's ports by name
	Env            map[string]string // the container's environment
	Readiness      Probe
	Liveness       Probe
	Grace          time.Duration // terminationGracePeriodSeconds
	PreStopSleep   time.Duration // lifecycle.preStop.sleep
}

// SpecFromDeployment reads the container called name of d.
func SpecFromDeployment(d *appsv1.Deployment, name string) (Spec, error) {
	c := manifest.Container(d, name)
	if c == nil {
		return Spec{}, fmt.Errorf("no container %q", name)
	}
	s := Spec{Replicas: 1, Env: manifest.Env(c), Grace: 30 * time.Second}
	if d.Spec.Replicas != nil {
		s.Replicas = int(*d.Spec.Replicas)
	}
	ru := d.Spec.Strategy.RollingUpdate
	if ru == nil {
		return Spec{}, errors.New("no rollingUpdate strategy")
	}
	var err error
	if s.MaxSurge, err = scaled(ru.MaxSurge, s.Replicas, true); err != nil {
		return Spec{}, err
	}
	if s.MaxUnavailable, err = scaled(ru.MaxUnavailable, s.Replicas, false); err != nil {
		return Spec{}, err
	}
	if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
		s.Grace = time.Duration(*g) * time.Second
	}
	if lc := c.Lifecycle; lc != nil && lc.PreStop != nil && lc.PreStop.Sleep != nil {
		s.PreStopSleep = time.Duration(lc.PreStop.Sleep.Seconds) * time.Second
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil {
		return Spec{}, errors.New("the harness needs an httpGet readinessProbe")
	}
	port, err := manifest.PortNumber(c, c.ReadinessProbe.HTTPGet.Port.StrVal, c.ReadinessProbe.HTTPGet.Port.IntVal)
	if err != nil {
		return Spec{}, err
	}
	s.ProbePort = int(port)
	s.Ports = map[string]int{}
	for _, p := range c.Ports {
		s.Ports[p.Name] = int(p.ContainerPort)
	}
	s.Port = s.ProbePort
	if p, ok := s.Ports["http"]; ok {
		s.Port = p
	}
	s.Readiness = probe(c.ReadinessProbe)
	if c.LivenessProbe != nil {
		s.Liveness = probe(c.LivenessProbe)
	}
	return s, nil
}

// scaled resolves an int-or-percent against replicas, as the Deployment
// controller does (surge rounds up, unavailable down).
func scaled(v *intstr.IntOrString, replicas int, roundUp bool) (int, error) {
	def := intstr.FromString("25%")
	if v == nil {
		v = &def
	}
	return intstr.GetScaledValueFromIntOrPercent(v, replicas, roundUp)
}

func probe(p *corev1.Probe) Probe {
	sec := func(n int32, def time.Duration) time.Duration {
		if n == 0 {
			return def
		}
		return time.Duration(n) * time.Second
	}
	out := Probe{
		InitialDelay: time.Duration(p.InitialDelaySeconds) * time.Second,
		Period:       sec(p.PeriodSeconds, 10*time.Second),
		Timeout:      sec(p.TimeoutSeconds, time.Second),
		Success:      max(int(p.SuccessThreshold), 1),
		Failure:      int(p.FailureThreshold),
	}
	if out.Failure == 0 {
		out.Failure = 3
	}
	if p.HTTPGet != nil {
		out.HTTPPath = p.HTTPGet.Path
	}
	if p.Exec != nil {
		out.Exec = p.Exec.Command
	}
	if g := p.TerminationGracePeriodSeconds; g != nil {
		out.Grace = time.Duration(*g) * time.Second
	}
	return out
}
