// Package service is the example service: a counter behind POST /incr, built on
// pkg/health for its drain and pkg/probe for its liveness marker.
package service

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/drainwell/drainwell/cmd/app/counter"
	"github.com/drainwell/drainwell/pkg/grpcdrain"
	"github.com/drainwell/drainwell/pkg/health"
	"github.com/drainwell/drainwell/pkg/metrics"
	"github.com/drainwell/drainwell/pkg/probe"
)

// Main runs the app command with args and returns the process's exit
// status, health.ExitCode's: 0 after a clean drain (or, for `live`, a live
// marker), 1 for a failed check or an abandoned increment, 2 for bad usage
// or configuration, 3 for a server that stopped serving, 4 for the
// shutdown deadline, 5 for a second signal. The environment is the
// process's (envconfig reads it).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := Command(stderr)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", root.Name(), err)
	}
	return health.ExitCode(err)
}

// Command returns the app's root command: `app` and `app serve` run the
// service, `app live` checks its marker. Logs go to logOut.
func Command(logOut io.Writer) *cobra.Command {
	serve := func(cmd *cobra.Command, _ []string) error {
		return Serve(cmd.Context(), slog.New(slog.NewTextHandler(logOut, nil)))
	}
	root := &cobra.Command{
		Use:           "app",
		Short:         "Example counter service that drains without losing a request",
		Args:          noArgs,
		RunE:          serve,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(usageError)
	serveCmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the service (the default)",
		Args:  noArgs,
		RunE:  serve,
	}
	serveCmd.SetFlagErrorFunc(usageError)
	root.AddCommand(serveCmd, probe.Command())
	return root
}

func noArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return fmt.Errorf("%w: %v", probe.ErrUsage, err)
	}
	return nil
}

func usageError(_ *cobra.Command, err error) error {
	return fmt.Errorf("%w: %v", probe.ErrUsage, err)
}

// Serve reads the configuration from the environment and runs the service
// until it has drained.
func Serve(ctx context.Context, log *slog.Logger) error {
	cfg, err := LoadConfig()
	if err != nil {
		return err
	}
	var c counter.Counter = &counter.Memory{}
	if cfg.RedisAddr != "" {
		c = counter.NewRedis(cfg.RedisAddr, cfg.RedisPassword)
	}
	if cfg.DrainDelay < 0 {
		log.Warn("DRAIN_DELAY=none: no drain delay; requests that endpoint lag still routes here after SIGTERM will be refused")
	}
	// The marker's path is checked (by creating it) before anything
	// listens: a bad LIVE_FILE ends the process with nothing served. Run
	// creates it anew; a failure before Run removes it.
	marker := &probe.Marker{Path: cfg.LiveFile}
	if err := marker.Create(); err != nil {
		return fmt.Errorf("%w: LIVE_FILE=%s: %v", probe.ErrUsage, cfg.LiveFile, err)
	}
	running := false
	defer func() {
		if !running {
			_ = marker.Remove() // the error that ends Serve is the one to report
		}
	}()
	svc := &service{log: log, counter: c, workDelay: cfg.WorkDelay, maxPending: cfg.MaxPending}
	mux := svc.routes()
	hcfg := cfg.Settings.Config()
	// SIGHUP drains too (the articles' preStop hooks send it), and
	// SIGQUIT (nginx's graceful stop, a stopSignal some images set): Go's
	// default for it, a goroutine dump and exit 2, would drop every
	// answered increment and say "bad configuration".
	hcfg.Signals = []os.Signal{syscall.SIGTERM, os.Interrupt, syscall.SIGHUP, syscall.SIGQUIT}
	hcfg.Logger = log
	srv := health.New(hcfg, mux)
	svc.run = srv.TryGo
	svc.longLived = srv.LongLived
	// Metrics: on the admin listener, which answers to the end of the
	// drain; without one, on the main listener (until it closes).
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := metrics.Register(reg, srv); err != nil {
		return err
	}
	metricsHandler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	if cfg.AdminAddr != "" {
		ln, err := net.Listen("tcp", cfg.AdminAddr)
		if err != nil {
			return fmt.Errorf("ADMIN_ADDR=%s: %w", cfg.AdminAddr, err)
		}
		admin := http.NewServeMux()
		admin.Handle("/metrics", metricsHandler)
		srv.AddAdmin(&http.Server{Handler: admin, ReadHeaderTimeout: 10 * time.Second}, ln)
	} else {
		mux.Handle("/metrics", metricsHandler)
	}
	if cfg.GRPCAddr != "" {
		ln, err := net.Listen("tcp", cfg.GRPCAddr)
		if err != nil {
			return fmt.Errorf("GRPC_ADDR=%s: %w", cfg.GRPCAddr, err)
		}
		defer ln.Close() // closed by the drain; this is for a Run that fails before serving
		gs := grpcdrain.New(srv, ln,
			// grpc-go's keepalive enforcement, spelled out: a client
			// that pings more often than every MinTime (or at all
			// without an RPC) gets GOAWAY too_many_pings and is
			// closed; this bounds a PING flood as MaxConcurrentStreams
			// (grpcdrain's default, 250) bounds a rapid reset.
			grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Minute}))
		svc.registerGRPC(gs)
		gs.SetServingStatus(GRPCService, healthpb.HealthCheckResponse_SERVING)
	}
	if cfg.RedisAddr != "" {
		srv.AddCheck("redis", c.Ping)
	}
	srv.OnStop(func(context.Context) error { return c.Close() })
	running = true // Run removes the marker on every path
	err = srv.Run(ctx)
	if aerr := svc.abandonedErr(); aerr != nil && err == nil {
		err = aerr
	}
	return err
}
