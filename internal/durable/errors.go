package durable

import "errors"

// Sentinel errors of durable writes. Errors of the underlying file operations are
// wrapped as they are (fs.ErrNotExist, fs.ErrPermission, ...).
var (
	// ErrExists reports that the directory WriteDir was asked to create exists.
	ErrExists = errors.New("durable: destination already exists")
	// ErrBadPath reports a destination that names no file or directory to create,
	// such as "." or "/".
	ErrBadPath = errors.New("durable: destination is not a name to create")
)
