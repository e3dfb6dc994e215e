//go:build !linux

package netlab

import "fmt"

// Do runs f in the host's namespace; only on Linux.
func (h *Host) Do(func() error) error {
	return fmt.Errorf("%w: network namespaces need Linux", ErrUnavailable)
}
