package shard

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
)

// SFTInfo describes an instruction (supervised fine-tuning) dataset, the "sft" object
// of its manifest:
//
//	"sft": {"template": "plain", "row_tokens": 129, "train_on_prompt": false,
//	        "overflow": "skip", "examples": 1800, "truncated": 0, "skipped": 3,
//	        "packed": true, "packed_rows": 412}
//
// Every shard of such a dataset holds whole rows of RowTokens = T+1 tokens, one example
// per row, padded with the end-of-text id; token i of a row is the input of position i
// (i < T) and the target of position i-1 (i >= 1). Beside each shard are two sidecars,
// named and checksummed in its ShardInfo:
//
//   - Mask, <shard>.mask: one byte per token, 1 when the token is trained as a target
//     (an answer token, or any token but padding with train_on_prompt), else 0. The
//     first token of a row is never a target, so its byte is 0.
//   - Rows, <shard>.rows: one little-endian uint32 per row, the number of trained
//     targets of the row (the sum of its mask bytes).
//
// The row counts are what make the loss normalisation a pure function of the data plan:
// any rank sums the counts of the rows every stream reads at a step, without reading
// the other streams' tokens.
//
// A packed dataset (Packed) fills each row with several whole examples, one after
// another, then padding, first fit in example order (see PrepareSFT). Beside each of its shards is a third sidecar:
//
//   - Segments, <shard>.seg: one little-endian uint16 per token, the offset in its row
//     of the first token of the token's example (the padding after the last example
//     counts as one more example). Offset i either begins an example (it is i) or
//     continues the one before (it is the offset of token i-1). The first token of an
//     example is never a trained target (its mask byte is 0), so no loss crosses from
//     one example into the next.
//
// Training on a packed row restarts positions at 0 in each example and blocks
// attention between examples (model.GPT.ForwardPacked), which gives each example the
// loss and gradients it has alone in a row.
type SFTInfo struct {
	// Template is the chat template the rows were rendered with (package chat).
	Template string `json:"template"`
	// RowTokens is the length of a row, T+1; a job on the dataset has seq_len T.
	RowTokens int `json:"row_tokens"`
	// TrainOnPrompt is true when prompts were trained too, not only answers.
	TrainOnPrompt bool `json:"train_on_prompt"`
	// Overflow is the rule for an example longer than a row (OverflowSkip or
	// OverflowTruncate).
	Overflow string `json:"overflow"`
	// Examples counts the rows written (train and validation); Truncated the examples
	// cut to fit a row; Skipped those left out (too long under OverflowSkip, or cut to
	// nothing trained under OverflowTruncate).
	Examples  int64 `json:"examples"`
	Truncated int64 `json:"truncated"`
	Skipped   int64 `json:"skipped"`
	// Packed is true when rows hold several examples each, with a segments sidecar
	// per shard; PackedRows is then the number of rows written (train and validation).
	Packed     bool  `json:"packed,omitempty"`
	PackedRows int64 `json:"packed_rows,omitempty"`
	// Format is "" for instruction rows and FormatPreference for preference pairs:
	// rows 2i and 2i+1 of every shard are then the chosen and the rejected answer of
	// one pair (each shard holds whole pairs), and Pairs counts the pairs written
	// (train and validation).
	Format string `json:"format,omitempty"`
	Pairs  int64  `json:"pairs,omitempty"`
}

// FormatPreference is SFTInfo.Format of a preference dataset.
const FormatPreference = "preference"

// IsPreference reports whether the manifest describes a preference dataset: adjacent
// chosen and rejected rows.
func (m *Manifest) IsPreference() bool { return m.SFT != nil && m.SFT.Format == FormatPreference }

// MaxPackedRowTokens is the longest row a packed dataset may have: the segments
// sidecar stores offsets in a row as uint16.
const MaxPackedRowTokens = 1 << 16

