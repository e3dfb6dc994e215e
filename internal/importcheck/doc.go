// Package importcheck finds the import chains by which a package of this module
// reaches module packages it must not: the layering rules of ringtrain, written as
// tests beside the packages they protect.
//
// # Who calls it
//
// Tests only: coordinator/imports_test.go (the control plane reaches nothing of the
// module but the wire types) and allreduce/imports_test.go (the ring reaches no part
// of the training engine). Each states its rule as the set of module packages it may
// import, directly or not, and fails with the offending chain.
//
// # Usage
//
//	mod, err := importcheck.FindModule(".")
//	chains, err := mod.Chains(mod.Path+"/coordinator", func(p string) bool {
//		return p == mod.Path+"/proto/ringtrain/v1"
//	})
//	for _, c := range chains {
//		t.Errorf("coordinator reaches %s: %s", c[len(c)-1], mod.Chain(c))
//	}
//
// # Why parse the sources
//
// The rule is about what a package's build pulls in, so it reads the import clauses of
// every non-test Go file in each package directory (go/parser, imports only), for
// every operating system and architecture at once: a file for another platform that
// crossed a layer would break that platform's build of the layer. It follows only the
// module's own packages; the standard library and other modules cannot import them
// back. It needs neither the go command nor a network, and takes milliseconds.
package importcheck
