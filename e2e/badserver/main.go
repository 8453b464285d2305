// Command badserver is the negative control of the process tests and the
// rollout harness: the naive servers of the articles, each with one known
// flaw, behind the app's interface (ADDR, REDIS_ADDR, LIVE_FILE,
// DRAIN_DELAY, WORK_DELAY; POST /incr, GET /count, /ready, /live). MODE picks
// the flaw:
//
//   - hard: exits on SIGTERM; its background increments are not tracked.
//   - bodyfirst: drains well, but /ready writes its body before the 503
//     status, so it answers 200 (the articles' own readiness handler).
//   - nowait: drains requests but exits without waiting for the background
//     work they started.
//   - plainshutdown: readiness, drain delay with Connection: close, then
//     http.Server.Shutdown, which closes idle keep-alive connections at once.
//   - incrretry: drains well, and retries a plain Redis INCR until it gets
//     a reply: an INCR whose reply was lost is counted twice.
//
// In every mode, GET /watch streams the count as server-sent events the
// naive way: from the newest value, whatever the client saw (it ignores
// Last-Event-ID), and with no end of its own, so http.Server.Shutdown
// waits for it until SIGKILL.
//
// With GRPC_ADDR set it serves the app's gRPC API too, with grpc-go's own
// health service, and drains HTTP as above; ADMIN_ADDR serves /ready and
// /live (not drained). The gRPC flaws:
//
//   - grpcstop: Stop at SIGTERM (RPCs in flight cut, no drain delay).
//   - grpcnodelay: GracefulStop at SIGTERM, without the drain delay: the
//     connections that stale endpoints still route to it are refused.
//   - grpcwatch: NOT_SERVING at SIGTERM, GracefulStop after the delay, but
//     with the health service's Watch streams open and no deadline: it
//     hangs until SIGKILL.
//
// Other modes stop gRPC with GracefulStop after the delay.
//
// If a test that passes on the app also passes on one of these, the test is
// broken.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/drainwell/drainwell/cmd/app/counter"
	"github.com/drainwell/drainwell/cmd/app/service"
	"github.com/drainwell/drainwell/pkg/health"
	"github.com/drainwell/drainwell/pkg/probe"
)

func main() {
	// The kubelet's exec liveness probe: `badserver live`, as `app live`.
	if len(os.Args) > 1 && os.Args[1] == "live" {
		err := probe.Check(os.Getenv("LIVE_FILE"), duration("LIVE_MAX_AGE", probe.DefaultMaxAge), time.Now())
		if err != nil {
			fmt.Fprintln(os.Stderr, "badserver live:", err)
		}
		os.Exit(health.ExitCode(err))
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "badserver:", err)
		os.Exit(1)
	}
}

