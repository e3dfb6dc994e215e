package shard

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"

	"github.com/ringtrain/ringtrain/chat"
	"github.com/ringtrain/ringtrain/tokenizer"
)

// SFTOptions configures PrepareSFT. Zero fields take the documented defaults.
type SFTOptions struct {
	// Inputs are JSONL files (or directories of them) of instruction rows in any shape
	// chat.ParseRow reads; blank lines are skipped.
	Inputs []string
	// ValInputs, when set, are the validation rows; otherwise every
	// round(1/ValFraction)-th example of Inputs is held out (see PrepareSFT).
	ValInputs []string
	// Tokenizer, TokenizerJSON, OutDir, Name, MinShards, Overwrite and Logger are as
	// in PrepareOptions.
	Tokenizer     tokenizer.Tokenizer
	TokenizerJSON []byte
	OutDir        string
	Name          string
	MinShards     int
	Overwrite     bool
	Logger        *slog.Logger
	// Columns maps row keys onto chat's fields; the zero value means
	// chat.DefaultColumns.
	Columns chat.Columns
	// Template names the chat template ("" means chat.Plain).
	Template string
	// TrainOnPrompt trains every token of an example, not only its answers.
	TrainOnPrompt bool
	// SeqLen is T: every example becomes one row of T+1 tokens. Required.
	SeqLen int
	// Overflow is the rule for an example of more than T+1 tokens: OverflowSkip (the
	// default) or OverflowTruncate.
	Overflow string
	// ValFraction is the share of examples held out when ValInputs is empty: 0 means
	// DefaultValFraction, NoValidation none.
	ValFraction float64
	// Pack fills each row with several whole examples (packRows), each shard's in
	// turn, and writes a segments sidecar per shard (see SFTInfo).
	Pack bool
	// Preference reads preference rows (chat.ParsePair) instead: each pair becomes
	// two adjacent rows, chosen then rejected (see SFTInfo.Preference). It cannot be
	// packed.
	Preference bool
}

