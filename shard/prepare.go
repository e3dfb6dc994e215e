package shard

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ringtrain/ringtrain/tokenizer"
)

// Defaults of PrepareOptions.
const (
	DefaultValFraction = 0.1
	DefaultMinShards   = 16
	DefaultShardTokens = 100_000_000
	DefaultName        = "corpus"
	// NoValidation as PrepareOptions.ValFraction puts every token in train.
	NoValidation = -1
)

// PrepareOptions configures Prepare. Zero fields take the documented defaults.
type PrepareOptions struct {
	// Inputs are files and directories. A directory is walked recursively in
	// lexical order; entries whose name starts with "." are skipped there, as is
	// OutDir if it lies inside. Inputs are used in the order given; a file named
	// twice is used once. Files named *.jsonl or *.ndjson hold one JSON object a
	// line, whose string field "text" is a document (blank lines are skipped);
	// every other regular file is one document, its whole content.
	Inputs []string
	// Tokenizer encodes the documents. It must be safe for concurrent use.
	Tokenizer tokenizer.Tokenizer
	// TokenizerJSON is the marshalled tokenizer. It is written to
	// OutDir/tokenizer.json and its sha256 recorded in the manifest. Required.
	TokenizerJSON []byte
	// OutDir receives the shards, tokenizer.json and manifest.json. It is created
	// if missing.
	OutDir string
	// Name prefixes the shard files: <Name>_train_000000.bin, <Name>_val_000000.bin
	// (llm.c's naming, so the directory also opens without its manifest). Letters,
	// digits, '.', '_' and '-' only. Default "corpus".
	Name string
	// ValFraction is the share of the token stream, taken from its end, that goes
	// to validation. 0 means DefaultValFraction; NoValidation means none.
	ValFraction float64
	// MinShards is the least number of train shards (default 16), so that up to
	// that many data streams can be used. Train tokens are shared about equally.
	MinShards int
	// ShardTokens is the most tokens in one shard (default 100M, as llm.c); more
	// shards are written if needed. At most MaxShardTokens.
	ShardTokens int64
	// Workers is the number of goroutines that encode documents; 0 means
	// GOMAXPROCS. The output does not depend on it.
	Workers int
	// Overwrite allows OutDir to hold a dataset already. It is replaced: the old
	// manifest is removed first, and shards with this Name that the new manifest
	// does not list are removed at the end. Without it Prepare refuses such a
	// directory (ErrDatasetExists, also fs.ErrExist).
	Overwrite bool
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

var validName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

func (o *PrepareOptions) setDefaults() error {
	if o.Tokenizer == nil {
		return fmt.Errorf("%w: Tokenizer is nil", ErrBadOptions)
	}
	if len(o.TokenizerJSON) == 0 {
		return fmt.Errorf("%w: TokenizerJSON is empty", ErrBadOptions)
	}
	if o.OutDir == "" {
		return fmt.Errorf("%w: OutDir is empty", ErrBadOptions)
	}
	if len(o.Inputs) == 0 {
		return fmt.Errorf("%w: no Inputs", ErrBadOptions)
	}
	if o.Name == "" {
		o.Name = DefaultName
	}
	if !validName.MatchString(o.Name) {
		return fmt.Errorf("%w: Name=%q may hold only letters, digits, '.', '_' and '-'", ErrBadOptions, o.Name)
	}
	switch {
	case o.ValFraction == 0:
		o.ValFraction = DefaultValFraction
	case o.ValFraction == NoValidation:
	case !(o.ValFraction > 0 && o.ValFraction < 1):
		return fmt.Errorf("%w: ValFraction=%v must be in (0, 1), 0 for the default %v, or NoValidation", ErrBadOptions, o.ValFraction, DefaultValFraction)
	}
	if o.MinShards == 0 {
		o.MinShards = DefaultMinShards
	}
	if o.MinShards < 1 {
		return fmt.Errorf("%w: MinShards=%d must be >= 1", ErrBadOptions, o.MinShards)
	}
	if o.ShardTokens == 0 {
		o.ShardTokens = DefaultShardTokens
	}
	if o.ShardTokens < 1 || o.ShardTokens > MaxShardTokens {
		return fmt.Errorf("%w: ShardTokens=%d must be in [1, %d]", ErrBadOptions, o.ShardTokens, MaxShardTokens)
	}
	if o.Workers == 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Workers < 1 {
		return fmt.Errorf("%w: Workers=%d must be >= 1", ErrBadOptions, o.Workers)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	v, eot := o.Tokenizer.VocabSize(), o.Tokenizer.EOT()
	if v < 1 || int64(v) > int64(MaxShardTokens)+1 {
		return fmt.Errorf("%w: tokenizer vocab size %d", ErrBadOptions, v)
	}
	if eot < 0 || eot >= v {
		return fmt.Errorf("%w: tokenizer EOT id %d is outside its vocabulary [0, %d)", ErrBadOptions, eot, v)
	}
	return nil
}

// Prepare tokenizes the input documents into a dataset directory and returns its
// manifest.
//
// Every document is encoded and preceded by the tokenizer's EOT token, as llm.c
// does, and the results are concatenated in input order into one token stream
// (documents with empty text are skipped). The first (1-ValFraction) of the stream,
// floor(n*(1-ValFraction)) tokens, is the train split and the rest the validation
// split, as nanoGPT splits tiny shakespeare 90/10. The train split is cut into
// max(MinShards, ceil(train/ShardTokens)) shards of about equal size (it must
// hold at least that many tokens, else ErrTooFewTokens), the validation split into
// ceil(val/ShardTokens). Shards are llm.c files, uint16 when the vocabulary has at
// most 65536 ids, uint32 otherwise.
//
// Encoding runs on Workers goroutines; the output bytes depend only on the
// inputs, the tokenizer and the options other than Workers and Logger. The token
// stream is spooled to a temporary file in OutDir, so memory stays bounded and
// OutDir temporarily needs about twice the dataset's size. Each file is written
// atomically (temporary file, fsync, rename), tokenizer.json after the shards and
// manifest.json last, so a directory with a manifest is always complete.
//
// Errors: an invalid option is ErrBadOptions; a bad JSONL line ErrBadDocument
// naming the file and line; an id the tokenizer returns outside its vocabulary
// ErrBadToken naming the document. Prepare returns ctx's error soon after ctx
// ends, leaving no manifest behind (finished shards may remain).
func Prepare(ctx context.Context, opts PrepareOptions) (*Manifest, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("shard: %w", err)
	}
	if err := checkOutDir(opts.OutDir, opts.Name, opts.Overwrite); err != nil {
		return nil, err
	}
	files, err := collectInputs(opts.Inputs, opts.OutDir)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: no input files in %v", ErrBadOptions, opts.Inputs)
	}
	log.Info("prepare: reading inputs", "files", len(files), "out", opts.OutDir)

	vocab := opts.Tokenizer.VocabSize()
	format := FormatForVocab(vocab)
	spool, err := os.CreateTemp(opts.OutDir, ".prepare-stream-*")
	if err != nil {
		return nil, fmt.Errorf("shard: %w", err)
	}
	defer func() {
		spool.Close()
		os.Remove(spool.Name())
	}()
	enc := &streamEncoder{tok: opts.Tokenizer, vocab: vocab, width: format.Width(), w: bufio.NewWriterSize(spool, 1<<20), workers: opts.Workers}
	if err := enc.run(ctx, files); err != nil {
		return nil, err
	}
	if err := enc.w.Flush(); err != nil {
		return nil, fmt.Errorf("shard: writing %s: %w", spool.Name(), err)
	}
	n := enc.tokens
	log.Info("prepare: tokenized", "documents", enc.docs, "tokens", n)

	nTrain := n
	if opts.ValFraction != NoValidation {
		nTrain = int64(float64(n) * (1 - opts.ValFraction))
	}
	nVal := n - nTrain
	k := max(int64(opts.MinShards), ceilDiv(nTrain, opts.ShardTokens))
	if nTrain < k {
		return nil, fmt.Errorf("%w: the train split has %d tokens, too few for %d shards (MinShards=%d)", ErrTooFewTokens, nTrain, k, opts.MinShards)
	}
	if opts.Overwrite {
		if err := os.Remove(filepath.Join(opts.OutDir, ManifestFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("shard: %w", err)
		}
	}

	m := &Manifest{
		Version: ManifestVersion,
		EOT:     opts.Tokenizer.EOT(),
		Tokenizer: TokenizerInfo{
			Name:      opts.Tokenizer.Name(),
			VocabSize: vocab,
			SHA256:    SHA256Hex(opts.TokenizerJSON),
			File:      TokenizerFile,
		},
		Train: []ShardInfo{},
		Val:   []ShardInfo{},
	}
	split := []struct {
		name          string
		first, tokens int64
		shards        int64
		dst           *[]ShardInfo
	}{
		{"train", 0, nTrain, k, &m.Train},
		{"val", nTrain, nVal, ceilDiv(nVal, opts.ShardTokens), &m.Val},
	}
	for _, sp := range split {
		pos := sp.first
		for i := range sp.shards {
			cnt := sp.tokens / sp.shards
			if i < sp.tokens%sp.shards {
				cnt++
			}
			name := fmt.Sprintf("%s_%s_%06d.bin", opts.Name, sp.name, i)
			path := filepath.Join(opts.OutDir, name)
			w := int64(format.Width())
			src := io.NewSectionReader(spool, pos*w, cnt*w)
			sum, err := writeFileAtomic(ctx, path, func(dst io.Writer) error {
				if _, err := dst.Write(encodeHeader(format, cnt)); err != nil {
					return err
				}
				_, err := io.Copy(dst, ctxReader{ctx, src})
				return err
			})
			if err != nil {
				return nil, err
			}
			*sp.dst = append(*sp.dst, ShardInfo{File: name, Tokens: cnt, SHA256: sum, Format: format})
			log.Debug("prepare: wrote shard", "file", name, "tokens", cnt)
			pos += cnt
		}
	}
	if err := finishDataset(ctx, opts.OutDir, opts.Name, opts.TokenizerJSON, opts.Overwrite, m); err != nil {
		return nil, err
	}
	log.Info("prepare: done", "train_tokens", nTrain, "train_shards", len(m.Train), "val_tokens", nVal, "val_shards", len(m.Val), "format", format)
	return m, nil
}

// finishDataset writes the tokenizer and then the manifest of a dataset whose shards
// are written to outDir, and with overwrite removes the shards of an earlier dataset
// called name that m does not list. The manifest comes last: a directory with one is
// whole.
func finishDataset(ctx context.Context, outDir, name string, tokenizerJSON []byte, overwrite bool, m *Manifest) error {
	if _, err := writeFileAtomic(ctx, filepath.Join(outDir, TokenizerFile), func(w io.Writer) error {
		_, err := w.Write(tokenizerJSON)
		return err
	}); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := WriteManifest(outDir, m); err != nil {
		return err
	}
	if overwrite {
		return removeStaleShards(outDir, name, m)
	}
	return nil
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// shardGlobs returns the glob patterns of the shard files of name.
func shardGlobs(dir, name string) []string {
	var globs []string
	for _, ext := range []string{".bin", ".mask", ".rows"} { // shards and the sidecars of SFT shards
		globs = append(globs, filepath.Join(dir, name+"_train_*"+ext), filepath.Join(dir, name+"_val_*"+ext))
	}
	return globs
}

// checkOutDir refuses a directory holding a dataset unless overwrite is set.
func checkOutDir(dir, name string, overwrite bool) error {
	if overwrite {
		return nil
	}
	found := ""
	if _, err := os.Stat(filepath.Join(dir, ManifestFile)); err == nil {
		found = filepath.Join(dir, ManifestFile)
	}
	for _, g := range shardGlobs(dir, name) {
		if found != "" {
			break
		}
		if ms, _ := filepath.Glob(g); len(ms) > 0 {
			found = ms[0]
		}
	}
	if found != "" {
		return fmt.Errorf("%w: %s: %w", ErrDatasetExists, found, fs.ErrExist)
	}
	return nil
}

// removeStaleShards removes shard files of name that m does not list.
func removeStaleShards(dir, name string, m *Manifest) error {
	keep := map[string]bool{}
	for _, s := range append(slices.Clone(m.Train), m.Val...) {
		keep[s.File] = true
		for _, sc := range []*SidecarInfo{s.Mask, s.Rows, s.Segments} {
			if sc != nil {
				keep[sc.File] = true
			}
		}
	}
	for _, g := range shardGlobs(dir, name) {
		ms, _ := filepath.Glob(g)
		for _, p := range ms {
			if !keep[filepath.Base(p)] {
				if err := os.Remove(p); err != nil {
					return fmt.Errorf("shard: removing stale shard: %w", err)
				}
			}
		}
	}
	return nil
}

// collectInputs expands inputs into the list of files to read (see
// PrepareOptions.Inputs), skipping outDir.
func collectInputs(inputs []string, outDir string) ([]string, error) {
	outAbs, err := filepath.Abs(outDir)
	if err != nil {
		return nil, fmt.Errorf("shard: %w", err)
	}
	seen := map[string]bool{}
	var files []string
	add := func(p string) {
		c := filepath.Clean(p)
		if !seen[c] {
			seen[c] = true
			files = append(files, p)
		}
	}
	for _, in := range inputs {
		st, err := os.Stat(in)
		if err != nil {
			return nil, fmt.Errorf("shard: input: %w", err)
		}
		if st.Mode().IsRegular() {
			add(in)
			continue
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("%w: input %s is neither a regular file nor a directory", ErrBadOptions, in)
		}
		err = filepath.WalkDir(in, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return fmt.Errorf("shard: input: %w", err)
			}
			if p != in && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() {
				if a, err := filepath.Abs(p); err == nil && a == outAbs {
					return filepath.SkipDir
				}
				return nil
			}
			if d.Type()&fs.ModeSymlink != 0 {
				st, err := os.Stat(p)
				if err != nil || !st.Mode().IsRegular() {
					return nil
				}
			} else if !d.Type().IsRegular() {
				return nil
			}
			add(p)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return files, nil
}

// document is one input document and where it came from.
type document struct {
	text string
	file string
	line int // 1-based line of a JSONL document; 0 for a whole file
}

func (d document) where() string {
	if d.line > 0 {
		return fmt.Sprintf("%s:%d", d.file, d.line)
	}
	return d.file
}

// isJSONL reports whether path holds one JSON document a line.
func isJSONL(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".jsonl", ".ndjson":
		return true
	}
	return false
}

// forEachDocument calls fn with every non-empty document of files, in order.
func forEachDocument(ctx context.Context, files []string, fn func(document) error) error {
	for _, path := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !isJSONL(path) {
			b, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("shard: input: %w", err)
			}
			if len(b) > 0 {
				if err := fn(document{text: string(b), file: path}); err != nil {
					return err
				}
			}
			continue
		}
		if err := forEachJSONLDocument(ctx, path, fn); err != nil {
			return err
		}
	}
	return nil
}

