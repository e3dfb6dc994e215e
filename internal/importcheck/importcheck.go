package importcheck

import (
	"bufio"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Module is a Go module on disk.
type Module struct {
	Path string // module path, from go.mod
	Dir  string // directory holding go.mod
}

// FindModule returns the module that contains dir: the nearest directory at or above
// it with a go.mod.
func FindModule(dir string) (Module, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Module{}, fmt.Errorf("importcheck: %w", err)
	}
	for d := abs; ; d = filepath.Dir(d) {
		path, err := modulePath(filepath.Join(d, "go.mod"))
		if err == nil {
			return Module{Path: path, Dir: d}, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return Module{}, err
		}
		if filepath.Dir(d) == d {
			return Module{}, fmt.Errorf("importcheck: no go.mod at or above %s", abs)
		}
	}
}

// modulePath reads the module directive of a go.mod file.
func modulePath(gomod string) (string, error) {
	f, err := os.Open(gomod)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module"); ok {
			path := strings.TrimSpace(rest)
			if p, err := strconv.Unquote(path); err == nil {
				path = p
			}
			if path != "" {
				return path, nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("importcheck: read %s: %w", gomod, err)
	}
	return "", fmt.Errorf("importcheck: %s has no module directive", gomod)
}

// Chains returns, for every module package that pkg reaches through its non-test
// imports and that allowed refuses, the shortest import chain from pkg to it:
// [pkg, ..., refused]. It follows the imports of allowed packages only, so each chain
// ends at the first refused package on its way. Chains are sorted by their last
// element; none means pkg keeps to the rule. allowed is asked about module packages
// only, never about pkg itself.
func (m Module) Chains(pkg string, allowed func(importPath string) bool) ([][]string, error) {
	parent := map[string]string{pkg: ""}
	var refused []string
	queue := []string{pkg}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		imports, err := m.imports(p)
		if err != nil {
			return nil, err
		}
		for _, imp := range imports {
			if _, seen := parent[imp]; seen || !m.contains(imp) {
				continue
			}
			parent[imp] = p
			if allowed(imp) {
				queue = append(queue, imp)
			} else {
				refused = append(refused, imp)
			}
		}
	}
	slices.Sort(refused)
	chains := make([][]string, 0, len(refused))
	for _, r := range refused {
		var c []string
		for p := r; p != ""; p = parent[p] {
			c = append(c, p)
		}
		slices.Reverse(c)
		chains = append(chains, c)
	}
	return chains, nil
}

// Chain writes an import chain with the module path left out of each element:
// "coordinator -> jobspec -> trainer".
func (m Module) Chain(c []string) string {
	short := make([]string, len(c))
	for i, p := range c {
		short[i] = m.Rel(p)
	}
	return strings.Join(short, " -> ")
}

// Rel returns an import path of the module relative to the module path ("." for the
// module's root package); other paths are returned whole.
func (m Module) Rel(importPath string) string {
	if importPath == m.Path {
		return "."
	}
	if rest, ok := strings.CutPrefix(importPath, m.Path+"/"); ok {
		return rest
	}
	return importPath
}

func (m Module) contains(importPath string) bool {
	return importPath == m.Path || strings.HasPrefix(importPath, m.Path+"/")
}

// imports returns the sorted, distinct import paths of the non-test Go files of a
// module package, whatever their build constraints.
func (m Module) imports(pkg string) ([]string, error) {
	if !m.contains(pkg) {
		return nil, fmt.Errorf("importcheck: %s is not in module %s", pkg, m.Path)
	}
	dir := filepath.Join(m.Dir, filepath.FromSlash(m.Rel(pkg)))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("importcheck: package %s: %w", pkg, err)
	}
	fset := token.NewFileSet()
	var out []string
	files := 0
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") ||
			strings.HasPrefix(name, "_") || strings.HasPrefix(name, ".") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ImportsOnly)
		if err != nil {
			return nil, fmt.Errorf("importcheck: package %s: %w", pkg, err)
		}
		files++
		for _, s := range f.Imports {
			p, err := strconv.Unquote(s.Path.Value)
			if err != nil {
				return nil, fmt.Errorf("importcheck: package %s: import %s: %w", pkg, s.Path.Value, err)
			}
			out = append(out, p)
		}
	}
	if files == 0 {
		return nil, fmt.Errorf("importcheck: package %s: no Go files in %s", pkg, dir)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