// PrepareSFT turns instruction rows into an SFT dataset (see SFTInfo) in OutDir and
// returns its manifest, whose SFT section reports how many examples were written,
// truncated and skipped.
//
// Each row is parsed (chat.ParseRow, an answer required), rendered with the template
// and tokenized segment by segment (chat.Encode), so the tokens are those generation
// sees for the same prompt. The mask trains the answers and the end-of-text id after
// each answer (every token with TrainOnPrompt). The example is padded to T+1 tokens
// with the end-of-text id, untrained; a longer one follows Overflow, and an example
// left with no trained target is skipped. Validation examples are those of ValInputs,
// or example i (0-based, counting rows that parse) when i % round(1/ValFraction) ==
// round(1/ValFraction)-1. Train examples are dealt round-robin to MinShards shards
// (example i to shard i % MinShards), so a mixture of files reaches every stream; the
// validation examples go to one shard. The output depends only on the inputs and the
// options (not on Logger). Examples are held in memory while the dataset is written.
//
// Errors: ErrBadOptions for an option; ErrBadDocument naming file and line for a row
// chat cannot read; ErrTooFewTokens when there are fewer train examples than shards.
func PrepareSFT(ctx context.Context, opts SFTOptions) (*Manifest, error) {
	tmpl, err := opts.setDefaults()
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("shard: %w", err)
	}
	if err := checkOutDir(opts.OutDir, opts.Name, opts.Overwrite); err != nil {
		return nil, err
	}
	info := &SFTInfo{Template: tmpl.Name(), RowTokens: opts.SeqLen + 1, TrainOnPrompt: opts.TrainOnPrompt, Overflow: opts.Overflow, Packed: opts.Pack}
	if opts.Preference {
		info.Format = FormatPreference
	}
	enc := &exampleEncoder{opts: &opts, tmpl: tmpl, info: info}
	// Each unit is one example, or the two rows of a pair, which stay adjacent.
	var train, val [][]example
	every := 0
	if len(opts.ValInputs) == 0 && opts.ValFraction != NoValidation {
		every = max(1, int(math.Round(1/opts.ValFraction)))
	}
	i := 0
	if err := enc.read(ctx, opts.Inputs, func(ex []example) {
		if every > 0 && i%every == every-1 {
			val = append(val, ex)
		} else {
			train = append(train, ex)
		}
		i++
	}); err != nil {
		return nil, err
	}
	if len(opts.ValInputs) > 0 {
		if err := enc.read(ctx, opts.ValInputs, func(ex []example) { val = append(val, ex) }); err != nil {
			return nil, err
		}
	}
	k := opts.MinShards
	if len(train) < k {
		return nil, fmt.Errorf("%w: %d train examples, too few for %d shards (MinShards=%d); each shard needs one", ErrTooFewTokens, len(train), k, k)
	}
	info.Examples = int64(len(flatten(train)) + len(flatten(val)))
	if opts.Preference {
		info.Pairs = int64(len(train) + len(val))
	}
	if opts.Overwrite {
		if err := os.Remove(filepath.Join(opts.OutDir, ManifestFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("shard: %w", err)
		}
	}
	vocab := opts.Tokenizer.VocabSize()
	m := &Manifest{
		Version: ManifestVersion,
		EOT:     opts.Tokenizer.EOT(),
		Tokenizer: TokenizerInfo{
			Name: opts.Tokenizer.Name(), VocabSize: vocab,
			SHA256: SHA256Hex(opts.TokenizerJSON), File: TokenizerFile,
		},
		Train: []ShardInfo{},
		Val:   []ShardInfo{},
		SFT:   info,
	}
	format := FormatForVocab(vocab)
	for s := range k {
		var rows []example
		for j := s; j < len(train); j += k {
			rows = append(rows, train[j]...)
		}
		if opts.Pack {
			rows = packRows(rows, info.RowTokens, int32(m.EOT))
		}
		info.PackedRows += int64(len(rows))
		si, err := writeExampleShard(ctx, opts.OutDir, fmt.Sprintf("%s_train_%06d", opts.Name, s), format, rows)
		if err != nil {
			return nil, err
		}
		m.Train = append(m.Train, si)
	}
	valExamples := len(val)
	if len(val) > 0 {
		valRows := flatten(val)
		if opts.Pack {
			valRows = packRows(valRows, info.RowTokens, int32(m.EOT))
		}
		info.PackedRows += int64(len(valRows))
		si, err := writeExampleShard(ctx, opts.OutDir, fmt.Sprintf("%s_val_%06d", opts.Name, 0), format, valRows)
		if err != nil {
			return nil, err
		}
		m.Val = append(m.Val, si)
	}
	if !opts.Pack {
		info.PackedRows = 0 // one row an example: the manifest records no separate count
	}
	if err := finishDataset(ctx, opts.OutDir, opts.Name, opts.TokenizerJSON, opts.Overwrite, m); err != nil {
		return nil, err
	}
	log.Info("prepare: sft done", "format", info.Format, "train_examples", len(train), "val_examples", valExamples, "truncated", info.Truncated,
		"skipped", info.Skipped, "template", info.Template, "row_tokens", info.RowTokens, "packed", opts.Pack, "packed_rows", info.PackedRows)
	return m, nil
}

