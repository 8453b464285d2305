// Command drainwell checks Kubernetes manifests for the timing relations
// that lose requests or restart pods when a service drains.
//
//	drainwell vet [--format text|json|sarif] [--kube-version 1.33] [FILE|DIR|-]...
//	drainwell vet --explain RULE
package main

import (
	"os"

	"github.com/drainwell/drainwell/cmd/drainwell/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
