package shard

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// File names and version of a prepared dataset directory.
const (
	// ManifestFile is the manifest's name inside a dataset directory.
	ManifestFile = "manifest.json"
	// TokenizerFile is the marshalled tokenizer's name inside a dataset directory.
	TokenizerFile = "tokenizer.json"
	// ManifestVersion is the manifest version this package writes and reads.
	ManifestVersion = 1
)

// Manifest describes a prepared dataset: the tokenizer it was encoded with and
// its train and validation shards, in order. It is stored as manifest.json:
//
//	{
//	  "version": 1,
//	  "tokenizer": {"name": "bpe", "vocab_size": 512, "sha256": "…", "file": "tokenizer.json"},
//	  "eot": 256,
//	  "train_shards": [{"file": "corpus_train_000000.bin", "tokens": 21000, "sha256": "…", "format": "llmc"}, …],
//	  "val_shards":   [{"file": "corpus_val_000000.bin", "tokens": 30000, "sha256": "…", "format": "llmc"}]
//	}
//
// A Manifest returned by this package must be treated as read-only.
type Manifest struct {
	Version   int           `json:"version"`
	Tokenizer TokenizerInfo `json:"tokenizer"`
	// EOT is the end-of-text id placed before every document, or -1 if unknown
	// (a computed manifest).
	EOT   int         `json:"eot"`
	Train []ShardInfo `json:"train_shards"`
	Val   []ShardInfo `json:"val_shards"`
	// SFT is set for an instruction dataset made by PrepareSFT (see SFTInfo): one
	// example per row, a loss mask beside the tokens. Nil for plain text.
	SFT *SFTInfo `json:"sft,omitempty"`
	// Computed is true for a manifest Open made up from bare .bin files; such a
	// manifest has no checksums and may lack the tokenizer. It is not stored.
	Computed bool `json:"-"`
}

// TokenizerInfo identifies the tokenizer a dataset was encoded with.
type TokenizerInfo struct {
	// Name is the tokenizer kind (tokenizer.Tokenizer.Name).
	Name string `json:"name"`
	// VocabSize is the number of ids, special tokens included; 0 if unknown.
	VocabSize int `json:"vocab_size"`
	// SHA256 is the hex sha256 of the marshalled tokenizer; "" if unknown.
	SHA256 string `json:"sha256"`
	// File is the marshalled tokenizer's name relative to the dataset directory;
	// "" if the directory holds none.
	File string `json:"file"`
}

// ShardInfo describes one shard file.
type ShardInfo struct {
	// File is the shard's name relative to the dataset directory.
	File string `json:"file"`
	// Tokens is the number of tokens in the shard.
	Tokens int64 `json:"tokens"`
	// SHA256 is the hex sha256 of the whole file, header included; "" in a
	// computed manifest.
	SHA256 string `json:"sha256"`
	// Format is the file layout.
	Format Format `json:"format"`
	// Mask and Rows are the sidecars of a shard of an SFT dataset (see SFTInfo);
	// nil otherwise.
	Mask *SidecarInfo `json:"mask,omitempty"`
	Rows *SidecarInfo `json:"rows,omitempty"`
	// Segments is the sidecar of a shard of a packed SFT dataset (see SFTInfo.Packed);
	// nil otherwise.
	Segments *SidecarInfo `json:"segments,omitempty"`
}

// TrainTokens returns the token count of each train shard, in manifest order; the
// caller owns the slice. It is what NewSampler takes.
func (m *Manifest) TrainTokens() []int64 { return shardTokens(m.Train) }

// ValTokens returns the token count of each validation shard, in manifest order;
// the caller owns the slice. It is what NewValSampler takes.
func (m *Manifest) ValTokens() []int64 { return shardTokens(m.Val) }

func shardTokens(s []ShardInfo) []int64 {
	out := make([]int64, len(s))
	for i, si := range s {
		out[i] = si.Tokens
	}
	return out
}

