package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// goldenHeader is the header Write must produce for goldenTensors, written out by hand:
// 85 bytes of JSON padded with 3 spaces to 88, a multiple of 8.
const goldenHeader = `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"format":"pt"}}`

func goldenFile() []byte {
	b := []byte{88, 0, 0, 0, 0, 0, 0, 0} // header length 88, little-endian
	b = append(b, goldenHeader...)
	b = append(b, "   "...)
	b = append(b, 0x00, 0x00, 0x80, 0x3f) // 1.0  = 0x3f800000
	b = append(b, 0x00, 0x00, 0x00, 0xc0) // -2.0 = 0xc0000000
	return b
}

func TestSafetensorsGoldenBytes(t *testing.T) {
	if len(goldenHeader) != 85 {
		t.Fatalf("hand-counted header length is wrong: %d", len(goldenHeader))
	}
	var buf bytes.Buffer
	if err := Write(&buf, []Tensor{FromFloat32("a", []int{2}, []float32{1, -2})}, nil); err != nil {
		t.Fatal(err)
	}
	want := goldenFile()
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("Write output differs from golden bytes:\n got %q\nwant %q", buf.Bytes(), want)
	}
	f, err := Read(bytes.NewReader(want), int64(len(want)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.Float32("a")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []float32{1, -2}) {
		t.Fatalf("a = %v", got)
	}
	if m := f.Metadata(); len(m) != 1 || m["format"] != "pt" {
		t.Fatalf("metadata = %v", m)
	}
}

func le16(vs ...uint16) []byte {
	b := make([]byte, 2*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint16(b[2*i:], v)
	}
	return b
}

func le64f(vs ...float64) []byte {
	b := make([]byte, 8*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(v))
	}
	return b
}

