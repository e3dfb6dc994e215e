package bench

import "errors"

// ErrBadOptions: options a benchmark refuses (the message names the field).
var ErrBadOptions = errors.New("bench: bad options")