func forEachJSONLDocument(ctx context.Context, path string, fn func(document) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("shard: input: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	for line := 1; ; line++ {
		if line%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		b, err := r.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("shard: input: %s:%d: %w", path, line, err)
		}
		if t := bytes.TrimSpace(b); len(t) > 0 {
			var obj struct {
				Text *string `json:"text"`
			}
			if jerr := json.Unmarshal(t, &obj); jerr != nil {
				return fmt.Errorf("%w: %s:%d: not a JSON object with a string \"text\" field: %v", ErrBadDocument, path, line, jerr)
			}
			if obj.Text == nil {
				return fmt.Errorf("%w: %s:%d: no \"text\" field", ErrBadDocument, path, line)
			}
			if *obj.Text != "" {
				if err := fn(document{text: *obj.Text, file: path, line: line}); err != nil {
					return err
				}
			}
		}
		if err != nil { // io.EOF after the last line
			return nil
		}
	}
}

// streamEncoder encodes documents in batches on several goroutines and appends
// [EOT, ids...] per document to w in input order.
type streamEncoder struct {
	tok     tokenizer.Tokenizer
	vocab   int
	width   int
	w       *bufio.Writer
	workers int

	batch      []document
	batchBytes int
	docs       int64
	tokens     int64
}

const (
	batchDocs  = 1024
	batchBytes = 32 << 20
)