// Validate checks a stored manifest: the version, the tokenizer fields, the EOT
// id, and every shard entry (a local, unique file name, a known format wide enough
// for the vocabulary, a token count that fits it, a 64-digit hex sha256). The
// error wraps ErrBadManifest.
func (m *Manifest) Validate() error {
	if m.Version != ManifestVersion {
		return fmt.Errorf("%w: version=%d, this build reads version %d", ErrBadManifest, m.Version, ManifestVersion)
	}
	t := m.Tokenizer
	if t.VocabSize < 1 {
		return fmt.Errorf("%w: tokenizer.vocab_size=%d must be >= 1", ErrBadManifest, t.VocabSize)
	}
	if !isHexSHA256(t.SHA256) {
		return fmt.Errorf("%w: tokenizer.sha256=%q is not 64 hex digits", ErrBadManifest, t.SHA256)
	}
	if t.File != "" && !filepath.IsLocal(t.File) {
		return fmt.Errorf("%w: tokenizer.file=%q is not a path inside the dataset directory", ErrBadManifest, t.File)
	}
	if m.EOT < 0 || m.EOT >= t.VocabSize {
		return fmt.Errorf("%w: eot=%d is outside the vocabulary [0, %d)", ErrBadManifest, m.EOT, t.VocabSize)
	}
	if len(m.Train)+len(m.Val) == 0 {
		return fmt.Errorf("%w: no train_shards and no val_shards", ErrBadManifest)
	}
	seen := map[string]bool{t.File: t.File != ""}
	for _, split := range []struct {
		name   string
		shards []ShardInfo
	}{{"train_shards", m.Train}, {"val_shards", m.Val}} {
		for i, s := range split.shards {
			where := fmt.Sprintf("%s[%d]", split.name, i)
			if !filepath.IsLocal(s.File) {
				return fmt.Errorf("%w: %s.file=%q is not a path inside the dataset directory", ErrBadManifest, where, s.File)
			}
			if seen[filepath.Clean(s.File)] {
				return fmt.Errorf("%w: %s.file=%q is listed twice", ErrBadManifest, where, s.File)
			}
			seen[filepath.Clean(s.File)] = true
			if !s.Format.valid() {
				return fmt.Errorf("%w: %s.format=%q (want %s, %s or %s)", ErrBadManifest, where, s.Format, FormatLLMC, FormatLLMC32, FormatNanoGPT)
			}
			if s.Format.Width() == 2 && t.VocabSize > 1<<16 {
				return fmt.Errorf("%w: %s.format=%s holds uint16 ids but tokenizer.vocab_size=%d", ErrBadManifest, where, s.Format, t.VocabSize)
			}
			if s.Tokens < 0 || (s.Format.headerSize() > 0 && s.Tokens > MaxShardTokens) {
				return fmt.Errorf("%w: %s.tokens=%d out of range", ErrBadManifest, where, s.Tokens)
			}
			if !isHexSHA256(s.SHA256) {
				return fmt.Errorf("%w: %s.sha256=%q is not 64 hex digits", ErrBadManifest, where, s.SHA256)
			}
			if err := m.validateSidecars(where, s, seen); err != nil {
				return err
			}
		}
	}
	return nil
}

func isHexSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// ReadManifest reads and validates the manifest at path. Errors wrap
// ErrBadManifest (or the fs error) and name path.
func ReadManifest(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("shard: %w", err)
	}
	return parseManifest(b, path)
}

// parseManifest decodes and validates the bytes of a manifest read from path (named
// in errors).
func parseManifest(b []byte, path string) (*Manifest, error) {
	// Unknown fields are ignored so tools may add their own; the version guards
	// changes of meaning.
	dec := json.NewDecoder(bytes.NewReader(b))
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadManifest, path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: %s: trailing data after the JSON object", ErrBadManifest, path)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &m, nil
}

// WriteManifest writes m as dir/manifest.json atomically. The output is
// deterministic: the same manifest gives the same bytes.
func WriteManifest(dir string, m *Manifest) error {
	b, err := encodeManifest(m)
	if err != nil {
		return err
	}
	_, err = writeFileAtomic(context.Background(), filepath.Join(dir, ManifestFile), func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
	return err
}

// encodeManifest validates m and returns the bytes WriteManifest writes.
func encodeManifest(m *Manifest) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("shard: %w", err)
	}
	return append(b, '\n'), nil
}

// Split names one half of a dataset.
type Split string

