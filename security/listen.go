package security

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// ErrPlaintext: a listen address off loopback without certificates and without
// an explicit opt-in to plain text.
var ErrPlaintext = errors.New("security: refusing to serve plain text off loopback (give --tls-dir, or --insecure to accept the risk)")

// IsLoopback reports whether a listen address (host:port) binds loopback only:
// 127.0.0.0/8, ::1 or "localhost". An empty or unspecified host binds every
// interface and is not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckPlaintext returns nil when every address binds loopback only, and an
// error naming the first that does not otherwise. Call it for a process that
// has no certificates and was not given --insecure.
func CheckPlaintext(addrs map[string]string) error {
	for _, flag := range sortedKeys(addrs) {
		if a := addrs[flag]; a != "" && !IsLoopback(a) {
			return fmt.Errorf("%s %s: %w", flag, a, ErrPlaintext)
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Store returns a memory Store holding a certificate the CA issues for who
// (loopback host SANs): what ringtrain local gives each of its processes.
func (ca *CA) Store(who Identity, validity time.Duration) (*Store, error) {
	is, err := ca.Issue(who, []string{"localhost", "127.0.0.1", "::1"}, validity)
	if err != nil {
		return nil, err
	}
	return NewMemoryStore(is)
}
