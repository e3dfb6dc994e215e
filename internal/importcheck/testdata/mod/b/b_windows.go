//go:build windows

package b

import "example.com/m/d"

var _ = d.D
