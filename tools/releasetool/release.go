// Command releasetool cuts a release of the published modules and serves
// them as the module proxy would: Prepare edits a checkout as the release
// commit must be, Tags lists the tags to push, and Proxy writes a
// file-system GOPROXY from a checkout (the module zips golang.org/x/mod/zip
// makes, exactly what proxy.golang.org serves for a tag).
//
//	releasetool prepare VERSION   # in the repository: the release commit's edits
//	releasetool tags VERSION      # the tags to push, root first
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/zip"
)

// Root is the library's module path.
const Root = "github.com/drainwell/drainwell"

// Published are the published modules' folders, the root first: each is
// tagged FOLDER/vX.Y.Z ("." is tagged vX.Y.Z).
var Published = []string{".", "pkg/grpcdrain", "pkg/metrics", "pkg/ctrldrain", "cmd/drainwell"}

// ModulePath is the module path of a published folder.
func ModulePath(dir string) string {
	if dir == "." {
		return Root
	}
	return Root + "/" + dir
}

// Tag is the tag of a published folder at version.
func Tag(dir, version string) string {
	if dir == "." {
		return version
	}
	return dir + "/" + version
}

// Tags are the tags of a release, root first: pushed together
// (git push --atomic), a module never names a version of ours that is not
// there.
func Tags(version string) []string {
	var tags []string
	for _, d := range Published {
		tags = append(tags, Tag(d, version))
	}
	return tags
}

var versionRE = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+$`)

// CheckVersion accepts a release version: vMAJOR.MINOR.PATCH.
func CheckVersion(version string) error {
	if !versionRE.MatchString(version) || !semver.IsValid(version) {
		return fmt.Errorf("version %q: want vMAJOR.MINOR.PATCH", version)
	}
	return nil
}

// Prepare edits the checkout at root as the release commit of version must
// be: every go.mod of the repository that requires a module of ours
// requires it at version (a published go.mod that requires the root at a
// pseudo-version only its replace resolves cannot be fetched alone: Go
// ignores a dependency's replace), and CHANGELOG.md's Unreleased section
// becomes version's, under a new empty Unreleased.
func Prepare(root, version string, date time.Time) error {
	if err := CheckVersion(version); err != nil {
		return err
	}
	ours := map[string]bool{}
	for _, d := range Published {
		ours[ModulePath(d)] = true
	}
	work, err := os.ReadFile(filepath.Join(root, "go.work"))
	if err != nil {
		return err
	}
	wf, err := modfile.ParseWork("go.work", work, nil)
	if err != nil {
		return err
	}
	for _, u := range wf.Use {
		path := filepath.Join(root, u.Path, "go.mod")
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, err := modfile.Parse(path, data, nil)
		if err != nil {
			return err
		}
		for _, r := range f.Require {
			if ours[r.Mod.Path] && r.Mod.Version != version {
				if err := f.AddRequire(r.Mod.Path, version); err != nil {
					return err
				}
			}
		}
		out, err := f.Format()
		if err != nil {
			return err
		}
		if !bytes.Equal(out, data) {
			if err := os.WriteFile(path, out, 0o644); err != nil {
				return err
			}
		}
	}
	return releaseChangelog(filepath.Join(root, "CHANGELOG.md"), version, date)
}

// releaseChangelog moves the Unreleased section under version.
func releaseChangelog(path, version string, date time.Time) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(data)
	const unreleased = "## Unreleased\n"
	if strings.Contains(s, "\n## "+version+" ") {
		return fmt.Errorf("%s already has a %s section: a published version is never moved", path, version)
	}
	i := strings.Index(s, unreleased)
	if i < 0 {
		return fmt.Errorf("%s has no %q section", path, strings.TrimSpace(unreleased))
	}
	heading := fmt.Sprintf("## Unreleased\n\n## %s (%s)\n", version, date.Format(time.DateOnly))
	return os.WriteFile(path, []byte(s[:i]+heading+s[i+len(unreleased):]), 0o644)
}

// Proxy writes, under out, a file-system module proxy (GOPROXY=file://out)
// serving each published module of the checkout at root at version: its
// go.mod, its zip (made by golang.org/x/mod/zip from the module's folder,
// nested modules left out, as for a tag) and its info.
func Proxy(root, version, out string) error {
	for _, d := range Published {
		mv := module.Version{Path: ModulePath(d), Version: version}
		esc, err := module.EscapePath(mv.Path)
		if err != nil {
			return err
		}
		dir := filepath.Join(out, esc, "@v")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		src := filepath.Join(root, d)
		z, err := os.Create(filepath.Join(dir, version+".zip"))
		if err != nil {
			return err
		}
		err = zip.CreateFromDir(z, mv, src)
		if cerr := z.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("zip %s: %w", mv, err)
		}
		goMod, err := os.ReadFile(filepath.Join(src, "go.mod"))
		if err != nil {
			return err
		}
		info, _ := json.Marshal(struct {
			Version string
			Time    time.Time
		}{version, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)})
		files := map[string][]byte{version + ".mod": goMod, version + ".info": info, "list": []byte(version + "\n")}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}
