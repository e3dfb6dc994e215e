package shard

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// On-disk constants of llm.c's token shard format. A shard is a header of
// HeaderInts little-endian int32 values, then the tokens, little-endian:
//
//	header[0] magic    MagicUint16 (20240520) or MagicUint32 (20240801)
//	header[1] version  VersionUint16 (1) with MagicUint16, VersionUint32 (7) with MagicUint32
//	header[2] count    number of tokens that follow
//	header[3:] zero    (not checked on read, written as zero)
//
// nanoGPT's train.bin/val.bin are raw little-endian uint16 tokens with no header.
const (
	HeaderInts    = 256
	HeaderBytes   = HeaderInts * 4
	MagicUint16   = 20240520
	VersionUint16 = 1
	MagicUint32   = 20240801
	VersionUint32 = 7
	// MaxShardTokens is the most tokens one llm.c shard can hold (the header count
	// is an int32).
	MaxShardTokens = math.MaxInt32
)

// Format names a shard file layout. It is the "format" field of a manifest entry.
type Format string

// The shard formats this package reads and writes.
const (
	// FormatDetect is the empty Format: readers look at the first four bytes and
	// treat a known llm.c magic as FormatLLMC or FormatLLMC32, anything else as
	// FormatNanoGPT.
	FormatDetect Format = ""
	// FormatLLMC is llm.c's header with magic 20240520, version 1, uint16 tokens.
	FormatLLMC Format = "llmc"
	// FormatLLMC32 is llm.c's header with magic 20240801, version 7, uint32 tokens.
	FormatLLMC32 Format = "llmc32"
	// FormatNanoGPT is nanoGPT's headerless file of uint16 tokens.
	FormatNanoGPT Format = "nanogpt"
)

// formatAnyLLMC is an internal declared format: an llm.c header of either width
// is required (a file named like an llm.c shard), and the header picks the width.
const formatAnyLLMC Format = "llmc*"

// FormatForVocab returns the llm.c format that holds every id of a vocabulary of
// the given size: FormatLLMC up to 65536 ids, FormatLLMC32 beyond.
func FormatForVocab(vocabSize int) Format {
	if vocabSize <= 1<<16 {
		return FormatLLMC
	}
	return FormatLLMC32
}

// Width returns the bytes per token of the format, or 0 for FormatDetect and
// unknown formats.
func (f Format) Width() int {
	switch f {
	case FormatLLMC, FormatNanoGPT:
		return 2
	case FormatLLMC32:
		return 4
	}
	return 0
}

// headerSize returns the bytes before the first token.
func (f Format) headerSize() int64 {
	if f == FormatLLMC || f == FormatLLMC32 {
		return HeaderBytes
	}
	return 0
}

// valid reports whether f is a concrete, known format.
func (f Format) valid() bool { return f.Width() != 0 }

// maxID returns the largest token id the format can store and that fits an int32.
func (f Format) maxID() int64 {
	if f.Width() == 2 {
		return math.MaxUint16
	}
	return math.MaxInt32
}

// Tokens is a read-only run of token ids kept at the width of the shard it was
// read from (2 or 4 bytes a token), so a loaded uint16 shard takes half the memory
// of []int32. The zero value is empty. A Tokens value may be shared between
// goroutines; nothing in this package writes to one after returning it, and
// callers must not either.
type Tokens struct {
	u16 []uint16
	u32 []uint32
}

// TokensFromUint16 wraps ids without copying; the caller must not modify ids after.
func TokensFromUint16(ids []uint16) Tokens { return Tokens{u16: ids} }

// TokensFromUint32 wraps ids without copying; the caller must not modify ids after.
// Every id must be <= math.MaxInt32.
func TokensFromUint32(ids []uint32) Tokens { return Tokens{u32: ids} }

// Len returns the number of tokens.
func (t Tokens) Len() int {
	if t.u32 != nil {
		return len(t.u32)
	}
	return len(t.u16)
}

