// Command webhookpod is an operator's admission webhook, shaped as
// kubebuilder scaffolds it, for the simulated cluster: a manager with one
// validating webhook that allows every object and prints the UID of each
// request it answers ("answered <uid>" on stderr).
//
// ADMIT_DELAY is how long each admission takes (0 by default).
//
// MANAGER=stock runs it as scaffolded (webhook.NewServer, then
// mgr.Start(ctrl.SetupSignalHandler())): the negative control. Otherwise it
// runs under the drain, with docs/operators.md's diff applied.
//
// No controller runs and no API server is dialled: the manager's REST
// config points nowhere. Each pod has its own loopback address, which the
// simulated cluster passes in ADDR; the webhook and the health probe
// listen on it, as they would on a pod's own IP.
package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/drainwell/drainwell/pkg/ctrldrain"
	"github.com/drainwell/drainwell/pkg/health"
	"github.com/drainwell/drainwell/pkg/healthenv"
)

func main() {
	os.Exit(run())
}

func run() int {
	var certDir string
	var webhookPort, probePort int
	flag.StringVar(&certDir, "webhook-cert-path", "", "the directory of tls.crt and tls.key")
	flag.IntVar(&webhookPort, "webhook-port", webhook.DefaultPort, "the webhook server's port")
	flag.IntVar(&probePort, "health-probe-port", 8081, "the manager's health probe port")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctrl.SetLogger(logr.FromSlogHandler(logger.Handler()))

	ip, _, err := net.SplitHostPort(os.Getenv("ADDR"))
	if err != nil {
		logger.Error("ADDR: the pod's address", "error", err)
		return health.ExitUsage
	}
	// The health.Server serves no HTTP of its own here: the manager's
	// probe server answers the kubelet.
	if err := os.Unsetenv("ADDR"); err != nil {
		logger.Error("unset ADDR", "error", err)
		return health.ExitFailed
	}

	// kubebuilder's default: HTTP/2 off, against rapid reset.
	tlsOpts := []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}
	webhookOpts := webhook.Options{Host: ip, Port: webhookPort, CertDir: certDir, TLSOpts: tlsOpts}
	opts := ctrl.Options{
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: net.JoinHostPort(ip, fmt.Sprint(probePort)),
	}
	noAPIServer := &rest.Config{Host: "https://127.0.0.1:1"}

	if os.Getenv("MANAGER") == "stock" {
		opts.WebhookServer = webhook.NewServer(webhookOpts)
		mgr, err := setup(noAPIServer, opts)
		if err != nil {
			logger.Error("setup", "error", err)
			return 1
		}
		if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
			logger.Error("problem running manager", "error", err)
			return 1
		}
		return 0
	}

	settings, err := healthenv.Load()
	if err != nil {
		logger.Error("bad drain settings", "error", err)
		return health.ExitUsage
	}
	cfg := settings.Config()
	cfg.Logger = logger
	srv := health.New(cfg, nil)
	opts.WebhookServer = ctrldrain.NewWebhookServer(srv, webhookOpts)
	opts.LeaderElectionReleaseOnCancel = true
	mgr, err := setup(noAPIServer, opts)
	if err != nil {
		logger.Error("setup", "error", err)
		return 1
	}
	if err := ctrldrain.Add(srv, mgr); err != nil {
		logger.Error("unable to run the manager under the drain", "error", err)
		return 1
	}
	err = srv.Run(context.Background())
	if err != nil {
		logger.Error("the drain ended badly", "error", err)
	}
	return health.ExitCode(err)
}

// setup makes the manager, its webhook and the scaffold's checks.
func setup(cfg *rest.Config, opts ctrl.Options) (ctrl.Manager, error) {
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("unable to start manager: %w", err)
	}
	delay, err := time.ParseDuration(cmp.Or(os.Getenv("ADMIT_DELAY"), "0s"))
	if err != nil {
		return nil, fmt.Errorf("ADMIT_DELAY: %w", err)
	}
	mgr.GetWebhookServer().Register("/validate", &webhook.Admission{Handler: allow(delay)})
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}

// allow admits every object after ADMIT_DELAY (a webhook's own work: a
// lookup in its cache, a policy), and says which request it answered.
func allow(delay time.Duration) admission.HandlerFunc {
	return func(ctx context.Context, req admission.Request) admission.Response {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return admission.Errored(http.StatusServiceUnavailable, ctx.Err())
		}
		fmt.Fprintln(os.Stderr, "answered", req.UID)
		return admission.Allowed("")
	}
}
