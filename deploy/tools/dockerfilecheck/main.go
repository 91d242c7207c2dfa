// dockerfilecheck parses a Dockerfile with BuildKit's own frontend (the parser and
// instruction checks of `docker build`, with the lint rules of `docker build --check`) and
// prints its stages. It needs no Docker engine. Used by tests/deploy_manifests.rs when Go
// is installed.
//
//	go run ./dockerfilecheck Dockerfile   (exits 1 on a parse error or a lint warning)
package main

import (
	"fmt"
	"os"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: dockerfilecheck DOCKERFILE")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer f.Close()
	result, err := parser.Parse(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "parse:", err)
		os.Exit(1)
	}
	warnings := 0
	for _, w := range result.Warnings {
		fmt.Fprintln(os.Stderr, "parser warning:", w.Short)
		warnings++
	}
	lint := linter.New(&linter.Config{
		Warn: func(rule, description, url, fmtmsg string, _ []parser.Range) {
			fmt.Fprintf(os.Stderr, "lint %s: %s\n", rule, fmtmsg)
			warnings++
		},
	})
	stages, _, err := instructions.Parse(result.AST, lint)
	if err != nil {
		fmt.Fprintln(os.Stderr, "instructions:", err)
		os.Exit(1)
	}
	for _, s := range stages {
		fmt.Printf("stage\t%s\t%s\t%d\n", s.Name, s.BaseName, len(s.Commands))
	}
	if warnings > 0 {
		os.Exit(1)
	}
}
