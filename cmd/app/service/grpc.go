package service

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/drainwell/drainwell/cmd/app/counter"
)

// The counter's gRPC API, written by hand on protobuf's well-known types
// (no generated code to keep): the same operations as the HTTP API.
//
//	service drainwell.example.v1.Counter {
//	  rpc Incr(google.protobuf.Empty) returns (google.protobuf.Empty);  // as POST /incr
//	  rpc Get(google.protobuf.Empty) returns (google.protobuf.Int64Value); // as GET /count
//	  // The count every 100 ms, n times (n = 0: until the client cancels).
//	  rpc Follow(google.protobuf.Int64Value) returns (stream google.protobuf.Int64Value);
//	  // The events after `after` (0: from the first), in order, until the stream's context ends:
//	  // each the count an increment produced, as GET /watch?after= (watch.go).
//	  rpc Watch(google.protobuf.Int64Value after) returns (stream google.protobuf.Int64Value);
//	}
const (
	GRPCService = "drainwell.example.v1.Counter"
	GRPCIncr    = "/" + GRPCService + "/Incr"
	GRPCGet     = "/" + GRPCService + "/Get"
	GRPCFollow  = "/" + GRPCService + "/Follow"
	GRPCWatch   = "/" + GRPCService + "/Watch"
)

// FollowInterval is how often Follow sends the count.
const FollowInterval = 100 * time.Millisecond

// RegisterGRPC registers the counter's gRPC API on r: increments are
// tracked with run (health.Server.TryGo) and land workDelay later. The app
// calls it with its own counter; the rollout harness's control servers do
// too, so that only their drain differs.
func RegisterGRPC(r grpc.ServiceRegistrar, c counter.Counter, workDelay time.Duration, run func(func(context.Context)) error, log *slog.Logger) {
	(&service{log: log, counter: c, workDelay: workDelay, run: run}).registerGRPC(r)
}

func (s *service) registerGRPC(r grpc.ServiceRegistrar) {
	r.RegisterService(&grpc.ServiceDesc{
		ServiceName: GRPCService,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{
			{MethodName: "Incr", Handler: unary(GRPCIncr, s.grpcIncr)},
			{MethodName: "Get", Handler: unary(GRPCGet, s.grpcGet)},
		},
		Streams: []grpc.StreamDesc{
			{StreamName: "Follow", Handler: s.grpcFollow, ServerStreams: true},
			{StreamName: "Watch", Handler: s.grpcWatch, ServerStreams: true},
		},
	}, s)
}

// unary adapts f to grpc's method handler, with the server's interceptor.
func unary[Resp any](method string, f func(context.Context, *emptypb.Empty) (Resp, error)) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	return func(_ any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
		in := new(emptypb.Empty)
		if err := dec(in); err != nil {
			return nil, err
		}
		if icpt == nil {
			return f(ctx, in)
		}
		info := &grpc.UnaryServerInfo{FullMethod: method}
		return icpt(ctx, in, info, func(ctx context.Context, req any) (any, error) { return f(ctx, req.(*emptypb.Empty)) })
	}
}

// grpcIncr is POST /incr over gRPC: the increment is tracked background
// work, counted once for this RPC.
// Beyond MaxPending it answers Unavailable with gRPC's retry pushback
// (grpc-retry-pushback-ms), HTTP's Retry-After.
func (s *service) grpcIncr(ctx context.Context, _ *emptypb.Empty) (*emptypb.Empty, error) {
	err := s.startIncr(rand.Text(), time.Now())
	if errors.Is(err, errTooMuchWork) {
		_ = grpc.SetTrailer(ctx, metadata.Pairs("grpc-retry-pushback-ms", "1000")) // only fails outside a handler
	}
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &emptypb.Empty{}, nil
}

func (s *service) grpcGet(ctx context.Context, _ *emptypb.Empty) (*wrapperspb.Int64Value, error) {
	n, err := s.counter.Get(ctx)
	if err != nil {
		s.throttled.log(s.log, slog.LevelError, "count unavailable", "error", err)
		return nil, status.Error(codes.Unavailable, "count unavailable")
	}
	return wrapperspb.Int64(n), nil
}

func (s *service) grpcFollow(_ any, stream grpc.ServerStream) error {
	in := new(wrapperspb.Int64Value)
	if err := stream.RecvMsg(in); err != nil {
		return err
	}
	ctx := stream.Context()
	for i := int64(0); in.GetValue() == 0 || i < in.GetValue(); i++ {
		n, err := s.counter.Get(ctx)
		if err != nil {
			return status.Error(codes.Unavailable, "count unavailable")
		}
		if err := stream.SendMsg(wrapperspb.Int64(n)); err != nil {
			return err
		}
		if !sleep(ctx, FollowInterval) {
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	return nil
}
