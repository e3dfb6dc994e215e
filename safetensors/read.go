package safetensors

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxHeaderSize is the largest JSON header Read accepts, in bytes. It bounds the
// memory a malformed length field can make the reader allocate.
const MaxHeaderSize = 100_000_000

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int
	// Begin and End are the tensor's byte range, relative to the start of the data
	// buffer that follows the header.
	Begin, End int64
}

// NumElements returns the number of elements (1 for a scalar).
func (t TensorInfo) NumElements() int {
	return numElementsOrNeg(t.Shape) // validated at Read: never negative
}

// File is a validated safetensors file. Its header is held in memory; tensor data is
// read from the underlying io.ReaderAt on demand, so reading a tensor costs one
// allocation of its size (or none, with ReadFloat32). A File's methods are safe for
// concurrent use if its io.ReaderAt is (an *os.File is).
type File struct {
	name      string // path for error messages; "" when unknown
	r         io.ReaderAt
	closer    io.Closer
	dataStart int64
	meta      map[string]string
	tensors   []TensorInfo // sorted by Begin, then End, then Name
	index     map[string]int
}

// Open opens and validates the safetensors file at path. The File keeps the file open
// and reads tensor data from it on demand; call Close when done.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	f, err := read(fh, st.Size(), path)
	if err != nil {
		fh.Close()
		return nil, err
	}
	f.closer = fh
	return f, nil
}

// ReadFile reads the whole safetensors file at path into memory and validates it. The
// returned File holds no open file; Close is optional.
func ReadFile(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	return read(bytes.NewReader(b), int64(len(b)), path)
}

// Read validates the safetensors file of size bytes held by r and returns it. The
// File reads tensor data from r on demand, so r must stay readable while it is used.
// Errors wrap ErrCorrupt (or ErrDType for an unknown dtype) and name the tensor.
func Read(r io.ReaderAt, size int64) (*File, error) {
	return read(r, size, "")
}

// Close closes the underlying file when the File came from Open; otherwise it does
// nothing. The File must not be used afterwards.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	c := f.closer
	f.closer = nil
	return c.Close()
}

// Metadata returns a copy of the header's "__metadata__" map (empty if absent).
func (f *File) Metadata() map[string]string {
	m := make(map[string]string, len(f.meta))
	for k, v := range f.meta {
		m[k] = v
	}
	return m
}

// Tensors returns a description of every tensor, in data order. The slice and the
// shapes in it are fresh copies owned by the caller.
func (f *File) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(f.tensors))
	for i, t := range f.tensors {
		t.Shape = slices.Clone(t.Shape)
		out[i] = t
	}
	return out
}

// Tensor returns the description of the named tensor; the shape is a fresh copy.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	i, ok := f.index[name]
	if !ok {
		return TensorInfo{}, false
	}
	t := f.tensors[i]
	t.Shape = slices.Clone(t.Shape)
	return t, true
}

// Bytes returns a fresh copy of the named tensor's raw little-endian bytes.
func (f *File) Bytes(name string) ([]byte, error) {
	t, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	n := t.End - t.Begin
	if n > math.MaxInt {
		return nil, f.errorf(ErrCorrupt, t.Name, "%d bytes do not fit in memory", n)
	}
	b := make([]byte, n)
	if err := f.readAt(t, b, t.Begin); err != nil {
		return nil, err
	}
	return b, nil
}

// Float32 returns the named tensor converted to a fresh []float32 owned by the caller.
// F32 data is returned bit for bit; F16, BF16 and F64 are converted (F64 rounds to
// nearest). Other dtypes give ErrDType.
func (f *File) Float32(name string) ([]float32, error) {
	t, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	if !convertibleToFloat32(t.DType) {
		return nil, f.errorf(ErrDType, t.Name, "%s cannot be read as float32", t.DType)
	}
	dst := make([]float32, t.NumElements())
	if err := f.ReadFloat32(name, dst); err != nil {
		return nil, err
	}
	return dst, nil
}

