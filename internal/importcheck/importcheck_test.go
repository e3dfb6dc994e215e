package importcheck

import (
	"reflect"
	"testing"
)

func TestChains(t *testing.T) {
	m, err := FindModule("testdata/mod/a")
	if err != nil {
		t.Fatal(err)
	}
	if m.Path != "example.com/m" {
		t.Fatalf("module path %q", m.Path)
	}
	only := func(ok ...string) func(string) bool {
		return func(p string) bool {
			for _, o := range ok {
				if p == "example.com/m/"+o {
					return true
				}
			}
			return false
		}
	}
	for _, tc := range []struct {
		name    string
		allowed []string
		want    []string
	}{
		// a's test file imports d: tests are not part of the build.
		{"everything allowed", []string{"b", "c", "d"}, nil},
		// b reaches c everywhere and d in its windows file: both count.
		{"b allowed", []string{"b"}, []string{"b -> c", "b -> d"}},
		// A refused package ends its chain: c and d behind b are not listed.
		{"nothing allowed", nil, []string{"b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chains, err := m.Chains("example.com/m/a", only(tc.allowed...))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range chains {
				s := m.Chain(c)
				if s[:5] != "a -> " {
					t.Fatalf("chain %q does not start at a", s)
				}
				got = append(got, s[5:])
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("chains %q, want %q", got, tc.want)
			}
		})
	}
}

func TestChainsUnknownPackage(t *testing.T) {
	m, err := FindModule("testdata/mod")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Chains("example.com/m/nosuch", func(string) bool { return true }); err == nil {
		t.Error("no error for a package that does not exist")
	}
	if _, err := m.Chains("example.com/other", func(string) bool { return true }); err == nil {
		t.Error("no error for a package outside the module")
	}
}
