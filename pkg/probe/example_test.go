package probe_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/drainwell/drainwell/pkg/probe"
)

// A service adds the live command to its root in one line; its liveness
// probe is then exec ["/app", "live"].
func ExampleCommand() {
	root := &cobra.Command{Use: "app"}
	root.AddCommand(probe.Command())

	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	m := &probe.Marker{Path: filepath.Join(dir, "live")}
	m.Create() // pkg/health does this, the heartbeat and the removal for you

	root.SetArgs([]string{"live", "--file", m.Path})
	fmt.Println("live:", root.Execute() == nil)

	m.Remove()
	root.SetArgs([]string{"live", "--file", m.Path})
	fmt.Println("after drain:", root.Execute() == nil)
	// Output:
	// live: true
	// after drain: false
}

func ExampleCheck() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	m := &probe.Marker{Path: filepath.Join(dir, "live")}
	m.Create()
	fmt.Println(probe.Check(m.Path, 30*time.Second, time.Now()))
	err := probe.Check(m.Path, 30*time.Second, time.Now().Add(time.Minute))
	fmt.Println(err != nil, errors.Is(err, probe.ErrStale))
	// Output:
	// <nil>
	// true true
}
