package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	if len(args) == 2 && args[0] == "images" {
		return images(args[1], stdout)
	}
	if len(args) != 2 {
		return fmt.Errorf("usage: releasetool prepare VERSION | tags VERSION | images DIST")
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

// images writes the OCI images of probe and probe-tls, from goreleaser's
// binaries in dist (dist/ID_linux_ARCH*/ID), to dist/images/ID, dated by
// the commit, and prints their digests.
func images(dist string, stdout io.Writer) error {
	out, err := exec.Command("git", "log", "-1", "--format=%ct").Output()
	if err != nil {
		return fmt.Errorf("commit time: %w", err)
	}
	secs, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return err
	}
	created := time.Unix(secs, 0).UTC()
	for _, name := range []string{"probe", "probe-tls"} {
		binaries := map[string]string{}
		for _, arch := range []string{"amd64", "arm64"} {
			found, _ := filepath.Glob(filepath.Join(dist, name+"_linux_"+arch+"*", name))
			if len(found) != 1 {
				return fmt.Errorf("want one %s binary for %s in %s, found %v", name, arch, dist, found)
			}
			binaries[arch] = found[0]
		}
		idx, err := Image(name, binaries, created)
		if err != nil {
			return err
		}
		dir := filepath.Join(dist, "images", name)
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		if err := WriteLayout(dir, name, idx); err != nil {
			return err
		}
		d, err := idx.Digest()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s %s (OCI layout %s)\n", name, d, dir)
	}
	return nil
}
