// Package ctrldrain runs a controller-runtime manager and its admission
// webhooks under a health.Server's drain, so that a rollout of an operator
// fails no admission call.
//
// A stock manager stops at SIGTERM: its context ends, the webhook
// listener closes and its keep-alive connections are closed at once,
// while the Service still routes the API server's calls to the pod. The
// API server does not retry an admission call; with failurePolicy Fail, a
// lost call is a refused kubectl apply or Helm upgrade.
//
// Under ctrldrain, the health.Server takes the signal. The webhook server
// (NewWebhookServer) is one of its listeners: it keeps serving through the
// drain delay, ends keep-alive connections without racing the API server,
// and finishes the admissions in flight. The manager (Add) runs on a
// context that ends only once that listener has drained: reconcilers keep
// their caches while admissions finish. Then the manager stops as it
// would, and releases its lease if manager.Options.LeaderElectionReleaseOnCancel
// is set.
//
//	srv := health.New(settings.Config(), nil)
//	webhookServer := ctrldrain.NewWebhookServer(srv, webhook.Options{TLSOpts: tlsOpts})
//	mgr, err := ctrl.NewManager(cfg, ctrl.Options{WebhookServer: webhookServer, ...})
//	...
//	if err := ctrldrain.Add(srv, mgr); err != nil { ... }
//	os.Exit(health.ExitCode(srv.Run(context.Background())))
//
// It is a module of its own, so that controller-runtime reaches only the
// services that import it.
package ctrldrain

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/drainwell/drainwell/pkg/health"
)

// controller-runtime's webhook server limits (its internal/httpserver).
const (
	defaultReadHeaderTimeout = 32 * time.Second
	defaultIdleTimeout       = 90 * time.Second
)

// Add runs mgr as a component of srv, in place of mgr.Start: do not call
// signals.SetupSignalHandler, srv handles the signals. It also adds the
// readiness check "drain" to the manager's readyz (ReadyzCheck), so that a
// readiness probe on the manager's health port follows srv's drain policy.
//
// At the drain, the manager's context ends once mgr's webhook server, when
// it is a WebhookServer, has drained; at once otherwise. Its runnables then
// stop in controller-runtime's order. The drain waits for mgr.Start to
// return, until the shutdown deadline. A manager that stops before the
// drain (its leader lease lost, a runnable failed) starts the drain, and
// its error is Run's.
func Add(srv *health.Server, mgr manager.Manager) error {
	if err := mgr.AddReadyzCheck("drain", ReadyzCheck(srv)); err != nil {
		return fmt.Errorf("ctrldrain: %w", err)
	}
	webhooks, _ := mgr.GetWebhookServer().(*WebhookServer)
	srv.Add("manager", &component{mgr: mgr, webhooks: webhooks, stopped: make(chan struct{})})
	return nil
}

// ReadyzCheck answers as srv's /ready does, for a manager's readyz
// endpoint: an error once the drain's readiness policy says not ready.
func ReadyzCheck(srv *health.Server) healthz.Checker {
	return func(req *http.Request) error { return srv.Ready(req.Context()) }
}

// component is a manager under the drain.
type component struct {
	mgr      manager.Manager
	webhooks *WebhookServer // nil: the manager's webhook server is not ours
	stopped  chan struct{}  // closed by Shutdown: end the manager's context
}

// Run starts the manager on a context that ends when Shutdown says so, or
// with ctx (the shutdown deadline).
func (c *component) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.stopped:
			cancel()
		case <-ctx.Done():
		}
	}()
	return c.mgr.Start(ctx)
}

// Shutdown waits for the webhook listener to drain, then ends the
// manager's context. The drain then waits for Run to return.
func (c *component) Shutdown(ctx context.Context) error {
	defer close(c.stopped)
	if c.webhooks == nil {
		return nil
	}
	select {
	case <-c.webhooks.drained():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("webhook server still draining at the deadline: %w", context.Cause(ctx))
	}
}
