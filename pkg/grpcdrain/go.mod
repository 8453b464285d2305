module github.com/drainwell/drainwell/pkg/grpcdrain

go 1.26.0

replace github.com/drainwell/drainwell => ../..

// The oldest versions it works with (make toolchains tests it at these):
// grpc v1.63.0 is the first with grpc.NewClient, which its tests and docs
// use; importing it moves no service at or above them.
require (
	github.com/drainwell/drainwell v0.0.0-00010101000000-000000000000
	golang.org/x/net v0.21.0
	golang.org/x/sys v0.17.0
	google.golang.org/grpc v1.63.0
)

require (
	golang.org/x/text v0.14.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20240227224415-6ceb2ff114de // indirect
	google.golang.org/protobuf v1.33.0 // indirect
)
