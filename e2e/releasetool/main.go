package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "releasetool:", err)
		os.Exit(2)
	}
}

func run(args []string, stdout io.Writer) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: releasetool prepare VERSION | tags VERSION")
	}
	version := args[1]
	if err := CheckVersion(version); err != nil {
		return err
	}
	switch args[0] {
	case "prepare":
		return Prepare(".", version, time.Now().UTC())
	case "tags":
		tags := Tags(version)
		for _, tag := range tags {
			fmt.Fprintf(stdout, "git tag -a -m 'Release %s' %s\n", version, tag)
		}
		fmt.Fprintf(stdout, "git push --atomic origin %s\n", strings.Join(tags, " "))
		return nil
	}
	return fmt.Errorf("unknown command %q: want prepare or tags", args[0])
}
