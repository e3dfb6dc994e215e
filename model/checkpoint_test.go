package model

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/safetensors"
)

// ckTest builds a checkpoint with every part filled in.
func ckTest(t *testing.T) *Checkpoint {
	t.Helper()
	c := hfTestConfig
	opt := NewAdamW(c)
	copy(opt.M, hfRandomSlab(c, 11))
	copy(opt.V, hfRandomSlab(c, 12))
	opt.Step = 1999
	eot := 10
	return &Checkpoint{
		Config: c,
		Params: hfRandomSlab(c, 10),
		Opt:    opt,
		Trainer: TrainerState{
			Step:       2000,
			Seed:       1<<63 + 12345, // beyond float64's exact integers
			TokensSeen: 123456789012,
			Loss:       3.141592653589793,
			Job:        json.RawMessage(`{"lr":0.0006,"name":"a<b>&c","streams":[1,2]}`),
		},
		Tokenizer: []byte("{\"kind\": \"bpe\"}\n"),
		HFTokenizer: map[string][]byte{
			"tokenizer.json": []byte("{\"model\": {\"type\": \"BPE\"}}\n"),
			"merges.txt":     []byte("#version: 0.2\na b\n"),
		},
		EOT: &eot,
	}
}

func ckSave(t *testing.T, dir string, ck *Checkpoint) {
	t.Helper()
	if err := SaveCheckpoint(dir, ck); err != nil {
		t.Fatal(err)
	}
}

