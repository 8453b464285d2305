// Command app is the example service: a counter behind POST /incr that
// drains without losing a request. `app live` is its liveness probe.
package main

import (
	"context"
	"os"

	"github.com/drainwell/drainwell/cmd/app/service"
)

func main() {
	os.Exit(service.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
