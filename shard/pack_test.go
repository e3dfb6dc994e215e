package shard

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestPackRowsFirstFit checks the packing rule on example lengths: first fit in
// example order, examples whole, starts restarting per example and the padding its
// own example, masks kept.
func TestPackRowsFirstFit(t *testing.T) {
	const L, eot = 10, 99
	var exs []example
	for i, n := range []int{4, 7, 3, 10, 2, 5} {
		ex := example{ids: make([]int32, L), mask: make([]byte, L), n: n}
		for j := range L {
			ex.ids[j] = eot
			if j < n {
				ex.ids[j] = int32(10*i + j)
				ex.mask[j] = byte(min(j, 1))
			}
		}
		exs = append(exs, ex)
	}
	rows := packRows(exs, L, eot)
	// 4 -> row 0; 7 -> row 1; 3 -> row 0 (4+3); 10 -> row 2; 2 -> row 0 (7+2);
	// 5 -> row 3 (rows 0 and 1 have 1 and 3 free).
	want := []struct {
		ids   []int32
		start []uint16
	}{
		{[]int32{0, 1, 2, 3, 20, 21, 22, 40, 41, eot}, []uint16{0, 0, 0, 0, 4, 4, 4, 7, 7, 9}},
		{[]int32{10, 11, 12, 13, 14, 15, 16, eot, eot, eot}, []uint16{0, 0, 0, 0, 0, 0, 0, 7, 7, 7}},
		{[]int32{30, 31, 32, 33, 34, 35, 36, 37, 38, 39}, []uint16{0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{[]int32{50, 51, 52, 53, 54, eot, eot, eot, eot, eot}, []uint16{0, 0, 0, 0, 0, 5, 5, 5, 5, 5}},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	for i, w := range want {
		if !slices.Equal(rows[i].ids, w.ids) || !slices.Equal(rows[i].start, w.start) {
			t.Errorf("row %d: ids %v starts %v, want %v %v", i, rows[i].ids, rows[i].start, w.ids, w.start)
		}
		for j, s := range rows[i].start {
			if int(s) == j && rows[i].mask[j] != 0 {
				t.Errorf("row %d: the example at %d trains its first token", i, j)
			}
		}
	}
	if got := rows[0].mask; !slices.Equal(got, []byte{0, 1, 1, 1, 0, 1, 1, 0, 1, 0}) {
		t.Errorf("row 0 mask %v", got)
	}
}

// TestPrepareSFTPacked checks a packed dataset end to end: fewer rows than examples,
// the same trained targets as the unpacked dataset, a segments sidecar named and
// checksummed per shard, and the loader's starts and targets.
func TestPrepareSFTPacked(t *testing.T) {
	in := t.TempDir()
	const T = 24
	rows := sftRows(t, in, 60)
	plain, plainDir := prepareSFT(t, SFTOptions{Inputs: []string{rows}, SeqLen: T, MinShards: 2})
	m, out := prepareSFT(t, SFTOptions{Inputs: []string{rows}, SeqLen: T, MinShards: 2, Pack: true})
	if !m.SFT.Packed || m.SFT.Examples != plain.SFT.Examples {
		t.Fatalf("sft section %+v (unpacked %+v)", m.SFT, plain.SFT)
	}
	var packedRows int64
	for _, s := range append(slices.Clone(m.Train), m.Val...) {
		if s.Segments == nil || s.Segments.SHA256 == "" {
			t.Fatalf("shard %s has no segments sidecar", s.File)
		}
		packedRows += s.Tokens / (T + 1)
	}
	if packedRows != m.SFT.PackedRows || packedRows*2 > plain.SFT.Examples {
		t.Fatalf("%d packed rows (manifest %d) for %d examples: want under half", packedRows, m.SFT.PackedRows, plain.SFT.Examples)
	}
	// The same examples: the same trained targets in all.
	trainedOf := func(m *Manifest, dir string) int64 {
		var n int64
		for _, s := range append(slices.Clone(m.Train), m.Val...) {
			b, err := os.ReadFile(filepath.Join(dir, s.Mask.File))
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range b {
				n += int64(v)
			}
		}
		return n
	}
	if p, u := trainedOf(m, out), trainedOf(plain, plainDir); p != u {
		t.Errorf("%d trained targets packed, %d unpacked", p, u)
	}
	ds, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	sampler, err := NewExampleSampler(m.TrainTokens(), 1, 2, 2, T)
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLoader(ds, sampler, LoaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if !l.Packed() {
		t.Fatal("loader of a packed dataset: Packed() is false")
	}
	inputs, targets, start := make([]int32, 2*T), make([]int32, 2*T), make([]int32, 2*T)
	if err := l.BatchPacked(t.Context(), 0, 0, inputs, targets, start); err != nil {
		t.Fatal(err)
	}
	examples := 0
	for r := range 2 {
		for p := range T {
			i := r*T + p
			s := int(start[i])
			switch {
			case s == p:
				examples++
				if p > 0 && targets[i-1] >= 0 {
					t.Errorf("row %d: position %d is trained on the first token of the next example", r, p-1)
				}
			case p == 0 || start[i] != start[i-1]:
				t.Fatalf("row %d: start %d at position %d", r, s, p)
			}
		}
	}
	if examples <= 2 {
		t.Errorf("%d examples (padding included) in 2 packed rows", examples)
	}
	// The step's trained targets over both streams, counted from the rows sidecar,
	// are those the two streams' batches train.
	n, err := l.TrainedTargets(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	trained := int64(0)
	for stream := range 2 {
		if err := l.BatchPacked(t.Context(), stream, 0, inputs, targets, start); err != nil {
			t.Fatal(err)
		}
		for _, tg := range targets {
			if tg >= 0 {
				trained++
			}
		}
	}
	if n != trained {
		t.Errorf("TrainedTargets = %d, the batches train %d", n, trained)
	}
}

// TestPackedSegmentsChecked checks that a segments sidecar that does not cut rows
// into examples, or trains an example's first token, is refused naming the file.
func TestPackedSegmentsChecked(t *testing.T) {
	in := t.TempDir()
	const T = 24
	_, out := prepareSFT(t, SFTOptions{Inputs: []string{sftRows(t, in, 30)}, SeqLen: T, MinShards: 1, Pack: true})
	m, err := ReadManifest(filepath.Join(out, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	info := m.Train[0]
	path := filepath.Join(out, info.Segments.File)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mask, err := os.ReadFile(filepath.Join(out, info.Mask.File))
	if err != nil {
		t.Fatal(err)
	}
	// A start that jumps back, then one that begins an example on a trained token.
	bad := slices.Clone(raw)
	binary.LittleEndian.PutUint16(bad[2*3:], 1)
	if _, err := loadSegments(out, withSegments(t, out, info, bad), T+1, mask); !errors.Is(err, ErrBadManifest) {
		t.Errorf("a start that neither begins nor continues an example: err = %v", err)
	}
	at := slices.Index(mask, 1)
	bad = slices.Clone(raw)
	binary.LittleEndian.PutUint16(bad[2*at:], uint16(at%(T+1)))
	for i := at + 1; i%(T+1) != 0 && binary.LittleEndian.Uint16(raw[2*i:]) == binary.LittleEndian.Uint16(raw[2*at:]); i++ {
		binary.LittleEndian.PutUint16(bad[2*i:], uint16(at%(T+1)))
	}
	if _, err := loadSegments(out, withSegments(t, out, info, bad), T+1, mask); !errors.Is(err, ErrBadManifest) {
		t.Errorf("an example that trains its first token: err = %v", err)
	}
	if _, err := loadSegments(out, info, T+1, mask); err != nil {
		t.Errorf("the written sidecar: %v", err)
	}
}

// withSegments writes data as a new segments sidecar of info and returns info naming it.
func withSegments(t *testing.T, dir string, info ShardInfo, data []byte) ShardInfo {
	t.Helper()
	name := "bad.seg"
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
	info.Segments = &SidecarInfo{File: name, SHA256: SHA256Hex(data)}
	return info
}

// TestManifestPackedValidate checks the manifest rules of a packed dataset: every
// shard names a segments sidecar, an unpacked one names none, rows fit uint16 offsets.
func TestManifestPackedValidate(t *testing.T) {
	in := t.TempDir()
	m, _ := prepareSFT(t, SFTOptions{Inputs: []string{sftRows(t, in, 8)}, SeqLen: 20, MinShards: 2, ValFraction: NoValidation, Pack: true})
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, breakIt := range map[string]func(m *Manifest){
		"packed without segments": func(m *Manifest) { m.Train[1].Segments = nil },
		"segments but not packed": func(m *Manifest) { m.SFT.Packed = false },
		"segments listed twice":   func(m *Manifest) { m.Train[1].Segments = m.Train[0].Segments },
		"segments outside the dir": func(m *Manifest) {
			m.Train[0].Segments = &SidecarInfo{File: "../x.seg", SHA256: m.Train[0].Segments.SHA256}
		},
		"rows too long for offsets": func(m *Manifest) { m.SFT.RowTokens = MaxPackedRowTokens + 1 },
	} {
		c := *m
		c.SFT = new(SFTInfo)
		*c.SFT = *m.SFT
		c.Train = append([]ShardInfo(nil), m.Train...)
		breakIt(&c)
		if err := c.Validate(); !errors.Is(err, ErrBadManifest) {
			t.Errorf("%s: %v, want ErrBadManifest", name, err)
		}
	}
}
