// Command probe is a small static probe helper for images whose own binary
// cannot check its liveness: probe live, http, tcp, sleep and run.
package main

import (
	"context"
	"os"

	"github.com/drainwell/drainwell/internal/probecli"
)

func main() {
	os.Exit(probecli.Main(context.Background(), os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}
