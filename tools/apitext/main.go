// Command apitext prints the exported API of the Go package in a folder as
// text: every exported constant, variable, function, type (with its
// exported fields and methods), one declaration after another, without
// comments or bodies. api/*.txt are its output, so that a change to the API
// reads in a diff (api/*.api, apidiff's exports, are binary: they say
// whether a change is compatible).
//
//	go run ./tools/apitext DIR IMPORTPATH
package main

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/build"
	"go/doc"
	"go/format"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "apitext:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: apitext DIR IMPORTPATH")
	}
	text, err := API(args[0], args[1])
	if err != nil {
		return err
	}
	_, err = io.WriteString(out, text)
	return err
}

// API returns the exported API of the package in dir as text.
func API(dir, importPath string) (string, error) {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var files []*ast.File
	for _, e := range entries {
		name := e.Name()
		// The files of this platform's build, as the go command picks them.
		if ok, err := build.Default.MatchFile(dir, name); err != nil || !ok || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ParseComments)
		if err != nil {
			return "", err
		}
		files = append(files, f)
	}
	d, err := doc.NewFromFiles(fset, files, importPath, doc.PreserveAST)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "package %s // import %q\n", d.Name, importPath)
	decl := func(n ast.Node) {
		strip(n)
		var one bytes.Buffer
		if err := format.Node(&one, fset, n); err != nil {
			panic(err) // a node parsed from source prints
		}
		// Drop the blank lines where comments were, then align
		// again.
		var lines []string
		for _, line := range strings.Split(one.String(), "\n") {
			if strings.TrimSpace(line) != "" {
				lines = append(lines, line)
			}
		}
		src, err := format.Source([]byte("package p\n\n" + strings.Join(lines, "\n") + "\n"))
		if err != nil {
			panic(err)
		}
		b.WriteString("\n")
		b.WriteString(strings.TrimPrefix(string(src), "package p\n\n"))
	}
	// Constants, variables and functions, then each type followed by its
	// own, as go doc lists them.
	group := func(values [][]*doc.Value, funcs [][]*doc.Func) {
		for _, vs := range values {
			for _, v := range vs {
				decl(v.Decl)
			}
		}
		for _, fs := range funcs {
			for _, f := range fs {
				decl(f.Decl)
			}
		}
	}
	group([][]*doc.Value{d.Consts, d.Vars}, [][]*doc.Func{d.Funcs})
	for _, t := range d.Types {
		decl(t.Decl)
		group([][]*doc.Value{t.Consts, t.Vars}, [][]*doc.Func{t.Funcs, t.Methods})
	}
	return b.String(), nil
}

// strip removes comments and bodies from a declaration.
func strip(n ast.Node) {
	ast.Inspect(n, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncDecl:
			n.Doc, n.Body = nil, nil
		case *ast.GenDecl:
			n.Doc = nil
		case *ast.Field:
			n.Doc, n.Comment = nil, nil
		case *ast.ValueSpec:
			n.Doc, n.Comment = nil, nil
		case *ast.TypeSpec:
			n.Doc, n.Comment = nil, nil
		}
		return true
	})
}
