package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/drainwell/drainwell/e2e/harness"
)

// readinessKinds measures what a readiness probe of each kind costs, per
// probe, run as the kubelet runs it (a new connection each time) against
// the app with its gRPC and admin listeners: httpGet /ready on the admin
// port, and the native grpc probe (grpc.health.v1 Check). It counts the
// app's CPU (from /proc) and the prober's (this process: the kubelet's
// share), alternating the kinds in blocks.
func readinessKinds(dir, app string) ([]row, error) {
	p, err := harness.Start(app, []string{"ADDR=127.0.0.1:0", "GRPC_ADDR=127.0.0.1:0", "ADMIN_ADDR=127.0.0.1:0",
		"LIVE_FILE=" + filepath.Join(dir, "kinds-live")})
	if err != nil {
		return nil, err
	}
	defer p.Kill()
	httpProbe := func() error {
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
		resp, err := c.Get("http://" + p.AdminAddr + "/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("/ready %d", resp.StatusCode)
		}
		return nil
	}
	grpcProbe := func() error {
		conn, err := grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			err = fmt.Errorf("status %v", resp.GetStatus())
		}
		return err
	}
	kinds := []struct {
		name  string
		probe func() error
		app   time.Duration
		self  time.Duration
		n     int
	}{{name: "httpGet /ready (admin port)", probe: httpProbe}, {name: "native grpc (health Check)", probe: grpcProbe}}
	pid := p.Cmd.Process.Pid
	const blocks, per = 20, 100
	for b := range blocks {
		for i := range kinds {
			k := &kinds[(i+b)%len(kinds)]
			a0, err := procCPU(pid)
			if err != nil {
				return nil, err
			}
			s0, _ := cpuTimes()
			for range per {
				if err := k.probe(); err != nil {
					return nil, fmt.Errorf("%s: %w", k.name, err)
				}
			}
			a1, _ := procCPU(pid)
			s1, _ := cpuTimes()
			k.app, k.self, k.n = k.app+a1-a0, k.self+s1-s0, k.n+per
		}
	}
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s: app %s + prober %s per probe",
			k.name, (k.app/time.Duration(k.n)).Round(time.Microsecond), (k.self/time.Duration(k.n)).Round(time.Microsecond)))
	}
	h, g := kinds[0], kinds[1]
	ratio := float64(g.app+g.self) / float64(h.app+h.self)
	return []row{{what: "readiness probe kinds for a gRPC service: CPU per probe, a new connection each (as the kubelet)",
		figure: strings.Join(parts, "; ") + fmt.Sprintf("; grpc / httpGet = %.1fx", ratio),
		target: "(choice: deploy/ probes httpGet on the admin port)"}}, nil
}

// procCPU is a process's user + system CPU so far, from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the command's closing parenthesis; utime and stime are
	// the 14th and 15th fields, in clock ticks (100 a second on Linux).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}
