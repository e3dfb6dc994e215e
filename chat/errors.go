package chat

import "errors"

// Sentinel errors, wrapped with the row or field they concern.
var (
	// ErrBadRow: a row is not in any shape this package reads.
	ErrBadRow = errors.New("chat: bad row")
	// ErrUnknownTemplate: no template has the given name.
	ErrUnknownTemplate = errors.New("chat: unknown template")
	// ErrBadColumns: a column map is malformed or names an unknown field.
	ErrBadColumns = errors.New("chat: bad column map")
)
