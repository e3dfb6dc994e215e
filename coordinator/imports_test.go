package coordinator

import (
	"testing"

	"github.com/ringtrain/ringtrain/internal/importcheck"
)

// TestImportsOnlyWireTypes: the control plane reaches nothing of the module but the
// wire types and the transport security, directly or through another package. The training engine (model,
// tensor, trainer, shard, tokenizer, progress, safetensors), the worker and the
// conversion of trainer specs (jobspec) all stay outside, so that a coordinator
// builds and runs without them.
func TestImportsOnlyWireTypes(t *testing.T) {
	m, err := importcheck.FindModule(".")
	if err != nil {
		t.Fatal(err)
	}
	chains, err := m.Chains(m.Path+"/coordinator", func(p string) bool {
		// security: identities and TLS configurations, which import nothing of the module.
		return p == m.Path+"/proto/ringtrain/v1" || p == m.Path+"/security"
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chains {
		t.Errorf("coordinator reaches %s (only proto/ringtrain/v1 and security may be imported): %s", m.Rel(c[len(c)-1]), m.Chain(c))
	}
}
