package security

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"regexp"
	"slices"
)

// Scheme is the URI scheme of ringtrain identities.
const Scheme = "ringtrain"

// Role is what a certificate holder is in the cluster.
type Role string

// The roles. A reader may only read the cluster's state.
const (
	RoleCoordinator Role = "coordinator"
	RoleWorker      Role = "worker"
	RoleAdmin       Role = "admin"
	RoleReader      Role = "reader"
)

// Roles lists every role, in a fixed order.
var Roles = []Role{RoleCoordinator, RoleWorker, RoleAdmin, RoleReader}

// AnyMember is every role: what a server accepts at the TLS layer when its
// policy table decides per method.
var AnyMember = Roles

// Valid reports whether r is one of Roles.
func (r Role) Valid() bool { return slices.Contains(Roles, r) }

// idPattern is what an id may be: the names ringtrain already accepts for
// workers and replicas (host names, pod names), at most 128 characters.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Identity is a certificate holder: its role and its id (a worker id, a Raft
// server id, an admin's name).
type Identity struct {
	Role Role
	ID   string
}

// NewIdentity checks role and id.
func NewIdentity(role Role, id string) (Identity, error) {
	if !role.Valid() {
		return Identity{}, fmt.Errorf("%w: role %q (want one of %v)", ErrBadIdentity, role, Roles)
	}
	if !idPattern.MatchString(id) {
		return Identity{}, fmt.Errorf("%w: id %q (want letters, digits, '.', '_' or '-', at most 128, starting with a letter or digit)", ErrBadIdentity, id)
	}
	return Identity{Role: role, ID: id}, nil
}

// URI returns the identity as a URI SAN: ringtrain://ROLE/ID.
func (i Identity) URI() *url.URL {
	return &url.URL{Scheme: Scheme, Host: string(i.Role), Path: "/" + i.ID}
}

// String returns the URI form.
func (i Identity) String() string { return i.URI().String() }

// ParseIdentity reads a ringtrain URI.
func ParseIdentity(u *url.URL) (Identity, error) {
	if u.Scheme != Scheme || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Port() != "" || len(u.Path) < 2 || u.Path[0] != '/' {
		return Identity{}, fmt.Errorf("%w: %q is not %s://ROLE/ID", ErrBadIdentity, u.String(), Scheme)
	}
	return NewIdentity(Role(u.Host), u.Path[1:])
}

// IdentityOf returns the identity a certificate carries: its one URI SAN of the
// ringtrain scheme. A certificate with none, with two, or with a malformed one
// has no identity.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	var found []*url.URL
	for _, u := range cert.URIs {
		if u.Scheme == Scheme {
			found = append(found, u)
		}
	}
	if len(found) != 1 {
		return Identity{}, fmt.Errorf("%w: certificate %q has %d %s:// URI SANs, want 1", ErrNoIdentity, cert.Subject.CommonName, len(found), Scheme)
	}
	return ParseIdentity(found[0])
}
