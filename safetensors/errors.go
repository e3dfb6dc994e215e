package safetensors

import "errors"

// Sentinel errors of the safetensors package. Errors about a file's contents or a
// caller's arguments wrap one of them with %w and name the file (when known) and the
// tensor concerned; I/O errors wrap the underlying error (fs.ErrNotExist, ...) instead.
var (
	// ErrCorrupt reports a file that does not follow the format: a bad header length,
	// invalid JSON, offsets outside the buffer or overlapping, a size that does not
	// match dtype and shape, duplicate names, or a truncated file.
	ErrCorrupt = errors.New("safetensors: corrupt file")
	// ErrDType reports a dtype this package does not know, or a conversion it does not
	// offer (for example Float32 on an I64 tensor).
	ErrDType = errors.New("safetensors: unsupported dtype")
	// ErrNotFound reports a tensor name that is not in the file.
	ErrNotFound = errors.New("safetensors: no such tensor")
	// ErrInvalid reports a bad argument: a Write tensor that cannot be encoded (the
	// reserved name "__metadata__", a duplicate name, a negative dimension, data whose
	// length does not match dtype and shape), or a destination slice of the wrong length.
	ErrInvalid = errors.New("safetensors: invalid tensor")
)
