package netlab

import "errors"

var (
	// ErrUnavailable: a lab cannot be built on this machine (not root, or iproute2
	// or iptables missing, or namespaces refused); the wrapped message says which.
	ErrUnavailable = errors.New("netlab: network lab unavailable")
	// ErrBadLink: a link spec that does not parse.
	ErrBadLink = errors.New("netlab: bad link spec")
	// ErrClosed: the lab was closed.
	ErrClosed = errors.New("netlab: lab closed")
)