// ReadFloat32 is Float32 into a caller-owned dst, which must have exactly as many
// elements as the tensor (else ErrInvalid). On a little-endian host F32 data is read
// straight into dst with no intermediate buffer; conversions use a bounded scratch
// buffer. On error dst may have been partly written.
func (f *File) ReadFloat32(name string, dst []float32) error {
	t, err := f.lookup(name)
	if err != nil {
		return err
	}
	if !convertibleToFloat32(t.DType) {
		return f.errorf(ErrDType, t.Name, "%s cannot be read as float32", t.DType)
	}
	if n := t.NumElements(); len(dst) != n {
		return f.errorf(ErrInvalid, t.Name, "destination has %d elements, tensor has %d", len(dst), n)
	}
	if t.DType == F32 && littleEndianHost {
		return f.readAt(t, float32Bytes(dst), t.Begin)
	}
	es := int64(t.DType.Size())
	const chunkElems = 1 << 16
	raw := make([]byte, min(int64(len(dst)), chunkElems)*es)
	off := t.Begin
	for len(dst) > 0 {
		n := min(len(dst), chunkElems)
		b := raw[:int64(n)*es]
		if err := f.readAt(t, b, off); err != nil {
			return err
		}
		decodeToFloat32(dst[:n], b, t.DType)
		dst = dst[n:]
		off += int64(len(b))
	}
	return nil
}

func (f *File) lookup(name string) (TensorInfo, error) {
	i, ok := f.index[name]
	if !ok {
		return TensorInfo{}, f.errorf(ErrNotFound, name, "not in file")
	}
	return f.tensors[i], nil
}

// readAt fills b from the data buffer at offset off (relative to the buffer).
func (f *File) readAt(t TensorInfo, b []byte, off int64) error {
	if len(b) == 0 {
		return nil
	}
	n, err := f.r.ReadAt(b, f.dataStart+off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return f.errorf(ErrCorrupt, t.Name, "data truncated: read %d of %d bytes at offset %d", n, len(b), f.dataStart+off)
	}
	return fmt.Errorf("safetensors: %stensor %q: %w", f.where(), t.Name, err)
}

func (f *File) where() string {
	if f.name == "" {
		return ""
	}
	return f.name + ": "
}

// errorf formats an error wrapping sentinel and naming the file and tensor.
func (f *File) errorf(sentinel error, tensor, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if tensor != "" {
		return fmt.Errorf("%w: %stensor %q: %s", sentinel, f.where(), tensor, msg)
	}
	return fmt.Errorf("%w: %s%s", sentinel, f.where(), msg)
}

// headerEntry is one tensor's header object. Pointers tell a missing field from a
// zero one.
type headerEntry struct {
	DType       *string   `json:"dtype"`
	Shape       *[]uint64 `json:"shape"`
	DataOffsets *[]uint64 `json:"data_offsets"`
}