// ckResum rewrites dir's SHA256SUMS to match the files it lists, so that a test can
// get an edited file past verification and exercise the parser behind it.
func ckResum(t *testing.T, dir string) {
	t.Helper()
	sums, err := readSums(filepath.Join(dir, sumsFile))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range sums {
		names = append(names, name)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%x  %s\n", sha256.Sum256(data), name)
	}
	if err := os.WriteFile(filepath.Join(dir, sumsFile), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func ckEdit(t *testing.T, path string, edit func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, edit(b), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	ck := ckTest(t)
	root := t.TempDir()
	dir := CheckpointDir(root, ck.Trainer.Step)
	if filepath.Base(dir) != "step-002000" {
		t.Fatalf("CheckpointDir = %s", dir)
	}
	ckSave(t, dir, ck)

	got, err := LoadCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Config != ck.Config {
		t.Fatalf("config %+v, want %+v", got.Config, ck.Config)
	}
	hfSameBits(t, "params", got.Params, ck.Params)
	if got.Opt == nil {
		t.Fatal("optimizer state not loaded")
	}
	hfSameBits(t, "exp_avg", got.Opt.M, ck.Opt.M)
	hfSameBits(t, "exp_avg_sq", got.Opt.V, ck.Opt.V)
	if got.Opt.Step != ck.Opt.Step {
		t.Fatalf("adamw step %d, want %d", got.Opt.Step, ck.Opt.Step)
	}
	if len(got.Opt.tensors) != len(ck.Config.Tensors()) {
		t.Fatal("loaded optimizer has the wrong tensor layout")
	}
	want := ck.Trainer
	want.FormatVersion = CheckpointFormatVersion
	want.AdamWStep = ck.Opt.Step
	gt := got.Trainer
	if !bytes.Equal(gt.Job, want.Job) {
		t.Fatalf("job %s, want %s", gt.Job, want.Job)
	}
	gt.Job, want.Job = nil, nil
	if fmt.Sprintf("%+v", gt) != fmt.Sprintf("%+v", want) {
		t.Fatalf("trainer state %+v, want %+v", gt, want)
	}
	if !bytes.Equal(got.Tokenizer, ck.Tokenizer) {
		t.Fatalf("tokenizer %q, want %q", got.Tokenizer, ck.Tokenizer)
	}
	if len(got.HFTokenizer) != len(ck.HFTokenizer) {
		t.Fatalf("hugging face tokenizer files %v, want %v", got.HFTokenizer, ck.HFTokenizer)
	}
	for name, b := range ck.HFTokenizer {
		if !bytes.Equal(got.HFTokenizer[name], b) {
			t.Fatalf("%s = %q, want %q", name, got.HFTokenizer[name], b)
		}
	}
	if got.EOT == nil || *got.EOT != *ck.EOT {
		t.Fatalf("eot %v, want %d", got.EOT, *ck.EOT)
	}

	// The caller's checkpoint is untouched.
	if ck.Trainer.FormatVersion != 0 || ck.Trainer.AdamWStep != 0 {
		t.Fatal("SaveCheckpoint modified its argument")
	}

	// The weights part is a plain Hugging Face directory.
	c, params, err := ImportHF(dir)
	if err != nil || c != ck.Config {
		t.Fatalf("ImportHF of a checkpoint: %v", err)
	}
	hfSameBits(t, "params via ImportHF", params, ck.Params)

	// optimizer.safetensors: HF names and layout, step in the metadata.
	f, err := safetensors.ReadFile(filepath.Join(dir, "optimizer.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if m := f.Metadata(); m["format"] != "pt" || m["adamw_step"] != "1999" {
		t.Fatalf("optimizer metadata %v", m)
	}
	info, ok := f.Tensor("exp_avg_sq.transformer.h.0.mlp.c_fc.weight")
	if !ok || !slices.Equal(info.Shape, []int{8, 32}) {
		t.Fatalf("exp_avg_sq c_fc.weight: %+v %v", info, ok)
	}
}

func TestCheckpointDeterministicAndSums(t *testing.T) {
	ck := ckTest(t)
	root := t.TempDir()
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	ckSave(t, a, ck)
	ckSave(t, b, ck)
	names := []string{"SHA256SUMS", "config.json", "generation_config.json", "merges.txt", "model.safetensors", "optimizer.safetensors",
		"ringtrain_tokenizer.json", "tokenizer.json", "trainer_state.json"}
	entries, err := os.ReadDir(a)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, names) {
		t.Fatalf("checkpoint files %v, want %v", got, names)
	}
	for _, name := range names {
		x, _ := os.ReadFile(filepath.Join(a, name))
		y, _ := os.ReadFile(filepath.Join(b, name))
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two saves of the same checkpoint", name)
		}
	}
	da, err := CheckpointDigest(a)
	if err != nil {
		t.Fatal(err)
	}
	sums, _ := os.ReadFile(filepath.Join(a, "SHA256SUMS"))
	if h := sha256.Sum256(sums); da != hex.EncodeToString(h[:]) {
		t.Fatalf("digest %s is not the SHA-256 of SHA256SUMS", da)
	}
	if db, _ := CheckpointDigest(b); db != da {
		t.Fatal("digests of identical checkpoints differ")
	}
	// SHA256SUMS lists every other file, sorted, in sha256sum's format.
	lines := strings.Split(strings.TrimSpace(string(sums)), "\n")
	if len(lines) != len(names)-1 {
		t.Fatalf("SHA256SUMS has %d lines:\n%s", len(lines), sums)
	}
	for i, line := range lines {
		data, _ := os.ReadFile(filepath.Join(a, names[i+1]))
		if want := fmt.Sprintf("%x  %s", sha256.Sum256(data), names[i+1]); line != want {
			t.Fatalf("SHA256SUMS line %d = %q, want %q", i+1, line, want)
		}
	}
	if _, err := exec.LookPath("sha256sum"); err == nil {
		cmd := exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
		cmd.Dir = a
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sha256sum --check: %v\n%s", err, out)
		}
	}
}

func TestCheckpointFlippedByte(t *testing.T) {
	ck := ckTest(t)
	root := t.TempDir()
	for _, name := range []string{"config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json", "ringtrain_tokenizer.json",
		"tokenizer.json", "merges.txt", "generation_config.json", "SHA256SUMS"} {
		for _, where := range []string{"start", "middle", "end"} {
			dir := filepath.Join(root, name+"-"+where)
			ckSave(t, dir, ck)
			ckEdit(t, filepath.Join(dir, name), func(b []byte) []byte {
				i := map[string]int{"start": 0, "middle": len(b) / 2, "end": len(b) - 1}[where]
				b[i] ^= 0x04
				return b
			})
			_, err := LoadCheckpoint(dir)
			if !errors.Is(err, ErrChecksum) {
				t.Fatalf("%s flipped at %s: err %v, want ErrChecksum", name, where, err)
			}
			if name != "SHA256SUMS" && !strings.Contains(err.Error(), filepath.Join(dir, name)) {
				t.Fatalf("%s flipped at %s: error does not name the file: %v", name, where, err)
			}
		}
	}
}