// The two splits of a dataset.
const (
	SplitTrain Split = "train"
	SplitVal   Split = "val"
)

// Dataset is an opened dataset directory. It holds only the manifest; shards are
// read on demand, whole by LoadShard or row by row by a Loader. A Dataset is
// immutable and safe for concurrent use.
type Dataset struct {
	dir       string
	man       *Manifest
	vocabSize int // ids must be below this on load; 0: not checked
}

// OpenOptions tunes Open for a directory without a manifest; a directory with a
// manifest.json ignores them (the manifest says everything).
type OpenOptions struct {
	// Format forces the format of every bare .bin file, for example FormatNanoGPT
	// for raw uint16 files that happen to start with an llm.c magic. The default
	// requires an llm.c header in files named like llm.c shards and detects the
	// format of train.bin and val.bin.
	Format Format
	// VocabSize, when > 0, is recorded in the computed manifest and makes every
	// token id >= VocabSize an ErrBadToken on load.
	VocabSize int
}

// Open opens a dataset directory with default OpenOptions.
//
// With a manifest.json, Open reads and validates it; LoadShard then checks every
// shard against it: the sha256 of the file (ErrChecksum), its structure
// (ErrTruncated, ErrBadMagic), its token count and that every id is below the
// manifest's vocabulary size (ErrBadToken), and CheckTokenizer compares the
// tokenizer's sha256 and vocabulary size.
//
// Without one, Open computes a manifest (Manifest.Computed) from bare .bin files
// in dir (not in subdirectories): llm.c style names *_train_*.bin and *_val_*.bin,
// in name order, which must carry an llm.c header; or, if there are none,
// nanoGPT's train.bin and val.bin, whose format is detected from the magic. Open
// reads each file's header and checks its size against it (ErrTruncated,
// ErrBadMagic). Not checked then: checksums (there are none), token ids (unless
// OpenOptions.VocabSize is set), and the tokenizer: its vocabulary size is unknown
// unless given, and its sha256 is known only if dir holds a tokenizer.json, which
// is then hashed. EOT is -1.
func Open(dir string) (*Dataset, error) {
	return OpenWithOptions(dir, OpenOptions{})
}

// OpenWithOptions is Open with options for directories without a manifest.
func OpenWithOptions(dir string, opts OpenOptions) (*Dataset, error) {
	if opts.Format != FormatDetect && !opts.Format.valid() {
		return nil, fmt.Errorf("%w: OpenOptions.Format=%q", ErrBadOptions, opts.Format)
	}
	if opts.VocabSize < 0 {
		return nil, fmt.Errorf("%w: OpenOptions.VocabSize=%d", ErrBadOptions, opts.VocabSize)
	}
	mpath := filepath.Join(dir, ManifestFile)
	m, err := ReadManifest(mpath)
	switch {
	case err == nil:
		return &Dataset{dir: dir, man: m, vocabSize: m.Tokenizer.VocabSize}, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	m, err = computeManifest(dir, opts)
	if err != nil {
		return nil, err
	}
	return &Dataset{dir: dir, man: m, vocabSize: opts.VocabSize}, nil
}

// computeManifest builds a manifest from the bare .bin files in dir.
func computeManifest(dir string, opts OpenOptions) (*Manifest, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("shard: %w", err)
	}
	var train, val []string
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() && e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		if ok, _ := filepath.Match("*_train_*.bin", name); ok {
			train = append(train, name)
		} else if ok, _ := filepath.Match("*_val_*.bin", name); ok {
			val = append(val, name)
		}
	}
	declared := opts.Format
	if len(train)+len(val) > 0 {
		if declared == FormatDetect {
			declared = formatAnyLLMC
		}
	} else {
		for _, name := range []string{"train.bin", "val.bin"} {
			if st, err := os.Stat(filepath.Join(dir, name)); err == nil && st.Mode().IsRegular() {
				if name == "train.bin" {
					train = append(train, name)
				} else {
					val = append(val, name)
				}
			}
		}
	}
	if len(train)+len(val) == 0 {
		return nil, fmt.Errorf("%w: %s has no %s, no *_train_*.bin / *_val_*.bin and no train.bin / val.bin", ErrNoShards, dir, ManifestFile)
	}
	m := &Manifest{Version: ManifestVersion, EOT: -1, Computed: true}
	m.Tokenizer.VocabSize = opts.VocabSize
	for _, list := range []struct {
		names []string
		dst   *[]ShardInfo
	}{{train, &m.Train}, {val, &m.Val}} {
		for _, name := range list.names {
			format, count, err := statShard(filepath.Join(dir, name), declared)
			if err != nil {
				return nil, err
			}
			*list.dst = append(*list.dst, ShardInfo{File: name, Tokens: count, Format: format})
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, TokenizerFile)); err == nil {
		m.Tokenizer.File = TokenizerFile
		m.Tokenizer.SHA256 = SHA256Hex(b)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("shard: %w", err)
	}
	return m, nil
}

