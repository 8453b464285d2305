// Package cli is the drainwell command: flags, output and exit codes.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/drainwell/drainwell/cmd/drainwell/vet"
)

const usage = `usage: drainwell vet [flags] [FILE|DIR|-]...
       drainwell vet --explain RULE
       drainwell vet --rules

Checks Kubernetes manifests (multi-document YAML or JSON, as kubectl kustomize,
kustomize build or helm template print them; folders are read recursively; -
or no argument reads stdin) for the timing relations that lose requests or
restart pods when a service drains.

flags:
  --format text|json|sarif   output (default text)
  --kube-version 1.N         the oldest cluster the manifests target (default 1.33)
  --strict                   a document vet cannot read whole (an unknown field or
                             kind, bad YAML) is an error, exit 2; without it, a
                             warning on stderr, and the rest is checked
  --explain RULE             why RULE exists, and the Kubernetes behaviour behind it
  --rules                    list the rules

exit status: 0 no error (warnings allowed; empty input: nothing to check),
  1 an error-level finding, 2 bad usage or nothing readable in the input
  (one line: file, line, what is wrong)
`

// Main runs the command with args and returns its exit status.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] != "vet" {
		fmt.Fprintf(stderr, "drainwell: unknown command %q (try: drainwell vet)\n", args[0])
		return 2
	}
	code, err := runVet(args[1:], stdin, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "drainwell vet: %v\n", err)
	}
	return code
}

var errUsage = errors.New("usage")

func runVet(args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("vet", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	format := fs.String("format", "text", "")
	kube := fs.String("kube-version", "1.33", "")
	explain := fs.String("explain", "", "")
	list := fs.Bool("rules", false, "")
	strict := fs.Bool("strict", false, "")
	files, err := parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stderr, usage)
		return 0, nil
	}
	if err != nil {
		return 2, err
	}
	switch {
	case *explain != "":
		r, ok := vet.Lookup(*explain)
		if !ok {
			return 2, fmt.Errorf("no rule %q (drainwell vet --rules lists them)", *explain)
		}
		fmt.Fprintf(stdout, "%s (%s): %s\n\n%s\n", r.Name, r.Severity, r.Summary, r.Explain)
		return 0, nil
	case *list:
		for _, r := range vet.Rules() {
			fmt.Fprintf(stdout, "%-26s %-7s %s\n", r.Name, r.Severity, r.Summary)
		}
		return 0, nil
	}
	write := map[string]func(io.Writer, []vet.Finding) error{"text": vet.WriteText, "json": vet.WriteJSON, "sarif": vet.WriteSARIF}[*format]
	if write == nil {
		return 2, fmt.Errorf("--format %q: want text, json or sarif", *format)
	}
	minor, err := kubeMinor(*kube)
	if err != nil {
		return 2, err
	}
	if len(files) == 0 {
		files = []string{"-"}
	}
	set, err := vet.Load(files, stdin, *strict)
	if err != nil {
		return 2, err
	}
	for _, p := range set.Problems {
		fmt.Fprintf(stderr, "drainwell vet: warning: %v\n", p)
	}
	if set.Empty() {
		fmt.Fprintln(stderr, "drainwell vet: nothing to check")
	}
	found := vet.Check(set, vet.Options{KubeVersion: minor})
	if err := write(stdout, found); err != nil {
		return 2, err
	}
	if vet.Failed(found) {
		return 1, nil
	}
	return 0, nil
}

// parse parses flags placed before or after the files.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var files []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return files, nil
		}
		if args[0] == "--" {
			return append(files, args[1:]...), nil
		}
		files = append(files, args[0])
		args = args[1:]
	}
}

func kubeMinor(v string) (int, error) {
	s := strings.TrimPrefix(v, "v")
	major, minor, ok := strings.Cut(s, ".")
	n, err := strconv.Atoi(minor)
	if !ok || major != "1" || err != nil || n < 0 || n > 99 {
		return 0, fmt.Errorf("--kube-version %q: want 1.N, such as 1.33", v)
	}
	return n, nil
}
