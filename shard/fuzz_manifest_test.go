package shard

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzReadManifest: a manifest.json of any bytes is refused with an error wrapping
// ErrBadManifest, or is a manifest that Validate accepts, whose shard files are
// inside the dataset directory, and that WriteManifest writes back to a manifest
// that reads the same.
func FuzzReadManifest(f *testing.F) {
	sum := strings.Repeat("0a", 32)
	good := &Manifest{Version: ManifestVersion, Tokenizer: TokenizerInfo{Name: "char", VocabSize: 65, SHA256: sum, File: TokenizerFile}, EOT: 0,
		Train: []ShardInfo{{File: "train_000.bin", Tokens: 100, SHA256: sum, Format: FormatLLMC}},
		Val:   []ShardInfo{{File: "val_000.bin", Tokens: 10, SHA256: sum, Format: FormatNanoGPT}}}
	dir := f.TempDir()
	if err := WriteManifest(dir, good); err != nil {
		f.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(bytes.Replace(b, []byte("train_000.bin"), []byte("../../etc/passwd"), 1))
	f.Add(bytes.Replace(b, []byte(`"tokens": 100`), []byte(`"tokens": -1`), 1))
	f.Add([]byte(`{"version":1} {}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseManifest(b, ManifestFile)
		if err != nil {
			if !errors.Is(err, ErrBadManifest) {
				t.Fatalf("error %v does not wrap ErrBadManifest", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted manifest fails Validate: %v", err)
		}
		for _, s := range append(append([]ShardInfo(nil), m.Train...), m.Val...) {
			if !filepath.IsLocal(s.File) || s.Tokens < 0 {
				t.Fatalf("accepted shard %+v", s)
			}
		}
		enc, err := encodeManifest(m)
		if err != nil {
			t.Fatalf("encode back: %v", err)
		}
		back, err := parseManifest(enc, ManifestFile)
		if err != nil || !reflect.DeepEqual(back, m) {
			t.Fatalf("round trip: %v\n%+v\n%+v", err, back, m)
		}
	})
}

// FuzzComputedManifest: a directory of bare shards whose first shard holds any
// bytes opens with a computed manifest whose token counts the file sizes back, or
// is refused with an error, never a panic.
func FuzzComputedManifest(f *testing.F) {
	hdr := func(magic, version, tokens int32, width int) []byte {
		b := make([]byte, HeaderBytes+int(tokens)*width)
		binary.LittleEndian.PutUint32(b[0:], uint32(magic))
		binary.LittleEndian.PutUint32(b[4:], uint32(version))
		binary.LittleEndian.PutUint32(b[8:], uint32(tokens))
		return b
	}
	f.Add(hdr(20240520, 1, 8, 2), "x_train_000.bin")
	f.Add(hdr(20240801, 7, 4, 4), "x_val_000.bin")
	f.Add(hdr(20240520, 1, 1<<30, 0), "x_train_000.bin")
	f.Add([]byte{1, 2, 3, 4}, "train.bin")
	f.Fuzz(func(t *testing.T, b []byte, name string) {
		if name != "train.bin" && name != "val.bin" {
			name = "x_train_000.bin"
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		ds, err := Open(dir)
		if err != nil {
			return
		}
		m := ds.Manifest()
		if !m.Computed || len(m.Train)+len(m.Val) != 1 {
			t.Fatalf("computed manifest %+v", m)
		}
		s := append(append([]ShardInfo(nil), m.Train...), m.Val...)[0]
		if s.Tokens < 0 || int64(s.Format.headerSize())+s.Tokens*int64(s.Format.Width()) != int64(len(b)) {
			t.Fatalf("shard %+v from a %d-byte file", s, len(b))
		}
	})
}