func read(r io.ReaderAt, size int64, name string) (*File, error) {
	f := &File{name: name, r: r, index: map[string]int{}}
	corrupt := func(format string, args ...any) error { return f.errorf(ErrCorrupt, "", format, args...) }

	if size < 8 {
		return nil, corrupt("file is %d bytes, shorter than the 8-byte header length", size)
	}
	var lenBuf [8]byte
	if n, err := r.ReadAt(lenBuf[:], 0); n != 8 {
		return nil, corrupt("read header length: %v", err)
	}
	hlen := binary.LittleEndian.Uint64(lenBuf[:])
	if hlen > MaxHeaderSize {
		return nil, corrupt("header length %d exceeds the limit of %d", hlen, MaxHeaderSize)
	}
	if hlen > uint64(size-8) {
		return nil, corrupt("header length %d exceeds the %d bytes after the length field", hlen, size-8)
	}
	hdr := make([]byte, hlen)
	if n, err := r.ReadAt(hdr, 8); n != len(hdr) {
		return nil, corrupt("read %d-byte header: %v", hlen, err)
	}
	f.dataStart = 8 + int64(hlen)
	bufLen := size - f.dataStart
	if len(hdr) == 0 || hdr[0] != '{' {
		return nil, corrupt("header does not start with '{'")
	}
	if !utf8.Valid(hdr) {
		return nil, corrupt("header is not valid UTF-8")
	}

	dec := json.NewDecoder(bytes.NewReader(hdr))
	if _, err := dec.Token(); err != nil { // the '{' checked above
		return nil, corrupt("header JSON: %v", err)
	}
	sawMeta := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, corrupt("header JSON: %v", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, corrupt("header JSON: key is %T, not a string", tok)
		}
		if key == MetadataKey {
			if sawMeta {
				return nil, corrupt("header has %q twice", MetadataKey)
			}
			sawMeta = true
			if err := dec.Decode(&f.meta); err != nil {
				return nil, corrupt("%s must map strings to strings: %v", MetadataKey, err)
			}
			continue
		}
		if _, dup := f.index[key]; dup {
			return nil, f.errorf(ErrCorrupt, key, "appears twice in the header")
		}
		var e headerEntry
		if err := dec.Decode(&e); err != nil {
			return nil, f.errorf(ErrCorrupt, key, "header JSON entry: %v", err)
		}
		t, err := f.checkEntry(key, e, bufLen)
		if err != nil {
			return nil, err
		}
		f.index[key] = len(f.tensors)
		f.tensors = append(f.tensors, t)
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, corrupt("header JSON: %v", err)
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, corrupt("header JSON: after the object: %v", err)
		}
		return nil, corrupt("header JSON: unexpected %v after the object", tok)
	}

	// The tensors must tile the buffer exactly: sorted by offset, each starts where
	// the previous one ended, and the last ends at the end of the file.
	slices.SortFunc(f.tensors, func(a, b TensorInfo) int {
		if a.Begin != b.Begin {
			return cmp.Compare(a.Begin, b.Begin)
		}
		if a.End != b.End {
			return cmp.Compare(a.End, b.End)
		}
		return strings.Compare(a.Name, b.Name)
	})
	var next int64
	prev := ""
	for i, t := range f.tensors {
		f.index[t.Name] = i
		switch {
		case t.Begin < next:
			return nil, f.errorf(ErrCorrupt, t.Name, "data_offsets [%d, %d] overlap tensor %q, which ends at %d", t.Begin, t.End, prev, next)
		case t.Begin > next:
			return nil, f.errorf(ErrCorrupt, t.Name, "data_offsets [%d, %d] leave a gap of %d bytes after offset %d", t.Begin, t.End, t.Begin-next, next)
		}
		next, prev = t.End, t.Name
	}
	if next != bufLen {
		return nil, corrupt("data buffer is %d bytes but tensors cover %d (trailing or truncated data)", bufLen, next)
	}
	if f.meta == nil {
		f.meta = map[string]string{}
	}
	return f, nil
}

// checkEntry validates one header entry against the buffer length.
func (f *File) checkEntry(name string, e headerEntry, bufLen int64) (TensorInfo, error) {
	t := TensorInfo{Name: name}
	if e.DType == nil {
		return t, f.errorf(ErrCorrupt, name, "missing dtype")
	}
	t.DType = DType(*e.DType)
	if !t.DType.Valid() {
		return t, f.errorf(ErrDType, name, "unknown dtype %q", *e.DType)
	}
	if e.Shape == nil {
		return t, f.errorf(ErrCorrupt, name, "missing shape")
	}
	t.Shape = make([]int, len(*e.Shape))
	for i, d := range *e.Shape {
		if d > math.MaxInt {
			return t, f.errorf(ErrCorrupt, name, "shape %v: dimension too large", *e.Shape)
		}
		t.Shape[i] = int(d)
	}
	n := numElementsOrNeg(t.Shape)
	es := int64(t.DType.Size())
	if n < 0 || int64(n) > bufLen/es {
		return t, f.errorf(ErrCorrupt, name, "shape %v of %s needs more bytes than the %d-byte buffer", *e.Shape, t.DType, bufLen)
	}
	if e.DataOffsets == nil || len(*e.DataOffsets) != 2 {
		return t, f.errorf(ErrCorrupt, name, "data_offsets must be [begin, end]")
	}
	b, en := (*e.DataOffsets)[0], (*e.DataOffsets)[1]
	if b > en || en > uint64(bufLen) {
		return t, f.errorf(ErrCorrupt, name, "data_offsets [%d, %d] outside the %d-byte buffer", b, en, bufLen)
	}
	t.Begin, t.End = int64(b), int64(en)
	if want := int64(n) * es; t.End-t.Begin != want {
		return t, f.errorf(ErrCorrupt, name, "data_offsets [%d, %d] hold %d bytes, dtype %s and shape %v need %d",
			b, en, t.End-t.Begin, t.DType, t.Shape, want)
	}
	return t, nil
}