// Width returns 2 or 4, the bytes per token held in memory.
func (t Tokens) Width() int {
	if t.u32 != nil {
		return 4
	}
	return 2
}

// At returns token i. It panics if i is out of range, like a slice index.
func (t Tokens) At(i int) int32 {
	if t.u32 != nil {
		return int32(t.u32[i])
	}
	return int32(t.u16[i])
}

// CopyTo copies tokens [start, start+len(dst)) into dst. It panics if that range
// is out of bounds, like a slice expression.
func (t Tokens) CopyTo(dst []int32, start int) {
	if t.u32 != nil {
		src := t.u32[start : start+len(dst)]
		for i, v := range src {
			dst[i] = int32(v)
		}
		return
	}
	src := t.u16[start : start+len(dst)]
	for i, v := range src {
		dst[i] = int32(v)
	}
}

// Int32 returns a new []int32 holding all tokens; the caller owns it.
func (t Tokens) Int32() []int32 {
	out := make([]int32, t.Len())
	t.CopyTo(out, 0)
	return out
}

// EncodeShard writes tokens to w in the given format (not FormatDetect). Every
// token is checked first, so an ErrBadToken error writes nothing.
func EncodeShard(w io.Writer, format Format, tokens []int32) error {
	if !format.valid() {
		return fmt.Errorf("%w: format=%q", ErrBadOptions, format)
	}
	if format.headerSize() > 0 && int64(len(tokens)) > MaxShardTokens {
		return fmt.Errorf("%w: %d tokens do not fit one llm.c shard (max %d)", ErrBadOptions, len(tokens), MaxShardTokens)
	}
	limit := format.maxID()
	for i, v := range tokens {
		if v < 0 || int64(v) > limit {
			return fmt.Errorf("%w: token %d at position %d does not fit format %s", ErrBadToken, v, i, format)
		}
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	if format.headerSize() > 0 {
		if _, err := bw.Write(encodeHeader(format, int64(len(tokens)))); err != nil {
			return err
		}
	}
	var buf [4]byte
	width := format.Width()
	for _, v := range tokens {
		if width == 2 {
			binary.LittleEndian.PutUint16(buf[:2], uint16(v))
		} else {
			binary.LittleEndian.PutUint32(buf[:4], uint32(v))
		}
		if _, err := bw.Write(buf[:width]); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// encodeHeader returns the 1024-byte llm.c header for count tokens of format.
func encodeHeader(format Format, count int64) []byte {
	hdr := make([]byte, HeaderBytes)
	magic, version := uint32(MagicUint16), uint32(VersionUint16)
	if format == FormatLLMC32 {
		magic, version = MagicUint32, VersionUint32
	}
	binary.LittleEndian.PutUint32(hdr[0:], magic)
	binary.LittleEndian.PutUint32(hdr[4:], version)
	binary.LittleEndian.PutUint32(hdr[8:], uint32(count))
	return hdr
}

// WriteShardFile writes tokens to path in the given format atomically (a temporary
// file in the same directory, fsync, rename, fsync of the directory) and returns
// the hex sha256 of the file's bytes.
func WriteShardFile(path string, format Format, tokens []int32) (sha256Hex string, err error) {
	return writeFileAtomic(context.Background(), path, func(w io.Writer) error {
		return EncodeShard(w, format, tokens)
	})
}

// ReadOptions says what ReadShard expects of a file. The zero value detects the
// format and checks only the file's structure.
type ReadOptions struct {
	// Format is the declared format; FormatDetect looks at the magic. A declared
	// llm.c format must match the header, and FormatNanoGPT reads the file as raw
	// uint16 even if it starts with an llm.c magic.
	Format Format
	// VocabSize, when > 0, makes every token id >= VocabSize an ErrBadToken.
	VocabSize int
	// SHA256, when not empty, is the hex sha256 the file's bytes must have
	// (ErrChecksum otherwise). It is checked before token ids, so a corrupted file
	// reports ErrChecksum rather than a bad token.
	SHA256 string
}

// ReadShard reads the shard at path and returns its tokens (see Tokens for the
// in-memory form; the caller owns them) and the format it was read as. It never
// panics on bad input: structural problems are ErrTruncated or ErrBadMagic, a
// hash mismatch ErrChecksum, an id out of range ErrBadToken, each naming path.
// ReadShard checks ctx between chunks of about a megabyte.
func ReadShard(ctx context.Context, path string, opts ReadOptions) (Tokens, Format, error) {
	if err := ctx.Err(); err != nil {
		return Tokens{}, "", err
	}
	if opts.Format != FormatDetect && !opts.Format.valid() {
		return Tokens{}, "", fmt.Errorf("%w: %s: format=%q", ErrBadOptions, path, opts.Format)
	}
	f, err := os.Open(path)
	if err != nil {
		return Tokens{}, "", fmt.Errorf("shard: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Tokens{}, "", fmt.Errorf("shard: %w", err)
	}
	br := bufio.NewReaderSize(f, 1<<20)
	format, count, err := readHeaderFrom(br, path, st.Size(), opts.Format)
	if err != nil {
		return Tokens{}, "", err
	}
	var hasher hashWriter
	if opts.SHA256 != "" {
		hasher = sha256.New()
		if format.headerSize() > 0 {
			// The header was consumed by readHeaderFrom; hash it as it is on disk.
			hdr := make([]byte, HeaderBytes)
			if _, err := f.ReadAt(hdr, 0); err != nil {
				return Tokens{}, "", fmt.Errorf("%w: %s: re-reading header: %v", ErrTruncated, path, err)
			}
			hasher.Write(hdr)
		}
	}
	tok, bad, err := readBody(ctx, br, hasher, path, format, count, opts.VocabSize)
	if err != nil {
		return Tokens{}, "", err
	}
	if hasher != nil {
		got := hex.EncodeToString(hasher.Sum(nil))
		if got != opts.SHA256 {
			return Tokens{}, "", fmt.Errorf("%w: %s: sha256 is %s, manifest says %s", ErrChecksum, path, got, opts.SHA256)
		}
	}
	if bad != nil {
		return Tokens{}, "", bad
	}
	return tok, format, nil
}

type hashWriter interface {
	io.Writer
	Sum(b []byte) []byte
}

// readHeaderFrom decides the format of a file of size bytes, consumes its header
// from br, checks the file size against it and returns the token count.
func readHeaderFrom(br *bufio.Reader, path string, size int64, declared Format) (Format, int64, error) {
	format := declared
	if format == formatAnyLLMC && size < 4 {
		return "", 0, fmt.Errorf("%w: %s: %d bytes is shorter than the %d-byte llm.c header", ErrTruncated, path, size, HeaderBytes)
	}
	if format != FormatNanoGPT && size >= 4 {
		b, err := br.Peek(4)
		if err != nil {
			return "", 0, fmt.Errorf("%w: %s: reading magic: %v", ErrTruncated, path, err)
		}
		magic := binary.LittleEndian.Uint32(b)
		known := magic == MagicUint16 || magic == MagicUint32
		switch {
		case format == FormatDetect && known:
			format = FormatLLMC
		case format == FormatDetect:
			format = FormatNanoGPT
		case !known:
			return "", 0, fmt.Errorf("%w: %s: magic %d is neither %d nor %d (declared format %s)", ErrBadMagic, path, magic, MagicUint16, MagicUint32, declared)
		}
	} else if format == FormatDetect {
		format = FormatNanoGPT
	}
	if format == FormatNanoGPT {
		if size%2 != 0 {
			return "", 0, fmt.Errorf("%w: %s: %d bytes is not a whole number of uint16 tokens", ErrTruncated, path, size)
		}
		return format, size / 2, nil
	}
	if size < HeaderBytes {
		return "", 0, fmt.Errorf("%w: %s: %d bytes is shorter than the %d-byte llm.c header", ErrTruncated, path, size, HeaderBytes)
	}
	hdr := make([]byte, HeaderBytes)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return "", 0, errEOFToTruncated(path, err)
	}
	magic := binary.LittleEndian.Uint32(hdr[0:])
	version := binary.LittleEndian.Uint32(hdr[4:])
	count := int64(int32(binary.LittleEndian.Uint32(hdr[8:])))
	var got Format
	switch {
	case magic == MagicUint16 && version == VersionUint16:
		got = FormatLLMC
	case magic == MagicUint32 && version == VersionUint32:
		got = FormatLLMC32
	default:
		return "", 0, fmt.Errorf("%w: %s: magic %d with version %d (want %d/%d or %d/%d)", ErrBadMagic, path, magic, version, MagicUint16, VersionUint16, MagicUint32, VersionUint32)
	}
	if declared != FormatDetect && declared != formatAnyLLMC && got != declared {
		return "", 0, fmt.Errorf("%w: %s: header is format %s, expected %s", ErrBadMagic, path, got, declared)
	}
	if count < 0 {
		return "", 0, fmt.Errorf("%w: %s: negative token count %d in header", ErrBadMagic, path, count)
	}
	body := size - HeaderBytes
	want := count * int64(got.Width())
	if body < want {
		return "", 0, fmt.Errorf("%w: %s: header says %d tokens (%d bytes) but only %d bytes follow it", ErrTruncated, path, count, want, body)
	}
	if body > want {
		return "", 0, fmt.Errorf("%w: %s: header says %d tokens (%d bytes) but %d bytes follow it", ErrTruncated, path, count, want, body)
	}
	return got, count, nil
}

// readBody reads count tokens of format from r, hashing the bytes into h when h
// is not nil. A token out of range does not stop the read (the checksum is
// checked first by the caller); it comes back as bad, naming the first offender.
func readBody(ctx context.Context, r io.Reader, h hashWriter, path string, format Format, count int64, vocabSize int) (tok Tokens, bad error, err error) {
	width := format.Width()
	limit := format.maxID()
	if vocabSize > 0 && int64(vocabSize)-1 < limit {
		limit = int64(vocabSize) - 1
	}
	if width == 2 {
		tok.u16 = make([]uint16, count)
	} else {
		tok.u32 = make([]uint32, count)
	}
	const chunkTokens = 1 << 18
	buf := make([]byte, min(count, chunkTokens)*int64(width))
	for done := int64(0); done < count; {
		if err := ctx.Err(); err != nil {
			return Tokens{}, nil, err
		}
		n := min(count-done, chunkTokens)
		b := buf[:n*int64(width)]
		if _, err := io.ReadFull(r, b); err != nil {
			return Tokens{}, nil, errEOFToTruncated(path, err)
		}
		if h != nil {
			h.Write(b)
		}
		for i := range n {
			var v int64
			if width == 2 {
				x := binary.LittleEndian.Uint16(b[2*i:])
				tok.u16[done+i] = x
				v = int64(x)
			} else {
				x := binary.LittleEndian.Uint32(b[4*i:])
				tok.u32[done+i] = x
				v = int64(x)
			}
			if v > limit && bad == nil {
				bad = fmt.Errorf("%w: %s: token %d at position %d is >= %d", ErrBadToken, path, v, done+i, limit+1)
				if vocabSize > 0 {
					bad = fmt.Errorf("%w: %s: token %d at position %d is >= vocabulary size %d", ErrBadToken, path, v, done+i, vocabSize)
				}
			}
		}
		done += n
	}
	return tok, bad, nil
}

// errEOFToTruncated maps an unexpected end of file to ErrTruncated naming path.
func errEOFToTruncated(path string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %s: %v", ErrTruncated, path, err)
	}
	return fmt.Errorf("shard: %s: %w", path, err)
}
