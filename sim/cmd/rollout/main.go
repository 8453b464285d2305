// Command rollout sends load through rolling updates of the app on a
// simulated cluster (real processes on loopback addresses, a kubelet, a
// lagging Service proxy, a real Redis) and prints what was lost, for each
// profile and negative control. It exits 1 if a profile lost anything or a
// control lost nothing.
//
//	go run ./sim/cmd/rollout                      # every profile and control
//	go run ./sim/cmd/rollout -short               # the CI version
//	go run ./sim/cmd/rollout -profiles heavy -runs 5 -report rollout.html
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/drainwell/drainwell/sim/rollout"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "rollout:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rollout", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		names  = fs.String("profiles", "all", "comma-separated profile names (or prefixes), or all")
		short  = fs.Bool("short", false, "the CI version: same shapes, shorter")
		runs   = fs.Int("runs", 1, "runs of each profile")
		rate   = fs.Int("rate", 0, "override every profile's rate")
		report = fs.String("report", "", "write an HTML timeline to this file")
		deploy = fs.String("deploy", "deploy", "the kustomization folder")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *runs < 1 {
		return errors.New("-runs must be at least 1")
	}
	dir, err := os.MkdirTemp("", "rollout")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	env, err := rollout.Setup(dir, *deploy)
	if err != nil {
		return err
	}
	profiles, err := pick(rollout.Profiles(*short), *names)
	if err != nil {
		return err
	}
	var rows []rollout.Row
	var results []*rollout.Result
	for _, p := range profiles {
		if *rate > 0 {
			p.Rate = *rate
		}
		for i := range *runs {
			t0 := time.Now()
			res, err := rollout.Run(ctx, env, p)
			if err != nil {
				return err
			}
			fmt.Fprintf(stderr, "%s (run %d): %d sent, %d 2xx, %d errors, lost %d, %s [%s]\n",
				p.Name, i+1, res.Row.Sent, res.Row.OK, res.Row.Errors, res.Row.Lost, res.Row.Verdict(), time.Since(t0).Round(time.Second))
			rows = append(rows, res.Row)
			results = append(results, res)
		}
	}
	rollout.Table(stdout, rows)
	if *report != "" {
		f, err := os.Create(*report)
		if err != nil {
			return err
		}
		rollout.Report(f, results)
		if err := f.Close(); err != nil {
			return err
		}
	}
	if failed := rollout.Judge(rows); len(failed) > 0 {
		return fmt.Errorf("failed their verdict: %s", strings.Join(failed, ", "))
	}
	return nil
}

func pick(all []rollout.Profile, names string) ([]rollout.Profile, error) {
	if names == "all" {
		return all, nil
	}
	var out []rollout.Profile
	for _, n := range strings.Split(names, ",") {
		found := false
		for _, p := range all {
			if strings.HasPrefix(p.Name, strings.TrimSpace(n)) {
				out = append(out, p)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("no profile %q", n)
		}
	}
	return out, nil
}