// statShard reads the header of the shard at path and checks the file size
// against it, returning the format and token count.
func statShard(path string, declared Format) (Format, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("shard: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", 0, fmt.Errorf("shard: %w", err)
	}
	return readHeaderFrom(bufio.NewReaderSize(f, HeaderBytes), path, st.Size(), declared)
}

// Dir returns the dataset directory as given to Open.
func (d *Dataset) Dir() string { return d.dir }

// Manifest returns the dataset's manifest (stored or computed). The caller must
// not modify it.
func (d *Dataset) Manifest() *Manifest { return d.man }

// Shards returns the shards of a split in order; the caller must not modify them.
func (d *Dataset) Shards(split Split) []ShardInfo {
	switch split {
	case SplitTrain:
		return d.man.Train
	case SplitVal:
		return d.man.Val
	}
	return nil
}

// TokenizerPath returns the path of the dataset's marshalled tokenizer, or "" if
// it has none.
func (d *Dataset) TokenizerPath() string {
	if d.man.Tokenizer.File == "" {
		return ""
	}
	return filepath.Join(d.dir, d.man.Tokenizer.File)
}

// CheckTokenizer reports whether the job's tokenizer, given by the hex sha256 of
// its marshalled form (see SHA256Hex) and its vocabulary size (the tokenizer's,
// not a padded model vocabulary), is the one the dataset was prepared with. A
// difference is ErrTokenizerMismatch naming the dataset and both tokenizers. A
// field unknown on either side ("" or 0: a computed manifest without
// tokenizer.json or VocabSize, or a caller that passes none) is not compared, so
// a computed manifest may pass without any check; Manifest().Computed tells.
func (d *Dataset) CheckTokenizer(sha256 string, vocabSize int) error {
	t := d.man.Tokenizer
	shaDiffers := t.SHA256 != "" && sha256 != "" && !strings.EqualFold(t.SHA256, sha256)
	vocabDiffers := t.VocabSize > 0 && vocabSize > 0 && t.VocabSize != vocabSize
	if shaDiffers || vocabDiffers {
		return fmt.Errorf("%w: dataset %s was prepared with tokenizer sha256 %s (vocab %d), the job's tokenizer has sha256 %s (vocab %d)",
			ErrTokenizerMismatch, d.dir, orUnknown(t.SHA256), t.VocabSize, orUnknown(sha256), vocabSize)
	}
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// LoadShard reads shard i of a split and checks it against the manifest (see
// Open). The caller owns the returned Tokens but must not modify them. Errors name
// the file. LoadShard blocks on disk I/O, checks ctx between chunks, and is safe
// for concurrent use.
func (d *Dataset) LoadShard(ctx context.Context, split Split, i int) (Tokens, error) {
	shards := d.Shards(split)
	if i < 0 || i >= len(shards) {
		return Tokens{}, fmt.Errorf("%w: %s shard %d of %d", ErrBadOptions, split, i, len(shards))
	}
	info := shards[i]
	path := filepath.Join(d.dir, info.File)
	tok, _, err := ReadShard(ctx, path, ReadOptions{Format: info.Format, VocabSize: d.vocabSize, SHA256: info.SHA256})
	if err != nil {
		return Tokens{}, err
	}
	if int64(tok.Len()) != info.Tokens {
		return Tokens{}, fmt.Errorf("%w: %s: manifest says %d tokens, file holds %d", ErrBadManifest, path, info.Tokens, tok.Len())
	}
	return tok, nil
}