func TestCheckpointMissingFile(t *testing.T) {
	ck := ckTest(t)
	root := t.TempDir()
	for _, name := range []string{"config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json", "ringtrain_tokenizer.json",
		"tokenizer.json", "merges.txt", "generation_config.json"} {
		dir := filepath.Join(root, name)
		ckSave(t, dir, ck)
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
		_, err := LoadCheckpoint(dir)
		if !errors.Is(err, ErrChecksum) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), name) {
			t.Fatalf("without %s: err %v, want ErrChecksum and fs.ErrNotExist naming it", name, err)
		}
	}
	// Without SHA256SUMS the directory is neither verified nor a plain HF directory.
	dir := filepath.Join(root, "nosums")
	ckSave(t, dir, ck)
	if err := os.Remove(filepath.Join(dir, "SHA256SUMS")); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCheckpoint(dir); !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "SHA256SUMS") {
		t.Fatalf("without SHA256SUMS: err %v", err)
	}
	if _, err := LoadCheckpoint(filepath.Join(root, "absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("absent dir: err %v, want fs.ErrNotExist", err)
	}
}

func TestCheckpointTruncatedWeights(t *testing.T) {
	ck := ckTest(t)
	root := t.TempDir()
	for _, name := range []string{"model.safetensors", "optimizer.safetensors"} {
		for _, keep := range []int{0, 7, 100, -1} {
			dir := filepath.Join(root, fmt.Sprintf("%s-%d", name, keep))
			ckSave(t, dir, ck)
			path := filepath.Join(dir, name)
			ckEdit(t, path, func(b []byte) []byte {
				if keep < 0 {
					return b[:len(b)-1]
				}
				return b[:keep]
			})
			if _, err := LoadCheckpoint(dir); !errors.Is(err, ErrChecksum) {
				t.Fatalf("%s cut to %d: err %v, want ErrChecksum", name, keep, err)
			}
			// With matching sums the parser itself must refuse the torn file.
			ckResum(t, dir)
			_, err := LoadCheckpoint(dir)
			if !errors.Is(err, ErrFormat) || !errors.Is(err, safetensors.ErrCorrupt) || !strings.Contains(err.Error(), path) {
				t.Fatalf("%s cut to %d, sums fixed: err %v, want ErrFormat+ErrCorrupt naming the file", name, keep, err)
			}
		}
	}
}

