// Command probe is a small static probe helper for images whose own binary
// cannot check its liveness: probe live, http, grpc, tcp, sleep and run.
// It links no TLS (its start-up is every exec probe's cost): probe-tls is
// the same with TLS.
package main

import (
	"context"
	"os"

	"github.com/drainwell/drainwell/internal/probecli"
)

func main() {
	os.Exit(probecli.Main(context.Background(), nil, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}
