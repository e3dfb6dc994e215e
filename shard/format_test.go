package shard

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestShardRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		format Format
		tokens []int32
	}{
		{FormatLLMC, []int32{0, 1, 256, 65535, 7}},
		{FormatLLMC32, []int32{0, 65536, 1 << 30, 2147483647}},
		{FormatNanoGPT, []int32{5, 65535, 0}},
		{FormatLLMC, []int32{}},
	} {
		path := filepath.Join(dir, string(tc.format)+".bin")
		sum, err := WriteShardFile(path, tc.format, tc.tokens)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(path)
		if got := SHA256Hex(b); got != sum {
			t.Fatalf("%s: returned sha256 %s, file has %s", tc.format, sum, got)
		}
		if want := int64(len(tc.tokens)*tc.format.Width()) + tc.format.headerSize(); int64(len(b)) != want {
			t.Fatalf("%s: file is %d bytes, want %d", tc.format, len(b), want)
		}
		for _, declared := range []Format{FormatDetect, tc.format} {
			tok, format, err := ReadShard(t.Context(), path, ReadOptions{Format: declared, SHA256: sum})
			if err != nil {
				t.Fatalf("%s declared %q: %v", tc.format, declared, err)
			}
			if format != tc.format {
				t.Fatalf("read as %s, want %s", format, tc.format)
			}
			if got := tok.Int32(); !slices.Equal(got, tc.tokens) {
				t.Fatalf("%s: got %v want %v", tc.format, got, tc.tokens)
			}
			if tok.Width() != tc.format.Width() {
				t.Fatalf("width %d want %d", tok.Width(), tc.format.Width())
			}
		}
	}
}

