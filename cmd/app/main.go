// Command app is the example service: a counter behind POST /incr that
// drains without losing a request. `app live` is its liveness probe.
package main

import (
	"context"
	"os"

	"kprobe/internal/app"
)

func main() {
	os.Exit(app.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