func (e *streamEncoder) run(ctx context.Context, files []string) error {
	err := forEachDocument(ctx, files, func(d document) error {
		e.batch = append(e.batch, d)
		e.batchBytes += len(d.text)
		if len(e.batch) >= batchDocs || e.batchBytes >= batchBytes {
			return e.flush(ctx)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return e.flush(ctx)
}

// flush encodes the pending batch and writes it.
func (e *streamEncoder) flush(ctx context.Context) error {
	docs := e.batch
	e.batch, e.batchBytes = e.batch[:0], 0
	if len(docs) == 0 {
		return nil
	}
	ids := make([][]int, len(docs))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(e.workers, len(docs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(docs) || ctx.Err() != nil {
					return
				}
				ids[i] = e.tok.Encode(docs[i].text)
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	var buf [4]byte
	put := func(v int) error {
		if e.width == 2 {
			binary.LittleEndian.PutUint16(buf[:], uint16(v))
		} else {
			binary.LittleEndian.PutUint32(buf[:], uint32(v))
		}
		_, err := e.w.Write(buf[:e.width])
		return err
	}
	for i, d := range docs {
		if err := put(e.tok.EOT()); err != nil {
			return fmt.Errorf("shard: writing token stream: %w", err)
		}
		for j, v := range ids[i] {
			if v < 0 || v >= e.vocab {
				return fmt.Errorf("%w: %s: tokenizer returned id %d at token %d, outside its vocabulary [0, %d)", ErrBadToken, d.where(), v, j, e.vocab)
			}
			if err := put(v); err != nil {
				return fmt.Errorf("shard: writing token stream: %w", err)
			}
		}
		e.tokens += int64(len(ids[i])) + 1
		e.docs++
	}
	return nil
}