func (o *SFTOptions) setDefaults() (*chat.Template, error) {
	switch {
	case o.Tokenizer == nil:
		return nil, fmt.Errorf("%w: Tokenizer is nil", ErrBadOptions)
	case len(o.TokenizerJSON) == 0:
		return nil, fmt.Errorf("%w: TokenizerJSON is empty", ErrBadOptions)
	case o.OutDir == "":
		return nil, fmt.Errorf("%w: OutDir is empty", ErrBadOptions)
	case len(o.Inputs) == 0:
		return nil, fmt.Errorf("%w: no Inputs", ErrBadOptions)
	case o.SeqLen < 1:
		return nil, fmt.Errorf("%w: SeqLen=%d must be >= 1", ErrBadOptions, o.SeqLen)
	case o.Pack && o.Preference:
		return nil, fmt.Errorf("%w: Pack and Preference: the rows of a preference pair are not packed", ErrBadOptions)
	case o.Pack && o.SeqLen+1 > MaxPackedRowTokens:
		return nil, fmt.Errorf("%w: SeqLen=%d: packed rows hold at most %d tokens (SeqLen %d)", ErrBadOptions, o.SeqLen, MaxPackedRowTokens, MaxPackedRowTokens-1)
	}
	if o.Name == "" {
		o.Name = DefaultName
	}
	if !validName.MatchString(o.Name) {
		return nil, fmt.Errorf("%w: Name=%q may hold only letters, digits, '.', '_' and '-'", ErrBadOptions, o.Name)
	}
	if o.Columns == (chat.Columns{}) {
		o.Columns = chat.DefaultColumns()
	}
	tmpl, err := chat.Lookup(o.Template)
	if err != nil {
		return nil, fmt.Errorf("%w: template: %w", ErrBadOptions, err)
	}
	switch o.Overflow {
	case "":
		o.Overflow = OverflowSkip
	case OverflowSkip, OverflowTruncate:
	default:
		return nil, fmt.Errorf("%w: Overflow=%q (want %s or %s)", ErrBadOptions, o.Overflow, OverflowSkip, OverflowTruncate)
	}
	switch {
	case o.ValFraction == 0:
		o.ValFraction = DefaultValFraction
	case o.ValFraction == NoValidation:
	case !(o.ValFraction > 0 && o.ValFraction < 1):
		return nil, fmt.Errorf("%w: ValFraction=%v must be in (0, 1), 0 for the default %v, or NoValidation", ErrBadOptions, o.ValFraction, DefaultValFraction)
	}
	if o.MinShards == 0 {
		o.MinShards = DefaultMinShards
	}
	if o.MinShards < 1 {
		return nil, fmt.Errorf("%w: MinShards=%d must be >= 1", ErrBadOptions, o.MinShards)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if v, eot := o.Tokenizer.VocabSize(), o.Tokenizer.EOT(); eot < 0 || eot >= v {
		return nil, fmt.Errorf("%w: tokenizer EOT id %d is outside its vocabulary [0, %d)", ErrBadOptions, eot, v)
	}
	return tmpl, nil
}

// example is one encoded row: T+1 tokens and their mask, the example's own n tokens
// first, then padding; a packed row also has each token's example start (offset in
// the row).
type example struct {
	ids   []int32
	mask  []byte
	n     int
	start []uint16
}

// exampleEncoder turns rows into padded examples under the overflow rule.
type exampleEncoder struct {
	opts *SFTOptions
	tmpl *chat.Template
	info *SFTInfo
}

// flatten returns the rows of units in order.
func flatten(units [][]example) []example {
	var rows []example
	for _, u := range units {
		rows = append(rows, u...)
	}
	return rows
}

// read encodes every row of the files under inputs in order and hands each example
// kept to keep: one row, or the chosen and rejected rows of a preference pair.
func (e *exampleEncoder) read(ctx context.Context, inputs []string, keep func([]example)) error {
	files, err := collectInputs(inputs, e.opts.OutDir)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("%w: no input files in %v", ErrBadOptions, inputs)
	}
	for _, path := range files {
		if err := e.readFile(ctx, path, keep); err != nil {
			return err
		}
	}
	return nil
}

func (e *exampleEncoder) readFile(ctx context.Context, path string, keep func([]example)) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("shard: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for line := 1; sc.Scan(); line++ {
		if line%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		var unit []example
		var err error
		if e.opts.Preference {
			unit, err = e.encodePair(raw)
		} else {
			var ex example
			var ok bool
			ex, ok, err = e.encode(raw)
			if ok {
				unit = []example{ex}
			}
		}
		if err != nil {
			return fmt.Errorf("%w: %s:%d: %w", ErrBadDocument, path, line, err)
		}
		if unit != nil {
			keep(unit)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadDocument, path, err)
	}
	return nil
}

