package security

import (
	"fmt"
	"slices"
)

// Policy says who may call what: for every full gRPC method name
// ("/ringtrain.v1.Coordinator/Register") the roles allowed and, per role, the
// request field that must name the caller.
//
// The rules:
//
//   - A method missing from the table is denied to everyone (default deny).
//   - A role missing from the method's Rule is denied.
//   - A role mapped to "" may call the method with any arguments.
//   - A role mapped to a field name may call the method only when that field of
//     the request equals the caller's certificate id: a worker may heartbeat as
//     itself, not as another worker.
//
// Decide is a pure function of the table, the method, the caller and the
// claimed id: it does no I/O and is tested by table.
type Policy map[string]Rule

// Rule is one method's entry: role → the request field that must hold the
// caller's own id ("" for none).
type Rule map[Role]string

// Claimed returns the value of a request field by its protobuf name, and false
// when the request has no such field.
type Claimed func(field string) (string, bool)

// Decide returns nil when who may call method with a request whose fields
// claimed reads, and an error wrapping ErrDenied that says why otherwise.
func (p Policy) Decide(method string, who Identity, claimed Claimed) error {
	rule, ok := p[method]
	if !ok {
		return fmt.Errorf("%w: %s may not call %s (no rule)", ErrDenied, who, method)
	}
	field, ok := rule[who.Role]
	if !ok {
		return fmt.Errorf("%w: role %s may not call %s (allowed: %v)", ErrDenied, who.Role, method, rule.roles())
	}
	if field == "" {
		return nil
	}
	got, ok := claimed(field)
	if !ok {
		return fmt.Errorf("%w: %s: the request has no field %q to check against %s", ErrDenied, method, field, who)
	}
	if got != who.ID {
		return fmt.Errorf("%w: %s may call %s only for itself, not for %s %q", ErrDenied, who, method, field, got)
	}
	return nil
}

// roles lists a rule's roles in the order of Roles.
func (r Rule) roles() []Role {
	var out []Role
	for _, role := range Roles {
		if _, ok := r[role]; ok {
			out = append(out, role)
		}
	}
	return out
}

// Anyone is a Rule that lets every role call a method with any arguments.
func Anyone() Rule {
	r := Rule{}
	for _, role := range Roles {
		r[role] = ""
	}
	return r
}

// Merge returns a policy with the rules of every p; a method named twice is an
// error, since two tables would disagree.
func Merge(ps ...Policy) (Policy, error) {
	out := Policy{}
	for _, p := range ps {
		for m, r := range p {
			if _, dup := out[m]; dup {
				return nil, fmt.Errorf("security: method %s has two rules", m)
			}
			out[m] = r
		}
	}
	return out, nil
}

// Methods returns the table's methods, sorted.
func (p Policy) Methods() []string {
	var ms []string
	for m := range p {
		ms = append(ms, m)
	}
	slices.Sort(ms)
	return ms
}
