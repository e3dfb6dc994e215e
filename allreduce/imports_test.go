package allreduce

import (
	"testing"

	"github.com/ringtrain/ringtrain/internal/importcheck"
)

// TestImportsNoEngine: the ring reaches nothing of the module but the wire types and
// the shared vector add (internal/vec) and the transport security (security), directly or through another package: no
// kernels, model, trainer, data or control-plane package, so that it sums any
// []float32 for any caller.
func TestImportsNoEngine(t *testing.T) {
	m, err := importcheck.FindModule(".")
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{
		m.Path + "/proto/ringtrain/v1": true,
		m.Path + "/internal/vec":       true, // dst += src in vector registers; imports nothing of the module
		m.Path + "/security":           true, // identities and TLS configurations; imports nothing of the module
	}
	chains, err := m.Chains(m.Path+"/allreduce", func(p string) bool { return allowed[p] })
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chains {
		t.Errorf("allreduce reaches %s (only proto/ringtrain/v1, internal/vec and security may be imported): %s", m.Rel(c[len(c)-1]), m.Chain(c))
	}
}
