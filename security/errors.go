package security

import "errors"

// Errors of this package; wrapped with %w and details.
var (
	// ErrNoIdentity: a certificate without exactly one ringtrain URI SAN, or a
	// connection without a verified certificate.
	ErrNoIdentity = errors.New("security: no ringtrain identity")
	// ErrBadIdentity: a ringtrain URI that does not name a known role and a valid id.
	ErrBadIdentity = errors.New("security: bad identity")
	// ErrDenied: an authenticated peer asked for something its role may not do,
	// or claimed to be someone else.
	ErrDenied = errors.New("security: permission denied")
	// ErrMaterial: certificate files that are missing, unreadable or inconsistent.
	ErrMaterial = errors.New("security: bad certificate material")
	// ErrUntrusted: a peer certificate that does not chain to the trusted CA bundle.
	ErrUntrusted = errors.New("security: untrusted certificate")
)