func duration(key string, def time.Duration) time.Duration {
	if v := os.Getenv(key); v == "none" { // as healthenv reads DRAIN_DELAY
		return 0
	} else if v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

func run() error {
	mode := os.Getenv("MODE")
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = ":8080"
	}
	workDelay := duration("WORK_DELAY", 5*time.Second)
	drainDelay := duration("DRAIN_DELAY", 5*time.Second)
	var c counter.Counter = &counter.Memory{}
	var rc *redis.Client
	if a := os.Getenv("REDIS_ADDR"); a != "" {
		c = counter.NewRedis(a, "")
		// The same client settings as the app's counter.
		rc = redis.NewClient(&redis.Options{Addr: a, MaxRetries: -1,
			DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	}
	var seq atomic.Int64
	m := &probe.Marker{Path: os.Getenv("LIVE_FILE")}
	if m.Path != "" {
		if err := m.Create(); err != nil {
			return err
		}
		// Kept fresh as the app keeps it: a stale marker is not the flaw
		// any mode shows, and liveness restarts would blur each control.
		if every := probe.HeartbeatInterval(duration("LIVE_MAX_AGE", probe.DefaultMaxAge)); every > 0 {
			go m.Heartbeat(context.Background(), every, nil, func(error) {})
		}
	}

	var ready, draining atomic.Bool
	var work sync.WaitGroup
	mux := http.NewServeMux()
	mux.HandleFunc("/incr", func(w http.ResponseWriter, r *http.Request) {
		work.Add(1)
		go func() {
			defer work.Done()
			time.Sleep(workDelay)
			if mode == "incrretry" && rc != nil {
				for rc.Incr(context.Background(), counter.Key).Err() != nil {
					time.Sleep(50 * time.Millisecond)
				}
				return
			}
			id := strconv.FormatInt(seq.Add(1), 10) + "-" + strconv.Itoa(os.Getpid())
			if err := c.Incr(context.Background(), id); err != nil {
				log.Error("incr", "error", err)
			}
		}()
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/count", func(w http.ResponseWriter, r *http.Request) {
		n, _ := c.Get(r.Context())
		fmt.Fprintln(w, strconv.FormatInt(n, 10))
	})
	mux.HandleFunc("/watch", func(w http.ResponseWriter, r *http.Request) {
		events, ok := c.(counter.Events)
		after, err := c.Get(r.Context())
		if !ok || err != nil {
			http.Error(w, "no events", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		flush := http.NewResponseController(w).Flush
		for {
			ids, err := events.After(r.Context(), after)
			var missed *counter.MissedError
			if errors.As(err, &missed) {
				after = missed.To
				continue
			}
			if err != nil {
				return
			}
			for _, id := range ids {
				fmt.Fprintf(w, "id: %d\ndata: %d\n\n", id, id)
			}
			if flush() != nil {
				return
			}
			after = ids[len(ids)-1]
		}
	})
	mux.HandleFunc("/live", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		if ready.Load() {
			fmt.Fprintln(w, "ok")
			return
		}
		if mode == "bodyfirst" {
			fmt.Fprintln(w, "not ready: draining") // sends 200 before the status below
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready: draining") // not ready at the signal, as pkg/health's NotReadyAtSignal
	})

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			w.Header().Set("Connection", "close")
		}
		mux.ServeHTTP(w, r)
	})}
	var gs *grpc.Server
	var hs *grpchealth.Server
	readyAttrs := []any{"addr", ln.Addr().String(), "mode", mode}
	if a := os.Getenv("GRPC_ADDR"); a != "" {
		gln, err := net.Listen("tcp", a)
		if err != nil {
			return err
		}
		gs, hs = grpc.NewServer(), grpchealth.NewServer()
		healthpb.RegisterHealthServer(gs, hs)
		service.RegisterGRPC(gs, c, workDelay, func(f func(context.Context)) error {
			work.Add(1)
			go func() { defer work.Done(); f(context.Background()) }()
			return nil
		}, log)
		go gs.Serve(gln)
		readyAttrs = append(readyAttrs, "grpc_addr", gln.Addr().String())
	}
	if a := os.Getenv("ADMIN_ADDR"); a != "" {
		aln, err := net.Listen("tcp", a)
		if err != nil {
			return err
		}
		go (&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}).Serve(aln)
	}
	ready.Store(true)
	log.Info("serving", readyAttrs...)
	if mode == "hard" {
		return srv.Serve(ln) // SIGTERM's default action ends the process
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go srv.Serve(ln)
	<-sigs
	ready.Store(false)
	draining.Store(true)
	if gs != nil {
		hs.Shutdown()
		switch mode {
		case "grpcstop":
			gs.Stop()
		case "grpcnodelay":
			gs.GracefulStop()
		}
	}
	time.Sleep(drainDelay)
	if gs != nil {
		gs.GracefulStop() // returns at once after Stop; grpcwatch hangs here
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		return err
	}
	if mode != "nowait" {
		work.Wait()
	}
	if m.Path != "" {
		m.Remove()
	}
	log.Info("exiting", "mode", mode)
	return nil
}
