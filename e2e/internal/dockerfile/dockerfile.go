// Package dockerfile reads a Dockerfile with BuildKit's own parser into the
// facts the tests check: stages, their base images, users, entrypoints,
// health checks, RUN commands and COPY sources.
package dockerfile

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// Stage is one FROM ... [AS name] section.
type Stage struct {
	Name        string
	Base        string
	Platform    string   // FROM --platform=, unexpanded ("$BUILDPLATFORM")
	Args        []string // ARG names declared in the stage
	User        string
	Entrypoint  []string // exec form only; nil for the shell form
	Healthcheck []string // HEALTHCHECK CMD, exec form
	Runs        []string // RUN lines, flags included
	Copies      []string // COPY lines, flags included
	Envs        []string // ENV settings, KEY=VALUE
	Steps       []Step   // every instruction after FROM, in order
}

// Step is one instruction of a stage: WORKDIR, COPY, RUN, ENV...
type Step struct {
	Kind  string   // lower case: "run", "copy", "workdir"
	Flags []string // --mount=..., --from=...
	Words []string // its arguments; a shell-form RUN is one word
}

// File is a parsed Dockerfile.
type File struct {
	Args   map[string]string // ARG defaults before the first FROM
	Stages []*Stage
}

// Stage returns the stage called name, or nil.
func (f *File) Stage(name string) *Stage {
	for _, s := range f.Stages {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Final returns the last stage: what `docker build` builds by default.
func (f *File) Final() *Stage { return f.Stages[len(f.Stages)-1] }

// Parse reads the Dockerfile at path.
func Parse(path string) (*File, error) {
	b, err := os.ReadFile(path) // #nosec G304 -- reading the named Dockerfile is this function's purpose
	if err != nil {
		return nil, err
	}
	return ParseBytes(path, b)
}

// ParseBytes reads a Dockerfile's text; name is for errors.
func ParseBytes(path string, b []byte) (*File, error) {
	res, err := parser.Parse(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f := &File{Args: map[string]string{}}
	var cur *Stage
	for _, n := range res.AST.Children {
		words := values(n)
		line := strings.Join(append(n.Flags, words...), " ")
		switch strings.ToLower(n.Value) {
		case "arg":
			for _, w := range words {
				k, v, _ := strings.Cut(w, "=")
				if cur == nil {
					f.Args[k] = v
				} else {
					cur.Args = append(cur.Args, k)
				}
			}
		case "from":
			cur = &Stage{Base: expand(words[0], f.Args)}
			for _, fl := range n.Flags {
				if v, ok := strings.CutPrefix(fl, "--platform="); ok {
					cur.Platform = v
				}
			}
			if len(words) == 3 && strings.EqualFold(words[1], "AS") {
				cur.Name = words[2]
			}
			f.Stages = append(f.Stages, cur)
		default:
			if cur == nil {
				return nil, fmt.Errorf("%s: %s before FROM", path, n.Value)
			}
			cur.Steps = append(cur.Steps, Step{Kind: strings.ToLower(n.Value), Flags: n.Flags, Words: words})
			switch strings.ToLower(n.Value) {
			case "user":
				cur.User = words[0]
			case "entrypoint":
				if n.Attributes["json"] {
					cur.Entrypoint = words
				}
			case "healthcheck":
				if len(words) > 0 && strings.EqualFold(words[0], "CMD") && n.Attributes["json"] {
					cur.Healthcheck = words[1:]
				}
			case "run":
				cur.Runs = append(cur.Runs, line)
			case "copy":
				cur.Copies = append(cur.Copies, line)
			case "env":
				for i := 0; i+1 < len(words); i += 3 { // key, value, "="
					cur.Envs = append(cur.Envs, words[i]+"="+words[i+1])
				}
			}
		}
	}
	if len(f.Stages) == 0 {
		return nil, fmt.Errorf("%s: no FROM", path)
	}
	return f, nil
}

func values(n *parser.Node) []string {
	var out []string
	for c := n.Next; c != nil; c = c.Next {
		out = append(out, c.Value)
	}
	return out
}

func expand(s string, args map[string]string) string {
	return os.Expand(s, func(k string) string { return args[k] })
}