func TestHeaderLayout(t *testing.T) {
	var buf bytes.Buffer
	if err := EncodeShard(&buf, FormatLLMC32, []int32{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	want := []int32{MagicUint32, VersionUint32, 3}
	for i, w := range want {
		if got := int32(binary.LittleEndian.Uint32(b[4*i:])); got != w {
			t.Fatalf("header[%d] = %d, want %d", i, got, w)
		}
	}
	for i := 3; i < HeaderInts; i++ {
		if binary.LittleEndian.Uint32(b[4*i:]) != 0 {
			t.Fatalf("header[%d] not zero", i)
		}
	}
	if got := binary.LittleEndian.Uint32(b[HeaderBytes+8:]); got != 3 {
		t.Fatalf("third token %d", got)
	}
}

func TestEncodeRejectsTokens(t *testing.T) {
	for _, tc := range []struct {
		format Format
		tok    int32
	}{{FormatLLMC, 65536}, {FormatLLMC, -1}, {FormatNanoGPT, 70000}, {FormatLLMC32, -5}} {
		var buf bytes.Buffer
		err := EncodeShard(&buf, tc.format, []int32{1, tc.tok})
		wantErr(t, err, ErrBadToken)
		if buf.Len() != 0 {
			t.Fatalf("%s: wrote %d bytes before failing", tc.format, buf.Len())
		}
	}
	wantErr(t, EncodeShard(&bytes.Buffer{}, "bogus", nil), ErrBadOptions)
}

func writeRaw(t *testing.T, path string, b []byte) string {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func encode(t *testing.T, format Format, tokens []int32) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := EncodeShard(&buf, format, tokens); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadShardCorrupt(t *testing.T) {
	dir := t.TempDir()
	good := encode(t, FormatLLMC, []int32{1, 2, 3, 4, 300})
	ctx := t.Context()

	t.Run("truncated", func(t *testing.T) {
		p := writeRaw(t, filepath.Join(dir, "trunc.bin"), good[:len(good)-2])
		_, _, err := ReadShard(ctx, p, ReadOptions{})
		wantErr(t, err, ErrTruncated, p)
	})
	t.Run("trailing bytes", func(t *testing.T) {
		p := writeRaw(t, filepath.Join(dir, "long.bin"), append(slices.Clone(good), 0, 0))
		_, _, err := ReadShard(ctx, p, ReadOptions{Format: FormatLLMC})
		wantErr(t, err, ErrTruncated, p)
	})
	t.Run("short header", func(t *testing.T) {
		p := writeRaw(t, filepath.Join(dir, "hdr.bin"), good[:100])
		_, _, err := ReadShard(ctx, p, ReadOptions{})
		wantErr(t, err, ErrTruncated, p)
	})
	t.Run("odd nanogpt", func(t *testing.T) {
		p := writeRaw(t, filepath.Join(dir, "odd.bin"), []byte{1, 2, 3})
		_, _, err := ReadShard(ctx, p, ReadOptions{})
		wantErr(t, err, ErrTruncated, p)
	})
	t.Run("wrong magic", func(t *testing.T) {
		b := slices.Clone(good)
		binary.LittleEndian.PutUint32(b, 12345)
		p := writeRaw(t, filepath.Join(dir, "magic.bin"), b)
		_, _, err := ReadShard(ctx, p, ReadOptions{Format: FormatLLMC})
		wantErr(t, err, ErrBadMagic, p)
	})
	t.Run("wrong version", func(t *testing.T) {
		b := slices.Clone(good)
		binary.LittleEndian.PutUint32(b[4:], 7)
		p := writeRaw(t, filepath.Join(dir, "version.bin"), b)
		_, _, err := ReadShard(ctx, p, ReadOptions{})
		wantErr(t, err, ErrBadMagic, p)
	})
	t.Run("width differs from declared", func(t *testing.T) {
		p := writeRaw(t, filepath.Join(dir, "wide.bin"), encode(t, FormatLLMC32, []int32{1}))
		_, _, err := ReadShard(ctx, p, ReadOptions{Format: FormatLLMC})
		wantErr(t, err, ErrBadMagic, p)
	})
	t.Run("negative count", func(t *testing.T) {
		b := slices.Clone(good)
		binary.LittleEndian.PutUint32(b[8:], 0xffffffff)
		p := writeRaw(t, filepath.Join(dir, "neg.bin"), b)
		_, _, err := ReadShard(ctx, p, ReadOptions{})
		wantErr(t, err, ErrBadMagic, p)
	})
	t.Run("token >= vocab", func(t *testing.T) {
		p := writeRaw(t, filepath.Join(dir, "vocab.bin"), good)
		_, _, err := ReadShard(ctx, p, ReadOptions{VocabSize: 257})
		wantErr(t, err, ErrBadToken, p, "300")
		if _, _, err := ReadShard(ctx, p, ReadOptions{VocabSize: 301}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("uint32 beyond int32", func(t *testing.T) {
		b := encode(t, FormatLLMC32, []int32{1, 2})
		binary.LittleEndian.PutUint32(b[HeaderBytes+4:], 0x80000000)
		p := writeRaw(t, filepath.Join(dir, "big.bin"), b)
		_, _, err := ReadShard(ctx, p, ReadOptions{})
		wantErr(t, err, ErrBadToken, p)
	})
	t.Run("checksum", func(t *testing.T) {
		p := writeRaw(t, filepath.Join(dir, "sum.bin"), good)
		sum := SHA256Hex(good)
		b := slices.Clone(good)
		b[HeaderBytes] ^= 0xff // now token 0 is out of vocab too: checksum wins
		writeRaw(t, p, b)
		_, _, err := ReadShard(ctx, p, ReadOptions{SHA256: sum, VocabSize: 257})
		wantErr(t, err, ErrChecksum, p, sum)
	})
	t.Run("missing", func(t *testing.T) {
		p := filepath.Join(dir, "nope.bin")
		_, _, err := ReadShard(ctx, p, ReadOptions{})
		wantErr(t, err, os.ErrNotExist, p)
	})
	t.Run("cancelled", func(t *testing.T) {
		p := writeRaw(t, filepath.Join(dir, "ok.bin"), good)
		c, cancel := context.WithCancel(ctx)
		cancel()
		_, _, err := ReadShard(c, p, ReadOptions{})
		wantErr(t, err, context.Canceled)
	})
}

func TestNanoGPTDetection(t *testing.T) {
	dir := t.TempDir()
	// Raw uint16 whose first two tokens spell the llm.c magic: detection reads an
	// llm.c header (and fails), a declared nanogpt format reads it raw.
	raw := encode(t, FormatNanoGPT, []int32{MagicUint16 & 0xffff, MagicUint16 >> 16, 9})
	p := writeRaw(t, filepath.Join(dir, "train.bin"), raw)
	if _, _, err := ReadShard(t.Context(), p, ReadOptions{}); err == nil {
		t.Fatal("detection accepted a magic-prefixed raw file")
	}
	tok, f, err := ReadShard(t.Context(), p, ReadOptions{Format: FormatNanoGPT})
	if err != nil || f != FormatNanoGPT || tok.Len() != 3 || tok.At(2) != 9 {
		t.Fatalf("got %v %v %v", tok.Int32(), f, err)
	}
}

// FuzzReadShard checks that no input makes the reader panic, and that whatever
// it accepts re-encodes to the same bytes.
func FuzzReadShard(f *testing.F) {
	f.Add([]byte{}, uint8(0))
	f.Add([]byte{1, 2, 3}, uint8(1))
	var buf bytes.Buffer
	EncodeShard(&buf, FormatLLMC, []int32{1, 2, 3})
	f.Add(buf.Bytes(), uint8(0))
	buf.Reset()
	EncodeShard(&buf, FormatLLMC32, []int32{1, 2, 3})
	f.Add(buf.Bytes(), uint8(2))
	f.Add(buf.Bytes()[:HeaderBytes+5], uint8(3))
	formats := []Format{FormatDetect, FormatLLMC, FormatLLMC32, FormatNanoGPT}
	f.Fuzz(func(t *testing.T, data []byte, fsel uint8) {
		p := filepath.Join(t.TempDir(), "f.bin")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		tok, format, err := ReadShard(context.Background(), p, ReadOptions{Format: formats[int(fsel)%len(formats)], VocabSize: int(fsel) * 300})
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := EncodeShard(&out, format, tok.Int32()); err != nil {
			t.Fatal(err)
		}
		if format == FormatNanoGPT || bytes.Equal(out.Bytes()[:12], data[:12]) {
			if !bytes.Equal(out.Bytes()[format.headerSize():], data[format.headerSize():]) {
				t.Fatal("re-encoded tokens differ")
			}
		}
	})
}

func TestReadShardRandomBytesNoPanic(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	dir := t.TempDir()
	good := encode(t, FormatLLMC, []int32{1, 2, 3, 4})
	for i := range 300 {
		b := slices.Clone(good)
		if i%2 == 0 {
			b = b[:r.IntN(len(b)+1)]
		}
		for range r.IntN(4) {
			if len(b) > 0 {
				b[r.IntN(len(b))] = byte(r.Uint32())
			}
		}
		p := writeRaw(t, filepath.Join(dir, "r.bin"), b)
		ReadShard(t.Context(), p, ReadOptions{Format: []Format{FormatDetect, FormatLLMC}[i%2], VocabSize: 10})
	}
}