// The rules for an example longer than a row.
const (
	// OverflowSkip leaves the example out (the default).
	OverflowSkip = "skip"
	// OverflowTruncate keeps the example's first T+1 tokens; the answer, or its
	// end-of-text, may be cut. An example left with no trained target is skipped.
	OverflowTruncate = "truncate"
)

// SidecarInfo names a file kept beside a shard and its hex sha256.
type SidecarInfo struct {
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
}

// IsSFT reports whether the manifest describes an instruction dataset.
func (m *Manifest) IsSFT() bool { return m.SFT != nil }

// validateSidecars checks the SFT fields of shard s (where names it): an SFT dataset's
// shards are whole rows and carry both sidecars, a plain dataset's carry none.
func (m *Manifest) validateSidecars(where string, s ShardInfo, seen map[string]bool) error {
	if m.SFT == nil {
		if s.Mask != nil || s.Rows != nil || s.Segments != nil {
			return fmt.Errorf("%w: %s has mask, rows or segments sidecars but the manifest has no sft section", ErrBadManifest, where)
		}
		return nil
	}
	if m.SFT.Packed && m.SFT.RowTokens > MaxPackedRowTokens {
		return fmt.Errorf("%w: sft.row_tokens=%d: a packed dataset's rows hold at most %d tokens", ErrBadManifest, m.SFT.RowTokens, MaxPackedRowTokens)
	}
	if !m.SFT.Packed && s.Segments != nil {
		return fmt.Errorf("%w: %s has a segments sidecar but sft.packed is false", ErrBadManifest, where)
	}
	if m.SFT.RowTokens < 2 {
		return fmt.Errorf("%w: sft.row_tokens=%d must be >= 2", ErrBadManifest, m.SFT.RowTokens)
	}
	if m.SFT.Overflow != OverflowSkip && m.SFT.Overflow != OverflowTruncate {
		return fmt.Errorf("%w: sft.overflow=%q (want %s or %s)", ErrBadManifest, m.SFT.Overflow, OverflowSkip, OverflowTruncate)
	}
	if s.Tokens%int64(m.SFT.RowTokens) != 0 {
		return fmt.Errorf("%w: %s.tokens=%d is not a whole number of rows of %d tokens", ErrBadManifest, where, s.Tokens, m.SFT.RowTokens)
	}
	switch m.SFT.Format {
	case "":
	case FormatPreference:
		if m.SFT.Packed {
			return fmt.Errorf("%w: sft.format=%s cannot be packed", ErrBadManifest, FormatPreference)
		}
		if (s.Tokens/int64(m.SFT.RowTokens))%2 != 0 {
			return fmt.Errorf("%w: %s holds %d rows: a preference shard holds whole pairs (an even number of rows)", ErrBadManifest, where, s.Tokens/int64(m.SFT.RowTokens))
		}
	default:
		return fmt.Errorf("%w: sft.format=%q (want empty or %s)", ErrBadManifest, m.SFT.Format, FormatPreference)
	}
	scs := []struct {
		name string
		info *SidecarInfo
	}{{"mask", s.Mask}, {"rows", s.Rows}}
	if m.SFT.Packed {
		scs = append(scs, struct {
			name string
			info *SidecarInfo
		}{"segments", s.Segments})
	}
	for _, sc := range scs {
		if sc.info == nil {
			return fmt.Errorf("%w: %s has no %s sidecar (an sft dataset needs one per shard)", ErrBadManifest, where, sc.name)
		}
		if !filepath.IsLocal(sc.info.File) {
			return fmt.Errorf("%w: %s.%s.file=%q is not a path inside the dataset directory", ErrBadManifest, where, sc.name, sc.info.File)
		}
		if seen[filepath.Clean(sc.info.File)] {
			return fmt.Errorf("%w: %s.%s.file=%q is listed twice", ErrBadManifest, where, sc.name, sc.info.File)
		}
		seen[filepath.Clean(sc.info.File)] = true
		if !isHexSHA256(sc.info.SHA256) {
			return fmt.Errorf("%w: %s.%s.sha256=%q is not 64 hex digits", ErrBadManifest, where, sc.name, sc.info.SHA256)
		}
	}
	return nil
}