func TestSafetensorsRoundTrip(t *testing.T) {
	f32 := []float32{0, 1, -1, float32(math.Inf(1)), math.Float32frombits(0x7fc00001), math.SmallestNonzeroFloat32}
	big := make([]float32, 200000) // larger than one conversion chunk
	for i := range big {
		big[i] = float32(i) * 0.5
	}
	tensors := []Tensor{
		FromFloat32("w", []int{2, 3}, f32),
		{Name: "scalar", DType: I64, Shape: []int{}, Data: []byte{7, 0, 0, 0, 0, 0, 0, 0}},
		{Name: "empty", DType: F32, Shape: []int{0, 5}},
		{Name: "half", DType: F16, Shape: []int{3}, Data: le16(0x3c00, 0xc000, 0x0001)},
		{Name: "brain", DType: BF16, Shape: []int{2}, Data: le16(0x3f80, 0xc040)},
		{Name: "double", DType: F64, Shape: []int{2}, Data: le64f(0.1, -3)},
		{Name: "bytes<&>", DType: U8, Shape: []int{3}, Data: []byte{1, 2, 3}},
		{Name: "streamed", DType: F32, Shape: []int{len(big)}, Encode: func(w io.Writer) error {
			return WriteFloat32(w, big)
		}},
	}
	meta := map[string]string{"step": "12", "note": "x"}
	var buf bytes.Buffer
	if err := Write(&buf, tensors, meta); err != nil {
		t.Fatal(err)
	}
	if len(meta) != 2 {
		t.Fatalf("Write modified the caller's metadata: %v", meta)
	}
	var again bytes.Buffer
	if err := Write(&again, tensors, meta); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Fatal("Write is not deterministic")
	}
	hlen := binary.LittleEndian.Uint64(buf.Bytes())
	if hlen%8 != 0 {
		t.Fatalf("header length %d is not a multiple of 8", hlen)
	}

	path := filepath.Join(t.TempDir(), "x.safetensors")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	opened, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer opened.Close()
	whole, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []*File{opened, whole} {
		m := f.Metadata()
		if m["format"] != "pt" || m["step"] != "12" || m["note"] != "x" || len(m) != 3 {
			t.Fatalf("metadata = %v", m)
		}
		infos := f.Tensors()
		var names []string
		for _, ti := range infos {
			names = append(names, ti.Name)
		}
		// Data order: the zero-byte "empty" sits at the offset where "half" starts, and sorts first.
		wantNames := []string{"w", "scalar", "empty", "half", "brain", "double", "bytes<&>", "streamed"}
		if !slices.Equal(names, wantNames) {
			t.Fatalf("tensor order %v, want %v", names, wantNames)
		}
		for _, tn := range tensors {
			info, ok := f.Tensor(tn.Name)
			if !ok || info.DType != tn.DType || !slices.Equal(info.Shape, tn.Shape) {
				t.Fatalf("tensor %q: info %+v", tn.Name, info)
			}
			if tn.Encode != nil {
				continue
			}
			raw, err := f.Bytes(tn.Name)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(raw, tn.Data) {
				t.Fatalf("tensor %q: bytes %v, want %v", tn.Name, raw, tn.Data)
			}
		}
		w, err := f.Float32("w")
		if err != nil {
			t.Fatal(err)
		}
		for i := range w {
			if math.Float32bits(w[i]) != math.Float32bits(f32[i]) {
				t.Fatalf("w[%d] bits %#x, want %#x", i, math.Float32bits(w[i]), math.Float32bits(f32[i]))
			}
		}
		s, err := f.Float32("streamed")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(s, big) {
			t.Fatal("streamed tensor differs")
		}
		check := func(name string, want []float32) {
			t.Helper()
			got, err := f.Float32(name)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%s = %v, want %v", name, got, want)
			}
		}
		check("half", []float32{1, -2, float32(math.Ldexp(1, -24))})
		check("brain", []float32{1, -3})
		check("double", []float32{float32(0.1), -3})
		check("empty", []float32{})
		if _, err := f.Float32("scalar"); !errors.Is(err, ErrDType) {
			t.Fatalf("Float32 on I64: err %v, want ErrDType", err)
		}
		if _, err := f.Float32("nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing tensor: err %v, want ErrNotFound", err)
		}
		if err := f.ReadFloat32("w", make([]float32, 5)); !errors.Is(err, ErrInvalid) {
			t.Fatalf("short dst: err %v, want ErrInvalid", err)
		}
	}
}

func TestSafetensorsHalfConversion(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		got := halfToFloat32(uint16(h))
		sign := 1.0
		if h&0x8000 != 0 {
			sign = -1
		}
		exp, mant := (h>>10)&0x1f, h&0x3ff
		var want float64
		switch {
		case exp == 0x1f && mant == 0:
			want = math.Inf(int(sign))
		case exp == 0x1f:
			if !math.IsNaN(float64(got)) {
				t.Fatalf("half %#04x: got %v, want NaN", h, got)
			}
			continue
		case exp == 0:
			want = sign * math.Ldexp(float64(mant), -24)
		default:
			want = sign * math.Ldexp(float64(mant|0x400), exp-25)
		}
		if float64(got) != want || math.Signbit(float64(got)) != (sign < 0) {
			t.Fatalf("half %#04x: got %v, want %v", h, got, want)
		}
	}
}

func TestSafetensorsWriteRejects(t *testing.T) {
	cases := map[string][]Tensor{
		"reserved name": {{Name: MetadataKey, DType: U8, Shape: []int{1}, Data: []byte{1}}},
		"duplicate":     {{Name: "a", DType: U8, Shape: []int{1}, Data: []byte{1}}, {Name: "a", DType: U8, Shape: []int{1}, Data: []byte{1}}},
		"bad dtype":     {{Name: "a", DType: "F7", Shape: []int{1}, Data: []byte{1}}},
		"negative dim":  {{Name: "a", DType: U8, Shape: []int{-1}}},
		"size mismatch": {FromFloat32("a", []int{3}, []float32{1, 2})},
		"bad utf8":      {{Name: "a\xff", DType: U8, Shape: []int{1}, Data: []byte{1}}},
		"short encode": {{Name: "a", DType: F32, Shape: []int{2}, Encode: func(w io.Writer) error {
			return WriteFloat32(w, []float32{1})
		}}},
	}
	for name, ts := range cases {
		if err := Write(io.Discard, ts, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err %v, want ErrInvalid", name, err)
		}
	}
}