func TestCheckpointRejectsEditedState(t *testing.T) {
	ck := ckTest(t)
	root := t.TempDir()
	n := 0
	edited := func(name string, edit func([]byte) []byte) error {
		n++
		dir := filepath.Join(root, fmt.Sprint(n))
		ckSave(t, dir, ck)
		ckEdit(t, filepath.Join(dir, name), edit)
		ckResum(t, dir)
		_, err := LoadCheckpoint(dir)
		return err
	}
	replace := func(old, new string) func([]byte) []byte {
		return func(b []byte) []byte {
			if !bytes.Contains(b, []byte(old)) {
				t.Fatalf("%q not in file", old)
			}
			return bytes.Replace(b, []byte(old), []byte(new), 1)
		}
	}
	if err := edited("trainer_state.json", replace(`"format_version": 1`, `"format_version": 2`)); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "format_version = 2") {
		t.Fatalf("newer format: err %v", err)
	}
	if err := edited("trainer_state.json", replace(`"format_version": 1,`, ``)); !errors.Is(err, ErrFormat) {
		t.Fatalf("no format version: err %v", err)
	}
	if err := edited("trainer_state.json", replace(`"adamw_step": 1999`, `"adamw_step": 1998`)); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "adamw_step") {
		t.Fatalf("step mismatch: err %v", err)
	}
	if err := edited("trainer_state.json", replace(`{`, `[`)); !errors.Is(err, ErrFormat) {
		t.Fatalf("bad JSON: err %v", err)
	}
	if err := edited("config.json", replace(`"gelu_new"`, `"gelu"`)); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), `activation_function = "gelu"`) {
		t.Fatalf("activation: err %v", err)
	}

	// A tokenizer.json added after the save is not covered by SHA256SUMS.
	dir := filepath.Join(root, "extra")
	noTok := *ck
	noTok.Tokenizer, noTok.HFTokenizer = nil, nil
	ckSave(t, dir, &noTok)
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCheckpoint(dir); !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "tokenizer.json") {
		t.Fatalf("unlisted tokenizer.json: err %v", err)
	}
	// A path in SHA256SUMS must not escape the checkpoint.
	dir = filepath.Join(root, "escape")
	ckSave(t, dir, ck)
	ckEdit(t, filepath.Join(dir, "SHA256SUMS"), func(b []byte) []byte {
		return append(b, []byte(strings.Repeat("0", 64)+"  ../x\n")...)
	})
	if _, err := LoadCheckpoint(dir); !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "../x") {
		t.Fatalf("escaping name: err %v", err)
	}
}

func TestCheckpointSaveRejects(t *testing.T) {
	root := t.TempDir()
	cases := map[string]struct {
		edit func(*Checkpoint)
		want error
	}{
		"nan loss":     {func(ck *Checkpoint) { ck.Trainer.Loss = math.NaN() }, ErrFormat},
		"bad job":      {func(ck *Checkpoint) { ck.Trainer.Job = json.RawMessage(`{"lr":`) }, ErrFormat},
		"short params": {func(ck *Checkpoint) { ck.Params = ck.Params[1:] }, ErrShape},
		"short moment": {func(ck *Checkpoint) { ck.Opt.V = ck.Opt.V[1:] }, ErrShape},
		"bad config":   {func(ck *Checkpoint) { ck.Config.Heads = 3 }, ErrBadConfig},
	}
	for name, tc := range cases {
		ck := ckTest(t)
		tc.edit(ck)
		dir := filepath.Join(root, strings.ReplaceAll(name, " ", "-"))
		if err := SaveCheckpoint(dir, ck); !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", name, err, tc.want)
		}
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: refused save left %s behind", name, dir)
		}
	}
	if err := SaveCheckpoint(filepath.Join(root, "nil"), nil); err == nil {
		t.Error("nil checkpoint saved")
	}
}