// sidecars holds the verified sidecars of one split of an SFT dataset in memory.
type sidecars struct {
	masks  [][]byte   // masks[s][i]: is token i of shard s a trained target
	rows   [][]uint32 // rows[s][j]: trained targets of row j of shard s
	starts [][]uint16 // starts[s][i]: offset in its row of token i's example; nil unpacked
}

// loadSidecars reads and verifies (sha256, length, consistency of the row counts with
// the mask) the sidecars of shards. Errors name the file.
func loadSidecars(ctx context.Context, dir string, rowTokens int, shards []ShardInfo) (*sidecars, error) {
	sc := &sidecars{}
	for _, info := range shards {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		mask, err := readSidecar(filepath.Join(dir, info.Mask.File), info.Mask.SHA256, info.Tokens)
		if err != nil {
			return nil, err
		}
		nrows := info.Tokens / int64(rowTokens)
		rpath := filepath.Join(dir, info.Rows.File)
		raw, err := readSidecar(rpath, info.Rows.SHA256, 4*nrows)
		if err != nil {
			return nil, err
		}
		rows := make([]uint32, nrows)
		for j := range rows {
			rows[j] = binary.LittleEndian.Uint32(raw[4*j:])
			var n uint32
			for _, b := range mask[int64(j)*int64(rowTokens) : int64(j+1)*int64(rowTokens)] {
				if b > 1 {
					return nil, fmt.Errorf("%w: %s: mask byte %d in row %d (want 0 or 1)", ErrBadManifest, info.Mask.File, b, j)
				}
				n += uint32(b)
			}
			if n != rows[j] {
				return nil, fmt.Errorf("%w: %s: row %d counts %d trained targets, its mask %d", ErrBadManifest, rpath, j, rows[j], n)
			}
		}
		sc.masks = append(sc.masks, mask)
		sc.rows = append(sc.rows, rows)
		if info.Segments == nil {
			continue
		}
		starts, err := loadSegments(dir, info, rowTokens, mask)
		if err != nil {
			return nil, err
		}
		sc.starts = append(sc.starts, starts)
	}
	return sc, nil
}

// loadSegments reads and verifies the segments sidecar of a packed shard: every offset
// begins an example or continues the one before, and no example's first token is a
// trained target (it would be trained on the example before it).
func loadSegments(dir string, info ShardInfo, rowTokens int, mask []byte) ([]uint16, error) {
	path := filepath.Join(dir, info.Segments.File)
	raw, err := readSidecar(path, info.Segments.SHA256, 2*info.Tokens)
	if err != nil {
		return nil, err
	}
	starts := make([]uint16, info.Tokens)
	for i := range starts {
		starts[i] = binary.LittleEndian.Uint16(raw[2*i:])
		pos := i % rowTokens
		switch s := int(starts[i]); {
		case s == pos:
			if mask[i] != 0 {
				return nil, fmt.Errorf("%w: %s: row %d: the example at offset %d trains its first token", ErrBadManifest, path, i/rowTokens, pos)
			}
		case pos == 0 || starts[i] != starts[i-1]:
			return nil, fmt.Errorf("%w: %s: row %d offset %d: example start %d neither begins an example nor continues the one before", ErrBadManifest, path, i/rowTokens, pos, s)
		}
	}
	return starts, nil
}

// readSidecar reads a sidecar file and checks its sha256 and size.
func readSidecar(path, sha string, size int64) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("shard: %w", err)
	}
	if got := SHA256Hex(b); got != sha {
		return nil, fmt.Errorf("%w: %s: sha256 is %s, manifest says %s", ErrChecksum, path, got, sha)
	}
	if int64(len(b)) != size {
		return nil, fmt.Errorf("%w: %s: %d bytes, want %d", ErrTruncated, path, len(b), size)
	}
	return b, nil
}