// encodePair renders one preference row as its chosen and rejected rows; nil when the
// overflow rule leaves either out (the pair is then left out, and both rows count as
// skipped).
func (e *exampleEncoder) encodePair(raw []byte) ([]example, error) {
	p, err := chat.ParsePair(raw, e.opts.Columns)
	if err != nil {
		return nil, err
	}
	c, okC, err := e.encodeExample(p.Chosen)
	if err != nil {
		return nil, fmt.Errorf("chosen: %w", err)
	}
	r, okR, err := e.encodeExample(p.Rejected)
	if err != nil {
		return nil, fmt.Errorf("rejected: %w", err)
	}
	if !okC || !okR {
		if okC || okR {
			e.info.Skipped++
		}
		return nil, nil
	}
	return []example{c, r}, nil
}

// encode renders one row; ok is false for an example the overflow rule leaves out.
func (e *exampleEncoder) encode(raw []byte) (ex example, ok bool, err error) {
	row, err := chat.ParseRow(raw, e.opts.Columns, true)
	if err != nil {
		return example{}, false, err
	}
	return e.encodeExample(row)
}

// encodeExample renders one parsed example under the overflow rule.
func (e *exampleEncoder) encodeExample(row chat.Example) (ex example, ok bool, err error) {
	segs, err := e.tmpl.Segments(row)
	if err != nil {
		return example{}, false, err
	}
	ids, train := chat.Encode(e.opts.Tokenizer, segs)
	L := e.info.RowTokens
	if len(ids) > L {
		if e.opts.Overflow == OverflowSkip {
			e.info.Skipped++
			return example{}, false, nil
		}
		ids, train = ids[:L], train[:L]
		e.info.Truncated++
	}
	vocab := e.opts.Tokenizer.VocabSize()
	eot := int32(e.opts.Tokenizer.EOT())
	ex = example{ids: make([]int32, L), mask: make([]byte, L), n: len(ids)}
	trained := 0
	for i := range L {
		ex.ids[i] = eot
		if i >= len(ids) {
			continue
		}
		if ids[i] < 0 || ids[i] >= vocab {
			return example{}, false, fmt.Errorf("%w: tokenizer returned id %d outside its vocabulary of %d", ErrBadToken, ids[i], vocab)
		}
		ex.ids[i] = int32(ids[i])
		if i >= 1 && (train[i] || e.opts.TrainOnPrompt) {
			ex.mask[i] = 1
			trained++
		}
	}
	if trained == 0 {
		e.info.Skipped++
		return example{}, false, nil
	}
	return ex, true, nil
}

// writeExampleShard writes rows as the shard base.bin with its sidecars base.mask and
// base.rows, and returns the manifest entry.
func writeExampleShard(ctx context.Context, dir, base string, format Format, rows []example) (ShardInfo, error) {
	var tokens []int32
	var mask, segs []byte
	counts := make([]byte, 4*len(rows))
	for j, r := range rows {
		tokens = append(tokens, r.ids...)
		mask = append(mask, r.mask...)
		for _, s := range r.start {
			segs = binary.LittleEndian.AppendUint16(segs, s)
		}
		var n uint32
		for _, b := range r.mask {
			n += uint32(b)
		}
		binary.LittleEndian.PutUint32(counts[4*j:], n)
	}
	si := ShardInfo{File: base + ".bin", Tokens: int64(len(tokens)), Format: format}
	sum, err := writeFileAtomic(ctx, filepath.Join(dir, si.File), func(w io.Writer) error {
		return EncodeShard(w, format, tokens)
	})
	if err != nil {
		return ShardInfo{}, err
	}
	si.SHA256 = sum
	type sidecar struct {
		dst  **SidecarInfo
		ext  string
		data []byte
	}
	scs := []sidecar{{&si.Mask, ".mask", mask}, {&si.Rows, ".rows", counts}}
	if len(rows) > 0 && rows[0].start != nil {
		scs = append(scs, sidecar{&si.Segments, ".seg", segs})
	}
	for _, sc := range scs {
		name := base + sc.ext
		sum, err := writeFileAtomic(ctx, filepath.Join(dir, name), func(w io.Writer) error {
			_, err := w.Write(sc.data)
			return err
		})
		if err != nil {
			return ShardInfo{}, err
		}
		*sc.dst = &SidecarInfo{File: name, SHA256: sum}
	}
	return si, nil
}