func TestCheckpointExists(t *testing.T) {
	ck := ckTest(t)
	root := t.TempDir()
	dir := CheckpointDir(root, 5)
	ckSave(t, dir, ck)
	if err := SaveCheckpoint(dir, ck); !errors.Is(err, ErrExists) {
		t.Fatalf("second save: err %v, want ErrExists", err)
	}
	empty := CheckpointDir(root, 6)
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := SaveCheckpoint(empty, ck); !errors.Is(err, ErrExists) {
		t.Fatalf("save over an empty dir: err %v, want ErrExists", err)
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 2 {
		t.Fatalf("root holds %d entries, want 2 (no temp dirs left)", len(entries))
	}
}

func TestCheckpointAtomicFailure(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "step-000001")
	boom := errors.New("disk full")
	err := writeDirAtomic(dir, func(tmp string) error {
		if err := writeSynced(tmp, "config.json", nil, func(w io.Writer) error { _, err := w.Write([]byte("{}")); return err }); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want the fill error", err)
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 0 {
		t.Fatalf("failed write left %d entries in root", len(entries))
	}
}

func TestCheckpointLatest(t *testing.T) {
	root := t.TempDir()
	if _, err := LatestCheckpoint(root); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("empty root: err %v, want ErrNoCheckpoint", err)
	}
	if _, err := LatestCheckpoint(filepath.Join(root, "absent")); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("absent root: err %v, want ErrNoCheckpoint", err)
	}
	ck := ckTest(t)
	ckSave(t, CheckpointDir(root, 100), ck)
	ckSave(t, CheckpointDir(root, 2000), ck)
	ckSave(t, CheckpointDir(root, 300), ck)

	// Leftovers that must be ignored: an interrupted save's temp dir (complete inside,
	// but never renamed), a step dir without SHA256SUMS, odd names, a plain file.
	tmp, err := os.MkdirTemp(root, ".step-009000.tmp-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "SHA256SUMS"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"step-008000", "step-x", "step-", "step-9999999999999999999999", "other"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "step-9000"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "other", "SHA256SUMS"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LatestCheckpoint(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := CheckpointDir(root, 2000); got != want {
		t.Fatalf("latest = %s, want %s", got, want)
	}
	if _, err := LoadCheckpoint(got); err != nil {
		t.Fatal(err)
	}
	// ListCheckpoints finds the same complete checkpoints, in step order.
	refs, err := ListCheckpoints(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []CheckpointRef{{CheckpointDir(root, 100), 100}, {CheckpointDir(root, 300), 300}, {CheckpointDir(root, 2000), 2000}}
	if !slices.Equal(refs, want) {
		t.Errorf("ListCheckpoints = %v, want %v", refs, want)
	}
	if refs, err := ListCheckpoints(filepath.Join(root, "absent")); err != nil || refs != nil {
		t.Errorf("ListCheckpoints of an absent root = %v, %v; want none", refs, err)
	}
}

// TestCheckpointValLoss checks that a checkpoint records the validation loss of its
// step when it has one (and writes no key when not), that ReadTrainerState reads it
// without the weights, and that a loss JSON cannot hold is refused.
func TestCheckpointValLoss(t *testing.T) {
	root := t.TempDir()
	ck := ckTest(t)
	vl := 2.718281828459045
	ck.Trainer.ValLoss = &vl
	ckSave(t, CheckpointDir(root, 1), ck)
	back, err := LoadCheckpoint(CheckpointDir(root, 1))
	if err != nil {
		t.Fatal(err)
	}
	if back.Trainer.ValLoss == nil || *back.Trainer.ValLoss != vl {
		t.Errorf("loaded val_loss %v, want %v", back.Trainer.ValLoss, vl)
	}
	st, err := ReadTrainerState(CheckpointDir(root, 1))
	if err != nil || st.ValLoss == nil || *st.ValLoss != vl || st.Step != ck.Trainer.Step {
		t.Errorf("ReadTrainerState: %+v, %v", st, err)
	}

	ck.Trainer.ValLoss = nil
	ckSave(t, CheckpointDir(root, 2), ck)
	b, err := os.ReadFile(filepath.Join(CheckpointDir(root, 2), trainerStateFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "val_loss") {
		t.Errorf("a checkpoint without a validation loss writes one:\n%s", b)
	}
	if st, err := ReadTrainerState(CheckpointDir(root, 2)); err != nil || st.ValLoss != nil {
		t.Errorf("ReadTrainerState without val_loss: %+v, %v", st, err)
	}

	nan := math.NaN()
	ck.Trainer.ValLoss = &nan
	if err := SaveCheckpoint(CheckpointDir(root, 3), ck); !errors.Is(err, ErrFormat) {
		t.Errorf("NaN val_loss: err %v, want ErrFormat", err)
	}
	if _, err := ReadTrainerState(filepath.Join(root, "absent")); err == nil {
		t.Error("ReadTrainerState of a missing directory succeeded")
	}
}

func TestCheckpointPlainHFDir(t *testing.T) {
	c := hfTestConfig
	params := hfRandomSlab(c, 20)
	dir := filepath.Join(t.TempDir(), "hf")
	if err := ExportHF(dir, c, params, WithTokenizerJSON([]byte(`{"version":"1.0"}`))); err != nil {
		t.Fatal(err)
	}
	ck, err := LoadCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ck.Opt != nil || ck.Trainer.Step != 0 || ck.Trainer.FormatVersion != 0 || ck.EOT != nil {
		t.Fatalf("plain HF dir: Opt %v, trainer %+v, eot %v", ck.Opt, ck.Trainer, ck.EOT)
	}
	if ck.Config != c || string(ck.Tokenizer) != `{"version":"1.0"}` {
		t.Fatalf("config %+v tokenizer %q", ck.Config, ck.Tokenizer)
	}
	hfSameBits(t, "params", ck.Params, params)
}

func TestCheckpointWithoutOptimizer(t *testing.T) {
	ck := ckTest(t)
	ck.Opt = nil
	ck.Tokenizer, ck.HFTokenizer = nil, nil
	ck.EOT = nil
	ck.Trainer.Job = nil
	dir := filepath.Join(t.TempDir(), "w")
	ckSave(t, dir, ck)
	if _, err := os.Stat(filepath.Join(dir, "optimizer.safetensors")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("optimizer.safetensors written without optimizer state")
	}
	got, err := LoadCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Opt != nil || got.Tokenizer != nil || got.HFTokenizer != nil || got.EOT != nil || got.Trainer.Job != nil {
		t.Fatalf("got Opt %v tokenizer %q %v eot %v job %q", got.Opt, got.Tokenizer, got.HFTokenizer, got.EOT, got.Trainer.Job)
	}
	if _, err := os.Stat(filepath.Join(dir, "generation_config.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("generation_config.json written without an EOT id")
	}
	hfSameBits(t, "params", got.Params, ck.Params)
}

func TestVerifyDigest(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ck")
	ckSave(t, dir, ckTest(t))
	digest, err := CheckpointDigest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyDigest(dir, digest); err != nil {
		t.Fatalf("the committed checkpoint itself: %v", err)
	}
	// Another checkpoint in its place (its own SHA256SUMS consistent): refused, naming the file.
	other := ckTest(t)
	other.Trainer.Step++
	other.Trainer.AdamWStep++
	other.Opt.Step++
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	ckSave(t, dir, other)
	err = VerifyDigest(dir, digest)
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), filepath.Join(dir, "SHA256SUMS")) || !strings.Contains(err.Error(), digest) {
		t.Fatalf("replaced checkpoint: err %v, want ErrChecksum naming SHA256SUMS and the committed digest", err)
	}
	if _, err := LoadCheckpoint(dir); err != nil {
		t.Fatalf("the replacement is a valid checkpoint on its own: %v", err)
	}
}

// TestCheckpointPPOBeta: a checkpoint records a ppo policy's KL coefficient exactly
// and loads it back, writes no key without one, and refuses one that is not a
// finite number > 0.
func TestCheckpointPPOBeta(t *testing.T) {
	root := t.TempDir()
	ck := ckTest(t)
	beta := 0.07312345678912345
	ck.Trainer.PPOBeta = &beta
	ckSave(t, CheckpointDir(root, 1), ck)
	back, err := LoadCheckpoint(CheckpointDir(root, 1))
	if err != nil {
		t.Fatal(err)
	}
	if back.Trainer.PPOBeta == nil || *back.Trainer.PPOBeta != beta {
		t.Errorf("loaded ppo_beta %v, want %v", back.Trainer.PPOBeta, beta)
	}
	ck.Trainer.PPOBeta = nil
	ckSave(t, CheckpointDir(root, 2), ck)
	if b, err := os.ReadFile(filepath.Join(CheckpointDir(root, 2), trainerStateFile)); err != nil || strings.Contains(string(b), "ppo_beta") {
		t.Errorf("a checkpoint without a KL coefficient: %v\n%s", err, b)
	}
	for i, v := range []float64{0, -0.1, math.Inf(1), math.NaN()} {
		ck.Trainer.PPOBeta = &v
		if err := SaveCheckpoint(CheckpointDir(root, int64(3+i)), ck); !errors.Is(err, ErrFormat) {
			t.Errorf("ppo_beta %v: err %v, want ErrFormat", v, err)
		}
	}
}
