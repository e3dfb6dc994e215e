package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"unicode/utf8"
)

// MetadataKey is the reserved header key that holds the file's string metadata.
const MetadataKey = "__metadata__"

// Tensor is one tensor to write.
//
// Its bytes come from Data, or, when Encode is non-nil, from Encode, which Write calls
// exactly once, in order, to stream the bytes into the file; Write checks that Encode
// wrote exactly the number of bytes dtype and shape call for. Encode lets a caller
// produce data on the fly (a transpose into a small scratch buffer, say) instead of
// staging every tensor in memory before the write.
type Tensor struct {
	Name  string
	DType DType
	Shape []int // row-major; an empty shape is a scalar of one element
	// Data holds the little-endian, row-major bytes. Write only reads it.
	Data []byte
	// Encode, when non-nil, writes the tensor's bytes to w; Data is then ignored.
	Encode func(w io.Writer) error
}

// FromFloat32 returns an F32 tensor over data. On a little-endian host, Data aliases
// data's memory rather than copying it, so data must not be modified until the Write
// that uses the tensor returns; on a big-endian host Data is a converted copy. It does
// not check that len(data) fits shape; Write does.
func FromFloat32(name string, shape []int, data []float32) Tensor {
	t := Tensor{Name: name, DType: F32, Shape: shape}
	if littleEndianHost {
		t.Data = float32Bytes(data)
		return t
	}
	t.Data = make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(t.Data[4*i:], math.Float32bits(v))
	}
	return t
}

// numElementsOrNeg returns the element count of shape, or -1 when a dimension is
// negative or the product overflows an int.
func numElementsOrNeg(shape []int) int {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return -1
		}
		if d == 0 {
			n = 0
			continue
		}
		if n > math.MaxInt/d {
			return -1
		}
		n *= d
	}
	if n < 0 {
		return -1
	}
	return n
}

// Write encodes tensors in the given order, with metadata, to w as one safetensors
// file. The output is a deterministic function of the arguments: the header lists the
// tensors in order, with data laid out contiguously in the same order, then
// "__metadata__" (keys sorted), and is padded with spaces to a multiple of 8 bytes.
// metadata always gets "format": "pt" unless the caller sets "format" itself.
//
// Write validates every tensor before writing anything; a later error (from w or an
// Encode function) leaves a partial file in w. It does not buffer: pass a
// *bufio.Writer for file output. It does not retain tensors or metadata.
func Write(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	header, sizes, err := encodeHeader(tensors, metadata)
	if err != nil {
		return err
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(header)))
	if _, err := w.Write(lenBuf[:]); err != nil {
		return fmt.Errorf("safetensors: write header: %w", err)
	}
	if _, err := w.Write(header); err != nil {
		return fmt.Errorf("safetensors: write header: %w", err)
	}
	for i, t := range tensors {
		if t.Encode == nil {
			if _, err := w.Write(t.Data); err != nil {
				return fmt.Errorf("safetensors: write tensor %q: %w", t.Name, err)
			}
			continue
		}
		cw := &countingWriter{w: w}
		if err := t.Encode(cw); err != nil {
			return fmt.Errorf("safetensors: encode tensor %q: %w", t.Name, err)
		}
		if cw.n != sizes[i] {
			return fmt.Errorf("%w: tensor %q: Encode wrote %d bytes, dtype %s and shape %v need %d",
				ErrInvalid, t.Name, cw.n, t.DType, t.Shape, sizes[i])
		}
	}
	return nil
}

// encodeHeader validates tensors and returns the padded JSON header and each
// tensor's byte size.
func encodeHeader(tensors []Tensor, metadata map[string]string) ([]byte, []int64, error) {
	meta := make(map[string]string, len(metadata)+1)
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, nil, fmt.Errorf("%w: metadata key %q: keys and values must be valid UTF-8", ErrInvalid, k)
		}
		meta[k] = v
	}
	if _, ok := meta["format"]; !ok {
		meta["format"] = "pt"
	}
	metaJSON, err := marshalNoEscape(meta) // map keys come out sorted
	if err != nil {
		return nil, nil, fmt.Errorf("%w: metadata: %w", ErrInvalid, err)
	}
	var h bytes.Buffer
	h.WriteByte('{')

	sizes := make([]int64, len(tensors))
	seen := make(map[string]bool, len(tensors))
	var offset int64
	for i, t := range tensors {
		if t.Name == MetadataKey {
			return nil, nil, fmt.Errorf("%w: tensor %d: name %q is reserved", ErrInvalid, i, t.Name)
		}
		if !utf8.ValidString(t.Name) {
			return nil, nil, fmt.Errorf("%w: tensor %q: name is not valid UTF-8", ErrInvalid, t.Name)
		}
		if seen[t.Name] {
			return nil, nil, fmt.Errorf("%w: tensor %q: duplicate name", ErrInvalid, t.Name)
		}
		seen[t.Name] = true
		if !t.DType.Valid() {
			return nil, nil, fmt.Errorf("%w: tensor %q: unknown dtype %q", ErrInvalid, t.Name, t.DType)
		}
		n := numElementsOrNeg(t.Shape)
		if n < 0 || int64(n) > math.MaxInt64/int64(t.DType.Size()) {
			return nil, nil, fmt.Errorf("%w: tensor %q: bad shape %v", ErrInvalid, t.Name, t.Shape)
		}
		size := int64(n) * int64(t.DType.Size())
		if t.Encode == nil && int64(len(t.Data)) != size {
			return nil, nil, fmt.Errorf("%w: tensor %q: %d data bytes, dtype %s and shape %v need %d",
				ErrInvalid, t.Name, len(t.Data), t.DType, t.Shape, size)
		}
		if offset > math.MaxInt64-size {
			return nil, nil, fmt.Errorf("%w: tensor %q: total size overflows", ErrInvalid, t.Name)
		}
		sizes[i] = size
		name, err := marshalNoEscape(t.Name)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: tensor %q: %w", ErrInvalid, t.Name, err)
		}
		h.Write(name)
		h.WriteString(`:{"dtype":`)
		h.WriteString(strconv.Quote(string(t.DType))) // dtypes are plain ASCII
		h.WriteString(`,"shape":[`)
		for j, d := range t.Shape {
			if j > 0 {
				h.WriteByte(',')
			}
			h.WriteString(strconv.Itoa(d))
		}
		h.WriteString(`],"data_offsets":[`)
		h.WriteString(strconv.FormatInt(offset, 10))
		h.WriteByte(',')
		offset += size
		h.WriteString(strconv.FormatInt(offset, 10))
		h.WriteString(`]},`)
	}
	h.WriteString(`"` + MetadataKey + `":`)
	h.Write(metaJSON)
	h.WriteByte('}')
	for h.Len()%8 != 0 {
		h.WriteByte(' ')
	}
	return h.Bytes(), sizes, nil
}

// marshalNoEscape is json.Marshal without HTML escaping, so names containing <, >
// or & are written as themselves.
func marshalNoEscape(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'}), nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
