package security

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// IssueAll makes sure caDir holds a CA and outDir/ID holds a certificate of it
// for each identity in who (with ID as a DNS SAN, the service name a peer dials
// in compose), and reports what it wrote. What is already there and valid is
// kept: a CA directory that loads, a certificate directory whose certificate
// names the identity, chains to the CA and is valid for at least renewBefore
// more. So a rerun (a compose one-shot service started again) changes nothing
// and renews what is about to expire.
func IssueAll(caDir, outDir string, who []Identity, validity, renewBefore time.Duration) ([]string, error) {
	seen := map[string]Identity{}
	for _, w := range who {
		if _, err := NewIdentity(w.Role, w.ID); err != nil {
			return nil, err
		}
		if prev, dup := seen[w.ID]; dup {
			return nil, fmt.Errorf("%w: id %q is both %s and %s (each id names one directory)", ErrBadIdentity, w.ID, prev, w)
		}
		seen[w.ID] = w
	}
	var done []string
	ca, err := LoadCA(caDir)
	if errors.Is(err, ErrMaterial) {
		if _, statErr := os.Stat(filepath.Join(caDir, KeyFile)); statErr == nil {
			return nil, err // a CA that is there but broken is not replaced silently
		}
		if ca, err = NewCA("ringtrain CA", 10*validity); err != nil {
			return nil, err
		}
		if err := ca.WriteDir(caDir); err != nil {
			return nil, err
		}
		done = append(done, "CA "+caDir)
	} else if err != nil {
		return nil, err
	}
	for _, w := range who {
		dir := filepath.Join(outDir, w.ID)
		if st, err := LoadDir(dir, nil); err == nil && st.Identity() == w && st.chainsTo(ca) &&
			time.Until(st.current().cert.Leaf.NotAfter) > renewBefore {
			continue
		}
		is, err := ca.Issue(w, []string{w.ID}, validity)
		if err != nil {
			return nil, err
		}
		if err := is.WriteDir(dir); err != nil {
			return nil, err
		}
		done = append(done, w.String()+" "+dir)
	}
	return done, nil
}

// chainsTo reports whether the store's certificate was signed by ca.
func (s *Store) chainsTo(ca *CA) bool {
	return s.current().cert.Leaf.CheckSignatureFrom(ca.Cert) == nil
}
