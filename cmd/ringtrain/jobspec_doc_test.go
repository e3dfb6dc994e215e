package main

import (
	"encoding"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/ringtrain/ringtrain/trainer"
)

// specKeys returns the YAML keys of every leaf field of a spec type, dotted under
// the structs they are nested in (model.layers), in field order.
func specKeys(t reflect.Type, prefix string) []string {
	var keys []string
	text := reflect.TypeFor[encoding.TextMarshaler]()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		if f.Type.Kind() == reflect.Struct && !f.Type.Implements(text) {
			keys = append(keys, specKeys(f.Type, prefix+name+".")...)
			continue
		}
		if f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct {
			// An optional section (ppo): its keys, absent from a spec without it.
			keys = append(keys, specKeys(f.Type.Elem(), prefix+name+".")...)
			continue
		}
		keys = append(keys, prefix+name)
	}
	return keys
}

// yamlValues returns the spec's values by dotted key, each as the YAML scalar
// --print-config writes.
func yamlValues(t *testing.T, spec trainer.Spec) map[string]string {
	t.Helper()
	b, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind == yaml.MappingNode {
				walk(v, prefix+k.Value+".")
				continue
			}
			s, err := yaml.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			out[prefix+k.Value] = strings.TrimSpace(string(s))
		}
	}
	walk(doc.Content[0], "")
	return out
}

// docRow is one row of the key table of docs/job-spec.md.
type docRow struct{ key, flag, def string }

var docRowRE = regexp.MustCompile("^\\| `([a-z0-9_.]+)` \\| (—|`--[a-z0-9-]+`) \\| `([^`]*)` \\| .+ \\|$")

// readDocRows returns the rows of the key table of docs/job-spec.md by key.
func readDocRows(t *testing.T) map[string]docRow {
	t.Helper()
	b, err := os.ReadFile("../../docs/job-spec.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]docRow{}
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		m := docRowRE.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("docs/job-spec.md: malformed row %q", line)
			continue
		}
		if _, dup := rows[m[1]]; dup {
			t.Errorf("docs/job-spec.md: key %s has two rows", m[1])
		}
		rows[m[1]] = docRow{key: m[1], flag: strings.Trim(m[2], "`"), def: m[3]}
	}
	return rows
}

// flagValue is a value for a flag of the given type that differs from its default
// (3 divides the default global batch, so --streams 3 resolves).
func flagValue(typ, def string) string {
	switch typ {
	case "int", "int64", "uint64":
		return "3"
	case "float64":
		return "0.25"
	case "duration":
		return "7m"
	case "bool":
		if def == "true" {
			return "false"
		}
		return "true"
	default:
		return def + "x"
	}
}

// TestJobSpecDoc checks docs/job-spec.md against the code: every field of
// trainer.Spec has a row and every row a field; each row's default is the YAML value
// of trainer.DefaultSpec (and of `train --print-config` with no flags); each flag
// named exists on `train` and sets that key; and every flag of the spec is named.
func TestJobSpecDoc(t *testing.T) {
	rows := readDocRows(t)
	keys := specKeys(reflect.TypeFor[trainer.Spec](), "")
	defaults := yamlValues(t, trainer.DefaultSpec())
	for _, k := range keys {
		row, ok := rows[k]
		if !ok {
			t.Errorf("docs/job-spec.md has no row for the spec's key %s", k)
			continue
		}
		if want, ok := defaults[k]; ok && row.def != want {
			t.Errorf("docs/job-spec.md: %s defaults to %q, the code to %q", k, row.def, want)
		}
		if _, ok := defaults[k]; !ok && row.def != `""` {
			// Only empty omitempty fields are absent from the YAML.
			t.Errorf("docs/job-spec.md: %s defaults to %q, the code to an empty value", k, row.def)
		}
		delete(rows, k)
	}
	for k := range rows {
		t.Errorf("docs/job-spec.md has a row for %s, which is no key of the spec", k)
	}

	// Each flag sets its key: resolve the spec with only that flag given.
	rows = readDocRows(t)
	named := map[string]bool{}
	for _, row := range rows {
		if row.flag == "—" {
			continue
		}
		name := strings.TrimPrefix(row.flag, "--")
		named[name] = true
		f := &specFlags{}
		cmd := &cobra.Command{}
		f.register(cmd)
		fl := cmd.Flags().Lookup(name)
		if fl == nil {
			t.Errorf("docs/job-spec.md: %s names %s, which `train` does not have", row.key, row.flag)
			continue
		}
		v := flagValue(fl.Value.Type(), fl.DefValue)
		if err := cmd.Flags().Set(name, v); err != nil {
			t.Fatalf("%s %s: %v", row.flag, v, err)
		}
		spec, err := f.resolve(cmd)
		if err != nil {
			t.Fatalf("%s %s: %v", row.flag, v, err)
		}
		got := yamlValues(t, spec)[row.key]
		if got == defaults[row.key] {
			t.Errorf("docs/job-spec.md: %s %s leaves %s at %q: the flag sets another key", row.flag, v, row.key, got)
		}
	}
	f := &specFlags{}
	cmd := &cobra.Command{}
	f.register(cmd)
	cmd.Flags().VisitAll(func(fl *pflag.Flag) {
		// --prompts is --data under the name a ppo job gives its dataset.
		if fl.Name != "config" && fl.Name != "prompts" && !named[fl.Name] {
			t.Errorf("docs/job-spec.md names no key for the spec flag --%s", fl.Name)
		}
	})

	// The table's defaults are what --print-config prints with no flags.
	out := mustRun(t, "train", "--print-config")
	printed := map[string]string{}
	var spec trainer.Spec
	if err := yaml.Unmarshal([]byte(out), &spec); err != nil {
		t.Fatalf("--print-config printed YAML that does not parse: %v\n%s", err, out)
	}
	for k, v := range yamlValues(t, spec) {
		printed[k] = v
	}
	for k, v := range defaults {
		if printed[k] != v {
			t.Errorf("--print-config with no flags prints %s: %q, the default is %q", k, printed[k], v)
		}
	}
}
