module github.com/drainwell/drainwell/pkg/grpcdrain

go 1.26.0

replace github.com/drainwell/drainwell => ../..

require (
	github.com/drainwell/drainwell v0.0.0-00010101000000-000000000000
	golang.org/x/net v0.60.0
	golang.org/x/sys v0.48.0
	google.golang.org/grpc v1.85.0
)

require (
	golang.org/x/text v0.42.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260817212433-ac3dfec99bb1 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
