// Command probe-tls is the standalone probe with TLS: probe's commands and
// flags, and --tls... for grpc and https:// for http (mTLS included). It
// links crypto/tls, which makes it twice probe's size and each exec about
// 15% dearer: take probe unless a check needs TLS.
package main

import (
	"context"
	"os"

	"github.com/drainwell/drainwell/internal/probecli"
	"github.com/drainwell/drainwell/internal/probecli/probetls"
)

func main() {
	os.Exit(probecli.Main(context.Background(), probetls.Client, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}