// file assembles a safetensors file from a raw header (padded to 8) and data.
func file(header string, data []byte) []byte {
	for len(header)%8 != 0 {
		header += " "
	}
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func TestSafetensorsCorrupt(t *testing.T) {
	eight := make([]byte, 8)
	sixteen := make([]byte, 16)
	cases := map[string]struct {
		in   []byte
		want error
		msg  string // a substring the error must contain
	}{
		"empty":           {[]byte{}, ErrCorrupt, "shorter than"},
		"header too long": {binary.LittleEndian.AppendUint64(nil, 1000), ErrCorrupt, "exceeds"},
		"huge header":     {binary.LittleEndian.AppendUint64(nil, math.MaxUint64), ErrCorrupt, "exceeds"},
		"bad json":        {file(`{"a":{"dtype":"F32",`, eight), ErrCorrupt, "JSON"},
		"not an object":   {file(`[1,2]`, nil), ErrCorrupt, "'{'"},
		"trailing json":   {file(`{} {}`, nil), ErrCorrupt, "after the object"},
		"bad utf8":        {file("{\"\xff\":1}", nil), ErrCorrupt, "UTF-8"},
		"missing dtype":   {file(`{"a":{"shape":[2],"data_offsets":[0,8]}}`, eight), ErrCorrupt, `"a": missing dtype`},
		"unknown dtype":   {file(`{"a":{"dtype":"F7","shape":[2],"data_offsets":[0,8]}}`, eight), ErrDType, `"a"`},
		"missing shape":   {file(`{"a":{"dtype":"F32","data_offsets":[0,8]}}`, eight), ErrCorrupt, "missing shape"},
		"negative dim":    {file(`{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, eight), ErrCorrupt, `"a"`},
		"missing offsets": {file(`{"a":{"dtype":"F32","shape":[2]}}`, eight), ErrCorrupt, "data_offsets"},
		"three offsets":   {file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}}`, eight), ErrCorrupt, "data_offsets"},
		"out of range":    {file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}}`, eight), ErrCorrupt, "outside"},
		"reversed":        {file(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}`, eight), ErrCorrupt, "outside"},
		"shape mismatch":  {file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}}`, eight), ErrCorrupt, "need 4"},
		"shape too big":   {file(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`, eight), ErrCorrupt, "shape"},
		"overlapping": {file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, sixteen),
			ErrCorrupt, "overlap"},
		"gap": {file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`, sixteen),
			ErrCorrupt, "gap"},
		"trailing data": {file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, sixteen), ErrCorrupt, "trailing"},
		"duplicate name": {file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, eight),
			ErrCorrupt, "twice"},
		"duplicate metadata": {file(`{"__metadata__":{},"__metadata__":{}}`, nil), ErrCorrupt, "twice"},
		"metadata number":    {file(`{"__metadata__":{"format":1}}`, nil), ErrCorrupt, "__metadata__"},
		"entry not object":   {file(`{"a":[1]}`, nil), ErrCorrupt, `"a"`},
	}
	for name, c := range cases {
		_, err := Read(bytes.NewReader(c.in), int64(len(c.in)))
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: err %v, want %v containing %q", name, err, c.want, c.msg)
		}
	}
}

// TestSafetensorsTruncated checks that every proper prefix of a valid file is refused
// and that the error names the file.
func TestSafetensorsTruncated(t *testing.T) {
	var buf bytes.Buffer
	err := Write(&buf, []Tensor{
		FromFloat32("a", []int{2, 2}, []float32{1, 2, 3, 4}),
		{Name: "b", DType: U8, Shape: []int{3}, Data: []byte{1, 2, 3}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	full := buf.Bytes()
	for n := 0; n < len(full); n++ {
		if _, err := Read(bytes.NewReader(full[:n]), int64(n)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("prefix of %d/%d bytes: err %v, want ErrCorrupt", n, len(full), err)
		}
	}
	path := filepath.Join(t.TempDir(), "torn.safetensors")
	if err := os.WriteFile(path, full[:len(full)-1], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(path); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Fatalf("ReadFile of torn file: err %v, want ErrCorrupt naming %s", err, path)
	}
}

// TestSafetensorsShrunkAfterOpen checks that data missing after a successful Read is
// reported as corruption, not a panic.
func TestSafetensorsShrunkAfterOpen(t *testing.T) {
	full := goldenFile()
	f, err := Read(shortReaderAt{bytes.NewReader(full), int64(len(full) - 2)}, int64(len(full)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Float32("a"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err %v, want ErrCorrupt", err)
	}
}

type shortReaderAt struct {
	r     io.ReaderAt
	limit int64
}

func (s shortReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.limit {
		return 0, io.EOF
	}
	if rem := s.limit - off; int64(len(p)) > rem {
		n, _ := s.r.ReadAt(p[:rem], off)
		return n, io.EOF
	}
	return s.r.ReadAt(p, off)
}

func TestSafetensorsBufferedFileWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.safetensors")
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(fh)
	if err := Write(bw, []Tensor{FromFloat32("a", []int{2}, []float32{1, -2})}, nil); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, goldenFile()) {
		t.Fatal("file differs from golden bytes")
	}
}

func FuzzRead(f *testing.F) {
	f.Add(goldenFile())
	var buf bytes.Buffer
	_ = Write(&buf, []Tensor{
		{Name: "h", DType: F16, Shape: []int{2}, Data: le16(0x3c00, 0x7e00)},
		{Name: "d", DType: F64, Shape: []int{1}, Data: le64f(2)},
		{Name: "s", DType: I32, Shape: []int{}, Data: []byte{1, 0, 0, 0}},
	}, map[string]string{"k": "v"})
	f.Add(buf.Bytes())
	f.Add(file(`{"a":{"dtype":"BF16","shape":[0],"data_offsets":[0,0]}}`, nil))
	f.Add(file(`{"":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, []byte{9}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		file, err := Read(bytes.NewReader(in), int64(len(in)))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrDType) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		for _, ti := range file.Tensors() {
			raw, err := file.Bytes(ti.Name)
			if err != nil {
				t.Fatalf("Bytes(%q) after a successful Read: %v", ti.Name, err)
			}
			if int64(len(raw)) != ti.End-ti.Begin {
				t.Fatalf("Bytes(%q): %d bytes, want %d", ti.Name, len(raw), ti.End-ti.Begin)
			}
			if convertibleToFloat32(ti.DType) {
				if _, err := file.Float32(ti.Name); err != nil {
					t.Fatalf("Float32(%q): %v", ti.Name, err)
				}
			}
		}
		// A valid file re-encodes to a file with the same tensors.
		var ts []Tensor
		for _, ti := range file.Tensors() {
			raw, _ := file.Bytes(ti.Name)
			ts = append(ts, Tensor{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Data: raw})
		}
		var out bytes.Buffer
		if err := Write(&out, ts, file.Metadata()); err != nil {
			t.Fatalf("re-encoding a valid file: %v", err)
		}
		back, err := Read(bytes.NewReader(out.Bytes()), int64(out.Len()))
		if err != nil {
			t.Fatalf("reading a re-encoded file: %v", err)
		}
		if len(back.Tensors()) != len(ts) {
			t.Fatalf("re-encoded file has %d tensors, want %d", len(back.Tensors()), len(ts))
		}
	})
}
