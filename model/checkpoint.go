package model

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/ringtrain/ringtrain/internal/durable"
	"github.com/ringtrain/ringtrain/safetensors"
)

// Sentinel errors of checkpoint reading and writing (see also ErrBadConfig and ErrShape).
var (
	// ErrChecksum reports a checkpoint file whose SHA-256 does not match SHA256SUMS, a
	// file SHA256SUMS lists that is missing, a checkpoint file SHA256SUMS does not
	// cover, or a malformed SHA256SUMS: the checkpoint is torn or tampered with.
	ErrChecksum = errors.New("model: checkpoint checksum mismatch")
	// ErrExists reports that the destination directory of a save or export exists.
	ErrExists = errors.New("model: checkpoint directory already exists")
	// ErrFormat reports a file that is malformed or describes a model ringtrain cannot
	// represent: bad JSON, an unsupported config value, missing, unexpected or
	// misshapen tensors, an unknown format version.
	ErrFormat = errors.New("model: unsupported or malformed checkpoint")
	// ErrNoCheckpoint reports that a checkpoint root holds no complete checkpoint.
	ErrNoCheckpoint = errors.New("model: no checkpoint found")
)

// CheckpointFormatVersion is the version of ringtrain's checkpoint layout written to
// trainer_state.json. LoadCheckpoint refuses newer versions.
const CheckpointFormatVersion = 1

// File names of a ringtrain checkpoint beyond the Hugging Face ones.
const (
	optimizerFile    = "optimizer.safetensors"
	trainerStateFile = "trainer_state.json"
	sumsFile         = "SHA256SUMS"
	expAvgPrefix     = "exp_avg."
	expAvgSqPrefix   = "exp_avg_sq."
	adamwStepKey     = "adamw_step"
)

// TrainerState is the training progress saved in trainer_state.json.
type TrainerState struct {
	// FormatVersion is the checkpoint layout version. SaveCheckpoint always writes
	// CheckpointFormatVersion; LoadCheckpoint returns what the file holds.
	FormatVersion int `json:"format_version"`
	// Step is the number of completed optimizer steps of the run.
	Step int64 `json:"step"`
	// Seed is the job seed that fixes data order and initialisation.
	Seed uint64 `json:"seed"`
	// TokensSeen counts the tokens the training steps so far processed over the
	// global batch (for ppo the prompt and answer tokens of its rollouts).
	TokensSeen int64 `json:"tokens_seen"`
	// Loss is the loss of the last step. It must be finite (JSON has no NaN).
	Loss float64 `json:"loss"`
	// ValLoss is the validation loss measured at Step, or nil when the run did not
	// evaluate at Step. It must be finite. Checkpoint retention keeps the checkpoint
	// with the lowest.
	ValLoss *float64 `json:"val_loss,omitempty"`
	// AdamWStep is the optimizer's bias-correction step. SaveCheckpoint sets it from
	// Checkpoint.Opt when that is non-nil.
	AdamWStep int64 `json:"adamw_step"`
	// Job holds the trainer's own settings as JSON, opaque to this package. It is
	// stored with insignificant whitespace removed, and LoadCheckpoint returns that
	// compact form. Empty means none.
	Job json.RawMessage `json:"job,omitempty"`
	// ChatTemplate names the chat template (package chat) the model was fine-tuned
	// with, so generation renders prompts as training did; "" when it was not.
	ChatTemplate string `json:"chat_template,omitempty"`
	// PPOBeta is a ppo policy's KL coefficient for its next step (which an adaptive
	// KL controller changes as it trains); nil for the other objectives.
	PPOBeta *float64 `json:"ppo_beta,omitempty"`
}

// Checkpoint is everything needed to resume training bit-identically.
type Checkpoint struct {
	Config Config
	// Params is the parameter slab (Config.NumParams() floats).
	Params []float32
	// Opt is the optimizer state, or nil when the checkpoint has none (a plain Hugging
	// Face directory, or a save without it).
	Opt *AdamW
	// Trainer is the training progress; zero for a plain Hugging Face directory.
	Trainer TrainerState
	// Tokenizer holds ringtrain's own serialization of the tokenizer, written verbatim
	// as ringtrain_tokenizer.json; nil when absent. Load returns that file, or for a
	// checkpoint an older ringtrain wrote, its tokenizer.json in ringtrain's schema, or
	// for a plain Hugging Face directory without ringtrain_tokenizer.json its
	// tokenizer.json in the tokenizers library's schema (package tokenizer reads all of
	// them).
	Tokenizer []byte
	// HFTokenizer holds the Hugging Face tokenizer files (tokenizer.json, vocab.json,
	// merges.txt, tokenizer_config.json, special_tokens_map.json; file name -> bytes),
	// written and returned verbatim; nil when there are none.
	HFTokenizer map[string][]byte
	// EOT is the tokenizer's end-of-text id, written as bos_token_id and eos_token_id
	// in config.json and generation_config.json; nil writes null and no
	// generation_config.json. Load sets it from eos_token_id.
	EOT *int
}

