package rollout

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/health" // client-side health checking, when a profile asks for it
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// grpcIncr is the app's Incr RPC, by its name on the wire (the API that
// cmd/app/service registers; the load speaks it as any client would).
const grpcIncr = "/drainwell.example.v1.Counter/Incr"

// result is one request's outcome, over HTTP or gRPC.
type result struct {
	At      time.Time
	Latency time.Duration
	OK      bool
	Kind    string // why it failed
}

// grpcAttack sends the profile's rate of Incr RPCs through the Service's
// grpc port from p.Clients independent clients: each its own ClientConn
// (its own HTTP/2 connection, as separate calling pods have), grpc-go's
// defaults (pick_first, no retry policy, not wait-for-ready), each RPC
// started on schedule whatever the others do (an open loop, as vegeta's).
// With p.DialPerRequest each RPC opens a connection of its own instead.
// With p.HealthCheck the clients also watch the health service: grpc-go's
// client-side health checking on each connection (which ends its own Watch
// when the connection gets GOAWAY), and a Watch stream each client opens
// itself and keeps (a dashboard, a sidecar, a client of another stack),
// reopened whenever it ends, on a connection of its own; those streams are
// not counted as load.
//
// The load's channel closes when the load is done; the watchers go on
// until stopWatching is called (after the cluster's pods have exited, so
// that they are open through every drain).
func grpcAttack(ctx context.Context, addr string, p Profile) (_ <-chan result, stopWatching func(), _ error) {
	n := min(clients(p), p.Rate)
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if p.HealthCheck {
		opts = append(opts, grpc.WithDefaultServiceConfig(`{"healthCheckConfig": {"serviceName": ""}}`))
	}
	conns := make([]*grpc.ClientConn, n)
	for i := range conns {
		cc, err := grpc.NewClient(addr, opts...)
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			return nil, nil, err
		}
		conns[i] = cc
	}
	out := make(chan result, 1024)
	var watchers sync.WaitGroup
	watchCtx, cancelWatch := context.WithCancel(ctx)
	stopWatching = func() { cancelWatch(); watchers.Wait() }
	if p.HealthCheck {
		for range n {
			// A connection of its own, without health checking: a
			// dashboard's or a sidecar's.
			wc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				stopWatching()
				return nil, nil, err
			}
			watchers.Go(func() {
				defer wc.Close()
				watchForever(watchCtx, wc)
			})
		}
	}
	var load sync.WaitGroup
	for i, cc := range conns {
		rate := p.Rate / n
		if i < p.Rate%n {
			rate++
		}
		load.Go(func() {
			var calls sync.WaitGroup
			defer calls.Wait()
			every := time.Second / time.Duration(rate)
			start := time.Now()
			for k := 0; ; k++ {
				at := start.Add(time.Duration(k) * every)
				if at.Sub(start) >= p.Duration {
					return
				}
				select {
				case <-time.After(time.Until(at)):
				case <-ctx.Done():
					return
				}
				calls.Go(func() {
					cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					defer cancel()
					t0 := time.Now()
					conn := cc
					if p.DialPerRequest {
						fresh, err := grpc.NewClient(addr, opts...)
						if err != nil {
							out <- result{At: t0, Kind: "dial: " + err.Error()}
							return
						}
						defer fresh.Close()
						conn = fresh
					}
					err := conn.Invoke(cctx, grpcIncr, &emptypb.Empty{}, &emptypb.Empty{})
					r := result{At: t0, Latency: time.Since(t0), OK: err == nil}
					if err != nil {
						r.Kind = grpcErrorKind(err)
					}
					out <- r
				})
			}
		})
	}
	go func() {
		load.Wait()
		for _, c := range conns {
			c.Close()
		}
		close(out)
	}()
	return out, stopWatching, nil
}

// grpcErrorKind is the status code, with a hint of the transport's error
// for Unavailable.
func grpcErrorKind(err error) string {
	st := status.Convert(err)
	if st.Code() != codes.Unavailable {
		return "grpc " + st.Code().String()
	}
	for _, k := range []string{"connection refused", "connection reset", "EOF", "closed", "GOAWAY", "error reading server preface"} {
		if containsFold(st.Message(), k) {
			return "grpc Unavailable: " + k
		}
	}
	return "grpc Unavailable"
}

// watchForever holds a health Watch stream on cc until ctx ends, opening a
// new one whenever the server ends it.
func watchForever(ctx context.Context, cc *grpc.ClientConn) {
	for ctx.Err() == nil {
		stream, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		if err == nil {
			for {
				if _, err := stream.Recv(); err != nil {
					break
				}
			}
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}
