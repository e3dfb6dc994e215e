package security

import (
	"testing"

	"github.com/ringtrain/ringtrain/internal/importcheck"
)

// TestImportsNothingOfTheModule: the ring and the control plane import this
// package, so it must stay a leaf.
func TestImportsNothingOfTheModule(t *testing.T) {
	m, err := importcheck.FindModule(".")
	if err != nil {
		t.Fatal(err)
	}
	chains, err := m.Chains(m.Path+"/security", func(string) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chains {
		t.Errorf("security reaches %s: %s", m.Rel(c[len(c)-1]), m.Chain(c))
	}
}