// CheckpointDir returns the directory name of the checkpoint of step under root
// (root/step-000123). LatestCheckpoint finds directories named this way.
func CheckpointDir(root string, step int64) string {
	return filepath.Join(root, fmt.Sprintf("step-%06d", step))
}

// SaveCheckpoint writes ck to the new directory dir: a Hugging Face GPT-2 directory
// exactly as ExportHF writes it (config.json, generation_config.json when ck.EOT is
// set, model.safetensors, ringtrain_tokenizer.json when ck.Tokenizer is non-empty, the
// Hugging Face tokenizer files of ck.HFTokenizer), plus optimizer.safetensors when
// ck.Opt is non-nil (F32 tensors "exp_avg.transformer.<name>" and
// "exp_avg_sq.transformer.<name>" in the same layout as the weights, metadata
// "adamw_step"), trainer_state.json, and SHA256SUMS listing the SHA-256 of every other
// file in sha256sum's format.
//
// The write is atomic: everything is written to a temporary directory next to dir
// (named ".<base>.tmp-*", which LatestCheckpoint ignores), each file and the directory
// are fsynced, the directory is renamed to dir and the parent fsynced. After a crash dir
// is either absent or complete; a temporary directory may be left behind. An existing
// dir is never overwritten: that returns an error wrapping ErrExists. Two concurrent
// saves to the same dir are not supported. SaveCheckpoint only reads ck; large tensors
// are streamed, not copied.
func SaveCheckpoint(dir string, ck *Checkpoint) error {
	if err := checkCheckpoint(ck); err != nil {
		return fmt.Errorf("model: save checkpoint %s: %w", dir, err)
	}
	state := ck.Trainer
	state.FormatVersion = CheckpointFormatVersion
	if ck.Opt != nil {
		state.AdamWStep = ck.Opt.Step
	}
	if len(state.Job) > 0 {
		var b bytes.Buffer
		if err := json.Compact(&b, state.Job); err != nil {
			return fmt.Errorf("%w: save checkpoint %s: trainer job is not valid JSON: %w", ErrFormat, dir, err)
		}
		state.Job = b.Bytes()
	}
	stateJSON, err := marshalIndentNoEscape(state)
	if err != nil {
		return fmt.Errorf("model: save checkpoint %s: encode trainer state: %w", dir, err)
	}
	return writeDirAtomic(dir, func(tmp string) error {
		sums, err := writeHFFiles(tmp, ck.Config, ck.Params, ck.EOT, ck.Tokenizer, ck.HFTokenizer)
		if err != nil {
			return err
		}
		if ck.Opt != nil {
			tensors := append(hfTensors(ck.Config, ck.Opt.M, expAvgPrefix+hfPrefix),
				hfTensors(ck.Config, ck.Opt.V, expAvgSqPrefix+hfPrefix)...)
			meta := map[string]string{"format": "pt", adamwStepKey: strconv.FormatInt(ck.Opt.Step, 10)}
			if err := writeSynced(tmp, optimizerFile, sums, func(w io.Writer) error {
				return safetensors.Write(w, tensors, meta)
			}); err != nil {
				return err
			}
		}
		if err := writeSynced(tmp, trainerStateFile, sums, func(w io.Writer) error {
			_, err := w.Write(stateJSON)
			return err
		}); err != nil {
			return err
		}
		names := make([]string, 0, len(sums))
		for name := range sums {
			names = append(names, name)
		}
		slices.Sort(names)
		return writeSynced(tmp, sumsFile, nil, func(w io.Writer) error {
			for _, name := range names {
				if _, err := fmt.Fprintf(w, "%x  %s\n", sums[name], name); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

func checkCheckpoint(ck *Checkpoint) error {
	if ck == nil {
		return fmt.Errorf("%w: nil checkpoint", ErrShape)
	}
	if err := checkModel(ck.Config, ck.Params, ck.EOT, ck.HFTokenizer); err != nil {
		return err
	}
	if o := ck.Opt; o != nil {
		n := ck.Config.NumParams()
		if len(o.M) != n || len(o.V) != n {
			return fmt.Errorf("%w: adamw moments have %d and %d floats, config needs %d", ErrShape, len(o.M), len(o.V), n)
		}
		if o.Step < 0 {
			return fmt.Errorf("%w: adamw step %d is negative", ErrFormat, o.Step)
		}
	}
	if l := ck.Trainer.Loss; math.IsNaN(l) || math.IsInf(l, 0) {
		return fmt.Errorf("%w: trainer loss %v is not finite and cannot be stored in JSON", ErrFormat, l)
	}
	if v := ck.Trainer.ValLoss; v != nil && (math.IsNaN(*v) || math.IsInf(*v, 0)) {
		return fmt.Errorf("%w: trainer val_loss %v is not finite and cannot be stored in JSON", ErrFormat, *v)
	}
	if b := ck.Trainer.PPOBeta; b != nil && (!(*b > 0) || math.IsInf(*b, 0)) {
		return fmt.Errorf("%w: trainer ppo_beta %v must be a finite number > 0", ErrFormat, *b)
	}
	return nil
}

// LoadCheckpoint reads the checkpoint in dir. The returned Checkpoint and its slices
// are freshly allocated and owned by the caller.
//
// For a ringtrain checkpoint (one with SHA256SUMS) it first verifies the SHA-256 of
// every file SHA256SUMS lists and refuses, with an error wrapping ErrChecksum that
// names the file, a mismatch, a listed file that is missing (also wrapping
// fs.ErrNotExist), or a checkpoint file present but not listed; then it checks the
// format version, that the optimizer's step matches the trainer state, and every
// tensor as ImportHF does. Files are verified before they are parsed, but not locked:
// a writer modifying dir during the load is not detected.
//
// A plain Hugging Face GPT-2 directory (no SHA256SUMS, no trainer_state.json or
// optimizer.safetensors) loads as ImportHF reads it, with Opt nil, a zero Trainer and
// the tokenizer files present (see Checkpoint.Tokenizer).
func LoadCheckpoint(dir string) (*Checkpoint, error) {
	sumsPath := filepath.Join(dir, sumsFile)
	_, err := os.Stat(sumsPath)
	own := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("model: %w", err)
	}
	if !own {
		for _, name := range []string{trainerStateFile, optimizerFile} {
			if exists(filepath.Join(dir, name)) {
				return nil, fmt.Errorf("%w: %s has %s but no %s: torn or tampered checkpoint", ErrChecksum, dir, name, sumsFile)
			}
		}
	}
	var listed map[string]bool
	if own {
		if listed, err = verifySums(dir); err != nil {
			return nil, err
		}
	}

	ck := &Checkpoint{}
	ck.Config, ck.EOT, err = readHFConfig(dir)
	if err != nil {
		return nil, err
	}
	weights, err := hfWeightsPath(dir)
	if err != nil {
		return nil, err
	}
	if err := readSlabFile(weights, ck.Config, []slabGroup{{slab: &ck.Params}}, nil); err != nil {
		return nil, err
	}
	// In a ringtrain checkpoint verifySums has refused unlisted tokenizer files.
	has := func(name string) bool { return listed[name] || (!own && exists(filepath.Join(dir, name))) }
	if ck.Tokenizer, ck.HFTokenizer, err = readTokenizerFiles(dir, has, !own); err != nil {
		return nil, err
	}
	if !own {
		return ck, nil
	}

	if ck.Trainer, err = readTrainerState(filepath.Join(dir, trainerStateFile)); err != nil {
		return nil, err
	}
	if listed[optimizerFile] {
		path := filepath.Join(dir, optimizerFile)
		opt := &AdamW{tensors: ck.Config.Tensors()} // M and V are allocated once the file's header matches
		checkStep := func(meta map[string]string) error {
			s, ok := meta[adamwStepKey]
			if !ok {
				return fmt.Errorf("metadata has no %q", adamwStepKey)
			}
			step, err := strconv.ParseInt(s, 10, 64)
			if err != nil || step < 0 {
				return fmt.Errorf("metadata %s = %q is not a step count", adamwStepKey, s)
			}
			if step != ck.Trainer.AdamWStep {
				return fmt.Errorf("metadata %s = %d but %s has adamw_step %d", adamwStepKey, step, trainerStateFile, ck.Trainer.AdamWStep)
			}
			opt.Step = step
			return nil
		}
		groups := []slabGroup{{prefix: expAvgPrefix, slab: &opt.M}, {prefix: expAvgSqPrefix, slab: &opt.V}}
		if err := readSlabFile(path, ck.Config, groups, checkStep); err != nil {
			return nil, err
		}
		ck.Opt = opt
	}
	return ck, nil
}

// ReadTrainerState reads the trainer_state.json of the ringtrain checkpoint in dir
// without the weights and without verifying SHA256SUMS (LoadCheckpoint does both): a
// cheap look at a checkpoint's step and losses.
func ReadTrainerState(dir string) (TrainerState, error) {
	return readTrainerState(filepath.Join(dir, trainerStateFile))
}

func readTrainerState(path string) (TrainerState, error) {
	var st TrainerState
	b, err := os.ReadFile(path)
	if err != nil {
		return st, fmt.Errorf("model: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%w: %s: %w", ErrFormat, path, err)
	}
	switch {
	case st.FormatVersion < 1:
		return st, fmt.Errorf("%w: %s: format_version = %d: missing or invalid", ErrFormat, path, st.FormatVersion)
	case st.FormatVersion > CheckpointFormatVersion:
		return st, fmt.Errorf("%w: %s: format_version = %d: this ringtrain reads up to %d; upgrade it",
			ErrFormat, path, st.FormatVersion, CheckpointFormatVersion)
	}
	if len(st.Job) > 0 {
		var c bytes.Buffer
		if err := json.Compact(&c, st.Job); err != nil {
			return st, fmt.Errorf("%w: %s: job: %w", ErrFormat, path, err)
		}
		st.Job = c.Bytes()
	}
	return st, nil
}

// checkpointFiles are the files a ringtrain checkpoint may hold besides SHA256SUMS;
// each one present must be listed there.
var checkpointFiles = append([]string{hfConfigFile, hfGenerationFile, hfWeightsFile, optimizerFile, trainerStateFile, ownTokenizerFile},
	hfTokenizerFiles...)

// verifySums checks every file SHA256SUMS in dir lists and returns the listed names.
func verifySums(dir string) (map[string]bool, error) {
	sumsPath := filepath.Join(dir, sumsFile)
	want, err := readSums(sumsPath)
	if err != nil {
		return nil, err
	}
	listed := make(map[string]bool, len(want))
	for name := range want {
		listed[name] = true
	}
	for _, name := range []string{hfConfigFile, hfWeightsFile, trainerStateFile} {
		if !listed[name] {
			return nil, fmt.Errorf("%w: %s does not list %s", ErrChecksum, sumsPath, name)
		}
	}
	for _, name := range checkpointFiles {
		if !listed[name] && exists(filepath.Join(dir, name)) {
			return nil, fmt.Errorf("%w: %s is not covered by %s", ErrChecksum, filepath.Join(dir, name), sumsPath)
		}
	}
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		path := filepath.Join(dir, name)
		got, err := fileSHA256(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%w: %s is listed in %s but missing: %w", ErrChecksum, path, sumsFile, err)
			}
			return nil, fmt.Errorf("model: verify %s: %w", path, err)
		}
		if !bytes.Equal(got, want[name]) {
			return nil, fmt.Errorf("%w: %s has sha256 %x, %s says %x", ErrChecksum, path, got, sumsFile, want[name])
		}
	}
	return listed, nil
}

// readSums parses a SHA256SUMS file: lines "<64 hex>  <name>" (or " *<name>", binary
// mode), where every name is a plain file name listed once.
func readSums(path string) (map[string][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	return parseSums(b, path)
}

// parseSums parses the bytes of a SHA256SUMS file read from path (named in errors).
func parseSums(b []byte, path string) (map[string][]byte, error) {
	sums := map[string][]byte{}
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		bad := func(why string) error {
			return fmt.Errorf("%w: %s line %d: %s", ErrChecksum, path, i+1, why)
		}
		if len(line) < 67 || (line[64:66] != "  " && line[64:66] != " *") {
			return nil, bad(`want "<sha256 hex>  <file>"`)
		}
		sum, err := hex.DecodeString(line[:64])
		if err != nil {
			return nil, bad("bad hex digest")
		}
		name := line[66:]
		if name != filepath.Base(name) || name == "." || name == ".." || name == sumsFile || strings.ContainsAny(name, `/\`) {
			return nil, bad(fmt.Sprintf("file name %q is not a plain name in the checkpoint", name))
		}
		if _, dup := sums[name]; dup {
			return nil, bad(fmt.Sprintf("file %q listed twice", name))
		}
		sums[name] = sum
	}
	return sums, nil
}

func fileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// CheckpointDigest returns the hex SHA-256 of dir's SHA256SUMS file. Because that file
// lists the SHA-256 of every other file, the digest identifies the whole checkpoint: it
// is what a durable record of the checkpoint should hold. It does not verify the files.
func CheckpointDigest(dir string) (string, error) {
	sum, err := fileSHA256(filepath.Join(dir, sumsFile))
	if err != nil {
		return "", fmt.Errorf("model: checkpoint digest: %w", err)
	}
	return hex.EncodeToString(sum), nil
}

// VerifyDigest checks that dir is the checkpoint whose CheckpointDigest is want (a
// digest committed through the coordinator). A different digest is an error wrapping
// ErrChecksum that names dir's SHA256SUMS and both digests: the files on disk are not
// the checkpoint that was committed. LoadCheckpoint then verifies every file against
// SHA256SUMS.
func VerifyDigest(dir, want string) error {
	got, err := CheckpointDigest(dir)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%w: %s has digest %s, but the committed checkpoint's is %s: the files are not the committed checkpoint",
			ErrChecksum, filepath.Join(dir, sumsFile), got, want)
	}
	return nil
}

var stepDirPattern = regexp.MustCompile(`^step-([0-9]+)$`)

// LatestCheckpoint returns the path of the checkpoint with the highest step among the
// directories named step-<N> (see CheckpointDir) directly under root that contain
// SHA256SUMS. Anything else, such as the temporary directories of an interrupted
// save, is ignored. It reads only directory listings: LoadCheckpoint verifies the
// contents. It returns an error wrapping ErrNoCheckpoint when there is none (also when
// root does not exist).
func LatestCheckpoint(root string) (string, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%w: %w", ErrNoCheckpoint, err)
		}
		return "", fmt.Errorf("model: %w", err)
	}
	best, bestStep := "", int64(-1)
	for _, e := range entries {
		m := stepDirPattern.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue
		}
		step, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil || step <= bestStep {
			continue
		}
		if st, err := os.Stat(filepath.Join(root, e.Name(), sumsFile)); err != nil || !st.Mode().IsRegular() {
			continue
		}
		best, bestStep = filepath.Join(root, e.Name()), step
	}
	if best == "" {
		return "", fmt.Errorf("%w under %s", ErrNoCheckpoint, root)
	}
	return best, nil
}

// CheckpointRef names a checkpoint directory under a checkpoint root and its step.
type CheckpointRef struct {
	Dir  string
	Step int64
}

// ListCheckpoints returns the complete checkpoints directly under root, as
// LatestCheckpoint counts them (directories named step-<N> that contain SHA256SUMS),
// in increasing step order. It reads only directory listings. A missing root holds
// none.
func ListCheckpoints(root string) ([]CheckpointRef, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("model: %w", err)
	}
	var refs []CheckpointRef
	for _, e := range entries {
		m := stepDirPattern.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue
		}
		step, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			continue
		}
		if st, err := os.Stat(filepath.Join(root, e.Name(), sumsFile)); err != nil || !st.Mode().IsRegular() {
			continue
		}
		refs = append(refs, CheckpointRef{Dir: filepath.Join(root, e.Name()), Step: step})
	}
	slices.SortStableFunc(refs, func(a, b CheckpointRef) int { return cmp.Compare(a.Step, b.Step) })
	return refs, nil
}

// writeDirAtomic creates dir with durable.WriteDir: fill writes into a fresh temporary
// directory next to dir, which is fsynced, renamed into place and its parent fsynced.
// It refuses an existing dir with ErrExists and a path that names no directory with
// ErrFormat, and removes the temporary directory on failure.
func writeDirAtomic(dir string, fill func(tmp string) error) error {
	err := durable.WriteDir(context.Background(), dir, fill)
	switch {
	case errors.Is(err, durable.ErrExists):
		return fmt.Errorf("%w: %s", ErrExists, filepath.Clean(dir))
	case errors.Is(err, durable.ErrBadPath):
		return fmt.Errorf("%w: %q is not a directory name to create", ErrFormat, filepath.Clean(dir))
	case err != nil:
		return fmt.Errorf("model: %w", err)
	}
	return nil
}

// writeSynced creates dir/name (durable.CreateFile, mode 0644), writes it with fn
// through a buffer, fsyncs and closes it. When sums is non-nil it records the SHA-256
// of the bytes written under name.
func writeSynced(dir, name string, sums map[string][]byte, fn func(w io.Writer) error) error {
	h := sha256.New()
	err := durable.CreateFile(filepath.Join(dir, name), 0o644, func(f io.Writer) error {
		bw := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
		if err := fn(bw); err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return fmt.Errorf("model: %w", err)
	}
	if sums != nil {
		sums[name] = h.Sum(nil)
	}
	return nil
}

// marshalIndentNoEscape encodes v as indented JSON with a final newline, leaving <, >
// and & as they are.
func marshalIndentNoEscape(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
