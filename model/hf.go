package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ringtrain/ringtrain/safetensors"
)

// File names of a Hugging Face model directory, ringtrain's own tokenizer file, and the
// key prefix of GPT2LMHeadModel's transformer weights.
const (
	hfConfigFile     = "config.json"
	hfGenerationFile = "generation_config.json"
	hfWeightsFile    = "model.safetensors"
	hfTokenizerFile  = "tokenizer.json"
	ownTokenizerFile = "ringtrain_tokenizer.json"
	hfPrefix         = "transformer."
	hfLMHead         = "lm_head.weight"
)

// hfTokenizerFiles are the Hugging Face tokenizer files a model directory may carry
// (see WithHFTokenizer), in the order they are written.
var hfTokenizerFiles = []string{"merges.txt", "special_tokens_map.json", hfTokenizerFile, "tokenizer_config.json", "vocab.json"}

// ExportOption adds an optional part to an ExportHF export.
type ExportOption func(*exportOptions)

type exportOptions struct {
	eot       *int
	tokenizer []byte
	hf        map[string][]byte
}

// WithEOT records the tokenizer's end-of-text token id as bos_token_id and eos_token_id
// in config.json (without it both are null) and writes generation_config.json with
// the same ids and max_length n_positions.
func WithEOT(id int) ExportOption {
	return func(o *exportOptions) { o.eot = &id }
}

// WithTokenizerJSON writes b, ringtrain's own serialization of the tokenizer, verbatim
// as ringtrain_tokenizer.json when b is non-empty. ExportHF does not interpret it.
func WithTokenizerJSON(b []byte) ExportOption {
	return func(o *exportOptions) { o.tokenizer = b }
}

// WithHFTokenizer writes the Hugging Face tokenizer files (file name -> bytes) verbatim:
// tokenizer.json, vocab.json, merges.txt, tokenizer_config.json and
// special_tokens_map.json are the names allowed; any other is an error wrapping
// ErrFormat. ExportHF does not interpret them; the map is only read.
func WithHFTokenizer(files map[string][]byte) ExportOption {
	return func(o *exportOptions) { o.hf = files }
}

// ExportHF writes the model of shape cfg with parameter slab params to a new directory
// dir as a Hugging Face GPT-2 model that transformers' GPT2LMHeadModel.from_pretrained
// loads: config.json and model.safetensors (keys "transformer.<name>", F32, linear
// weights transposed to Conv1D's [in, out] layout, metadata {"format": "pt"}, no
// lm_head.weight since the head is tied to wte), plus generation_config.json,
// ringtrain_tokenizer.json and the Hugging Face tokenizer files as the options ask.
//
// The write is atomic: files go to a temporary directory next to dir, are fsynced with
// it, and the directory is renamed to dir and its parent fsynced, so dir either does
// not exist or is complete. An existing dir is never overwritten: that returns an error
// wrapping ErrExists. The parent is created if needed. params is only read; tensors
// are streamed, so the export needs little memory beyond params.
func ExportHF(dir string, cfg Config, params []float32, opts ...ExportOption) error {
	var o exportOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := checkModel(cfg, params, o.eot, o.hf); err != nil {
		return fmt.Errorf("model: export %s: %w", dir, err)
	}
	// A PPO model exports as the language model it is; its value head goes to a
	// side file (value.go).
	lm, head := SplitValueHead(cfg, params)
	return writeDirAtomic(dir, func(tmp string) error {
		if _, err := writeHFFiles(tmp, lm, params[:lm.NumParams()], o.eot, o.tokenizer, o.hf); err != nil {
			return err
		}
		return writeValueHead(tmp, cfg, head)
	})
}

// ImportHF reads the Hugging Face GPT-2 directory dir (config.json and
// model.safetensors) and returns its config and a freshly allocated parameter slab
// owned by the caller.
//
// It accepts keys with or without the "transformer." prefix and F32, F16, BF16 or F64
// data; it ignores the attention-mask buffers "h.N.attn.bias" and "h.N.attn.masked_bias"
// and accepts an "lm_head.weight" only if it equals wte bit for bit (ringtrain's head is
// tied). It refuses, with an error wrapping ErrFormat that names the key or tensor:
// configs ringtrain's GPT-2 cannot reproduce (an activation other than gelu_new or its
// equal gelu_pytorch_tanh, layer_norm_epsilon other than 1e-5, n_inner other than
// 4*n_embd, untied embeddings, cross-attention, unscaled or layer-scaled attention),
// missing, unexpected or wrongly shaped tensors, sharded checkpoints, and directories
// that hold only pytorch_model.bin. Bad dimensions wrap ErrBadConfig.
func ImportHF(dir string) (Config, []float32, error) {
	cfg, _, err := readHFConfig(dir)
	if err != nil {
		return Config{}, nil, err
	}
	path, err := hfWeightsPath(dir)
	if err != nil {
		return Config{}, nil, err
	}
	var params []float32
	if err := readSlabFile(path, cfg, []slabGroup{{slab: &params}}, nil); err != nil {
		return Config{}, nil, err
	}
	return cfg, params, nil
}

// checkModel validates what ExportHF and SaveCheckpoint write about the model.
func checkModel(cfg Config, params []float32, eot *int, hf map[string][]byte) error {
	for name := range hf {
		if !slices.Contains(hfTokenizerFiles, name) {
			return fmt.Errorf("%w: %q is not a Hugging Face tokenizer file (want one of %s)", ErrFormat, name, strings.Join(hfTokenizerFiles, ", "))
		}
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if n := cfg.NumParams(); len(params) != n {
		return fmt.Errorf("%w: params has %d floats, config needs %d", ErrShape, len(params), n)
	}
	if eot != nil && (*eot < 0 || *eot >= cfg.VocabSize) {
		return fmt.Errorf("%w: eot token %d outside vocab_size %d", ErrBadConfig, *eot, cfg.VocabSize)
	}
	return nil
}

// writeHFFiles writes config.json, generation_config.json (when eot is known),
// model.safetensors, ringtrain_tokenizer.json (when tokenizer is non-empty) and the
// Hugging Face tokenizer files hf into dir, and returns the SHA-256 of each file
// written.
func writeHFFiles(dir string, cfg Config, params []float32, eot *int, tokenizer []byte, hf map[string][]byte) (map[string][]byte, error) {
	sums := map[string][]byte{}
	writeBytes := func(name string, b []byte) error {
		return writeSynced(dir, name, sums, func(w io.Writer) error {
			_, err := w.Write(b)
			return err
		})
	}
	configJSON, err := hfConfigJSON(cfg, eot)
	if err != nil {
		return nil, err
	}
	if err := writeBytes(hfConfigFile, configJSON); err != nil {
		return nil, err
	}
	if eot != nil {
		gen, err := marshalIndentNoEscape(hfGenerationConfig{BOSTokenID: *eot, EOSTokenID: *eot, MaxLength: cfg.MaxSeqLen})
		if err != nil {
			return nil, fmt.Errorf("model: encode %s: %w", hfGenerationFile, err)
		}
		if err := writeBytes(hfGenerationFile, gen); err != nil {
			return nil, err
		}
	}
	tensors := hfTensors(cfg, params, hfPrefix)
	if err := writeSynced(dir, hfWeightsFile, sums, func(w io.Writer) error {
		return safetensors.Write(w, tensors, map[string]string{"format": "pt"})
	}); err != nil {
		return nil, err
	}
	if len(tokenizer) > 0 {
		if err := writeBytes(ownTokenizerFile, tokenizer); err != nil {
			return nil, err
		}
	}
	for _, name := range hfTokenizerFiles {
		if b, ok := hf[name]; ok {
			if err := writeBytes(name, b); err != nil {
				return nil, err
			}
		}
	}
	return sums, nil
}

// hfGenerationConfig is generation_config.json: what transformers' generate starts
// from.
type hfGenerationConfig struct {
	BOSTokenID int `json:"bos_token_id"`
	EOSTokenID int `json:"eos_token_id"`
	MaxLength  int `json:"max_length"`
}

// isHFTokenizerJSON reports whether b, a tokenizer.json, is in the tokenizers library's
// schema (a "model" member) rather than the one ringtrain wrote under that name before
// it used ringtrain_tokenizer.json (a "kind" member).
func isHFTokenizerJSON(b []byte) bool {
	var probe map[string]json.RawMessage
	if json.Unmarshal(b, &probe) != nil {
		return false
	}
	_, model := probe["model"]
	_, kind := probe["kind"]
	return model && !kind
}

// readTokenizerFiles reads the tokenizer files of dir for which has reports true: own
// is ringtrain's serialization (ringtrain_tokenizer.json or, failing that, a
// tokenizer.json in ringtrain's older use of that name; when plain, a tokenizer.json in
// the Hugging Face schema too, which the tokenizer package also reads) and hf the Hugging
// Face tokenizer files present.
func readTokenizerFiles(dir string, has func(name string) bool, plain bool) (own []byte, hf map[string][]byte, err error) {
	for _, name := range append([]string{ownTokenizerFile}, hfTokenizerFiles...) {
		if !has(name) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, nil, fmt.Errorf("model: %w", err)
		}
		switch {
		case name == ownTokenizerFile:
			own = b
		case name == hfTokenizerFile && !isHFTokenizerJSON(b):
			if own == nil {
				own = b
			}
		default:
			if hf == nil {
				hf = map[string][]byte{}
			}
			hf[name] = b
			if name == hfTokenizerFile && own == nil && plain {
				own = b
			}
		}
	}
	return own, hf, nil
}

// hfConfigOut is config.json as ExportHF writes it, keys in transformers' usual order.
// Floats are json.Numbers so they read as Python writes them (1e-05, 0.0).
type hfConfigOut struct {
	ModelType          string      `json:"model_type"`
	Architectures      []string    `json:"architectures"`
	VocabSize          int         `json:"vocab_size"`
	NPositions         int         `json:"n_positions"`
	NCtx               int         `json:"n_ctx"`
	NEmbd              int         `json:"n_embd"`
	NLayer             int         `json:"n_layer"`
	NHead              int         `json:"n_head"`
	NInner             *int        `json:"n_inner"`
	ActivationFunction string      `json:"activation_function"`
	LayerNormEpsilon   json.Number `json:"layer_norm_epsilon"`
	ResidPdrop         json.Number `json:"resid_pdrop"`
	EmbdPdrop          json.Number `json:"embd_pdrop"`
	AttnPdrop          json.Number `json:"attn_pdrop"`
	InitializerRange   json.Number `json:"initializer_range"`
	BosTokenID         *int        `json:"bos_token_id"`
	EosTokenID         *int        `json:"eos_token_id"`
	TieWordEmbeddings  bool        `json:"tie_word_embeddings"`
	// A reward model (Config.NumLabels 1) is GPT2ForSequenceClassification with one
	// label; it reads the last token before the padding, so it names pad_token_id.
	ID2Label   map[string]string `json:"id2label,omitempty"`
	Label2ID   map[string]int    `json:"label2id,omitempty"`
	PadTokenID *int              `json:"pad_token_id,omitempty"`
	// ValueHead marks a PPO checkpoint whose weights file also holds the value head
	// (value.weight, value.bias); ExportHF leaves it out (see value.go).
	ValueHead bool `json:"ringtrain_value_head,omitempty"`
}

// seqClsArch is the Hugging Face class of a reward model.
const seqClsArch = "GPT2ForSequenceClassification"

func hfConfigJSON(cfg Config, eot *int) ([]byte, error) {
	out := hfConfigOut{
		ModelType:          "gpt2",
		Architectures:      []string{"GPT2LMHeadModel"},
		VocabSize:          cfg.VocabSize,
		NPositions:         cfg.MaxSeqLen,
		NCtx:               cfg.MaxSeqLen,
		NEmbd:              cfg.Embd,
		NLayer:             cfg.Layers,
		NHead:              cfg.Heads,
		ActivationFunction: "gelu_new",
		LayerNormEpsilon:   "1e-05",
		ResidPdrop:         "0.0",
		EmbdPdrop:          "0.0",
		AttnPdrop:          "0.0",
		InitializerRange:   "0.02",
		BosTokenID:         eot,
		EosTokenID:         eot,
		TieWordEmbeddings:  true,
		ValueHead:          cfg.ValueHead,
	}
	if cfg.NumLabels == 1 {
		out.Architectures = []string{seqClsArch}
		out.ID2Label = map[string]string{"0": "LABEL_0"}
		out.Label2ID = map[string]int{"LABEL_0": 0}
		out.PadTokenID = eot
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("model: encode %s: %w", hfConfigFile, err)
	}
	return append(b, '\n'), nil
}

// hfTensors describes slab (laid out for cfg) as safetensors tensors named
// prefix+<name> in Hugging Face layout. Untransposed tensors alias slab; transposed
// ones are produced while writing, one at a time, through a shared scratch buffer, so
// the returned tensors must be written in order by a single Write.
func hfTensors(cfg Config, slab []float32, prefix string) []safetensors.Tensor {
	var scratch []float32
	var out []safetensors.Tensor
	for _, t := range cfg.Tensors() {
		src := slab[t.Offset : t.Offset+t.Size]
		if t.Name == ScoreTensor || isValueTensor(t.Name) {
			// Hugging Face keeps the head beside the transformer, not inside it.
			out = append(out, safetensors.FromFloat32(strings.TrimSuffix(prefix, hfPrefix)+t.Name, t.Shape, src))
			continue
		}
		if !t.Transposed {
			out = append(out, safetensors.FromFloat32(prefix+t.Name, t.Shape, src))
			continue
		}
		rows, cols := t.Shape[0], t.Shape[1] // stored (out, in)
		out = append(out, safetensors.Tensor{
			Name:  prefix + t.Name,
			DType: safetensors.F32,
			Shape: []int{cols, rows}, // Conv1D [in, out]
			Encode: func(w io.Writer) error {
				if cap(scratch) < len(src) {
					scratch = make([]float32, len(src))
				}
				dst := scratch[:len(src)]
				transpose(dst, src, rows, cols)
				return safetensors.WriteFloat32(w, dst)
			},
		})
	}
	return out
}

// transpose writes the (cols, rows) transpose of the row-major (rows, cols) matrix src
// into dst, in tiles to stay cache friendly.
func transpose(dst, src []float32, rows, cols int) {
	const tile = 32
	for r0 := 0; r0 < rows; r0 += tile {
		r1 := min(r0+tile, rows)
		for c0 := 0; c0 < cols; c0 += tile {
			c1 := min(c0+tile, cols)
			for r := r0; r < r1; r++ {
				for c := c0; c < c1; c++ {
					dst[c*rows+r] = src[r*cols+c]
				}
			}
		}
	}
}

// hfWeightsPath returns dir's model.safetensors, or explains why there is none.
func hfWeightsPath(dir string) (string, error) {
	path := filepath.Join(dir, hfWeightsFile)
	_, err := os.Stat(path)
	if err == nil {
		return path, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("model: %w", err)
	}
	if exists(filepath.Join(dir, "model.safetensors.index.json")) {
		return "", fmt.Errorf("%w: %s holds a sharded checkpoint (model.safetensors.index.json); "+
			"save it unsharded with save_pretrained(dir, max_shard_size=\"100GB\")", ErrFormat, dir)
	}
	if exists(filepath.Join(dir, "pytorch_model.bin")) {
		return "", fmt.Errorf("%w: %s holds only pytorch_model.bin; ringtrain reads safetensors, not pickle: "+
			"convert with GPT2LMHeadModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)", ErrFormat, dir)
	}
	return "", fmt.Errorf("%w: %s: no %s: %w", ErrFormat, dir, hfWeightsFile, fs.ErrNotExist)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// readHFConfig reads and checks dir/config.json. It returns the model shape and the
// eos_token_id when that is a single integer.
func readHFConfig(dir string) (Config, *int, error) {
	path := filepath.Join(dir, hfConfigFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, nil, fmt.Errorf("model: %w", err)
	}
	return parseHFConfig(b, path)
}

// parseHFConfig checks a GPT-2 config.json against what ringtrain's model computes.
// Keys that are absent or null take transformers' GPT2Config defaults, which match.
// Errors name path, the file b was read from.
func parseHFConfig(b []byte, path string) (Config, *int, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return Config{}, nil, fmt.Errorf("%w: %s: invalid JSON: %w", ErrFormat, path, err)
	}
	// present reports whether key is set to something other than null.
	present := func(key string) bool {
		v, ok := raw[key]
		return ok && string(v) != "null"
	}
	get := func(key string, v any) error {
		if err := json.Unmarshal(raw[key], v); err != nil {
			return fmt.Errorf("%w: %s: %s = %s: %w", ErrFormat, path, key, raw[key], err)
		}
		return nil
	}
	var c Config
	for _, f := range []struct {
		key string
		dst *int
	}{
		{"n_layer", &c.Layers}, {"n_head", &c.Heads}, {"n_embd", &c.Embd},
		{"n_positions", &c.MaxSeqLen}, {"vocab_size", &c.VocabSize},
	} {
		if !present(f.key) {
			return Config{}, nil, fmt.Errorf("%w: %s: missing %s", ErrFormat, path, f.key)
		}
		if err := get(f.key, f.dst); err != nil {
			return Config{}, nil, err
		}
	}
	if present("architectures") {
		var archs []string
		if err := get("architectures", &archs); err != nil {
			return Config{}, nil, err
		}
		if slices.Contains(archs, seqClsArch) {
			// transformers' default is two labels; a reward model has one.
			c.NumLabels = 2
			if present("id2label") {
				var labels map[string]string
				if err := get("id2label", &labels); err != nil {
					return Config{}, nil, err
				}
				c.NumLabels = len(labels)
			}
			if c.NumLabels != 1 {
				return Config{}, nil, fmt.Errorf("%w: %s: %s with %d labels: only one (a reward model's scalar score) is supported", ErrFormat, path, seqClsArch, c.NumLabels)
			}
		}
	}
	if present(valueHeadKey) {
		if err := get(valueHeadKey, &c.ValueHead); err != nil {
			return Config{}, nil, err
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, nil, fmt.Errorf("%w (in %s)", err, path)
	}

	// Settings that change the computation: each must be absent, null, or the value
	// ringtrain implements.
	if present("model_type") {
		var s string
		if err := get("model_type", &s); err != nil {
			return Config{}, nil, err
		}
		if s != "gpt2" {
			return Config{}, nil, fmt.Errorf("%w: %s: model_type = %q: only \"gpt2\" is supported", ErrFormat, path, s)
		}
	}
	if present("activation_function") {
		var s string
		if err := get("activation_function", &s); err != nil {
			return Config{}, nil, err
		}
		if s != "gelu_new" && s != "gelu_pytorch_tanh" { // both are the tanh approximation
			return Config{}, nil, fmt.Errorf("%w: %s: activation_function = %q: only \"gelu_new\" (tanh GELU) is supported", ErrFormat, path, s)
		}
	}
	if present("layer_norm_epsilon") {
		var eps float64
		if err := get("layer_norm_epsilon", &eps); err != nil {
			return Config{}, nil, err
		}
		if eps != 1e-5 {
			return Config{}, nil, fmt.Errorf("%w: %s: layer_norm_epsilon = %s: only 1e-05 is supported", ErrFormat, path, raw["layer_norm_epsilon"])
		}
	}
	if present("n_inner") {
		var n int
		if err := get("n_inner", &n); err != nil {
			return Config{}, nil, err
		}
		if n != 4*c.Embd {
			return Config{}, nil, fmt.Errorf("%w: %s: n_inner = %d: only null or 4*n_embd = %d is supported", ErrFormat, path, n, 4*c.Embd)
		}
	}
	for _, f := range []struct {
		key  string
		want bool
		why  string
	}{
		{"tie_word_embeddings", true, "untied LM heads are not supported"},
		{"scale_attn_weights", true, "attention scores must be scaled by 1/sqrt(head_dim)"},
		{"scale_attn_by_inverse_layer_idx", false, "per-layer attention scaling is not supported"},
		{"add_cross_attention", false, "cross-attention is not supported"},
	} {
		if !present(f.key) {
			continue
		}
		var v bool
		if err := get(f.key, &v); err != nil {
			return Config{}, nil, err
		}
		if v != f.want {
			return Config{}, nil, fmt.Errorf("%w: %s: %s = %v: %s", ErrFormat, path, f.key, v, f.why)
		}
	}
	var eot *int
	if present("eos_token_id") {
		var id int
		if json.Unmarshal(raw["eos_token_id"], &id) == nil && id >= 0 && id < c.VocabSize {
			eot = &id
		}
	}
	return c, eot, nil
}

// slabGroup is one slab-shaped set of tensors in a safetensors file: the tensors named
// prefix+[transformer.]<name>, read into *slab, which readSlabs allocates once the
// file's header has matched the config.
type slabGroup struct {
	prefix string
	slab   *[]float32
}

// readSlabFile opens the safetensors file at path and reads every group's tensors,
// in Hugging Face layout, into the group's slab (see readSlabs). check, when non-nil,
// inspects the file's metadata first.
func readSlabFile(path string, cfg Config, groups []slabGroup, check func(meta map[string]string) error) error {
	f, err := safetensors.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrFormat, err)
	}
	defer f.Close()
	if check != nil {
		if err := check(f.Metadata()); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrFormat, path, err)
		}
	}
	return readSlabs(f, path, cfg, groups)
}

// slabRead is one tensor of the file that fills tensor i of group g.
type slabRead struct {
	key  string
	g, i int
}

// readSlabs fills each group's slab from f. Every parameter tensor of cfg must appear
// exactly once per group (with or without the "transformer." prefix) with its Hugging
// Face shape. In a single group with no prefix (a model file) attention-mask buffers
// are skipped and an lm_head.weight must equal wte. Any other key is an error.
//
// The whole header is matched against cfg before any slab is allocated, so a config
// that claims more than the file holds costs nothing; the safetensors reader has
// checked that every tensor's bytes lie within the file. A tensor holding a NaN or an
// infinity is refused with its name. Errors name path, the file f was read from.
func readSlabs(f *safetensors.File, path string, cfg Config, groups []slabGroup) error {
	params := cfg.Tensors()
	index := make(map[string]int, len(params))
	for i, t := range params {
		index[t.Name] = i
	}
	modelFile := len(groups) == 1 && groups[0].prefix == ""
	keys := make([][]string, len(groups)) // keys[g][i]: key that fills tensor i of group g
	for g := range keys {
		keys[g] = make([]string, len(params))
	}
	var reads []slabRead
	var lmHead string
	for _, info := range f.Tensors() {
		key := info.Name
		if modelFile && key == hfLMHead {
			if want := []int{cfg.VocabSize, cfg.Embd}; !slices.Equal(info.Shape, want) {
				return fmt.Errorf("%w: %s: tensor %q has shape %v, config needs %v", ErrFormat, path, hfLMHead, info.Shape, want)
			}
			lmHead = key
			continue
		}
		g := slices.IndexFunc(groups, func(sg slabGroup) bool { return strings.HasPrefix(key, sg.prefix) })
		if g < 0 {
			return fmt.Errorf("%w: %s: unexpected tensor %q", ErrFormat, path, key)
		}
		name := strings.TrimPrefix(strings.TrimPrefix(key, groups[g].prefix), hfPrefix)
		i, ok := index[name]
		if !ok {
			if modelFile && isAttentionBuffer(name) {
				continue
			}
			return fmt.Errorf("%w: %s: unexpected tensor %q: not a GPT-2 parameter of this config", ErrFormat, path, key)
		}
		if prev := keys[g][i]; prev != "" {
			return fmt.Errorf("%w: %s: tensor %q duplicates %q", ErrFormat, path, key, prev)
		}
		keys[g][i] = key
		if want := hfShape(params[i]); !slices.Equal(info.Shape, want) {
			return fmt.Errorf("%w: %s: tensor %q has shape %v, config needs %v", ErrFormat, path, key, info.Shape, want)
		}
		reads = append(reads, slabRead{key: key, g: g, i: i})
	}
	for g := range groups {
		var missing []string
		for i, k := range keys[g] {
			if k == "" {
				missing = append(missing, groups[g].prefix+hfPrefix+params[i].Name)
			}
		}
		if len(missing) > 0 {
			more := ""
			if len(missing) > 4 {
				more = fmt.Sprintf(" and %d more", len(missing)-4)
				missing = missing[:4]
			}
			return fmt.Errorf("%w: %s: missing tensor %s%s", ErrFormat, path, strings.Join(quoteAll(missing), ", "), more)
		}
	}

	// The header matches the config: every float of every slab is backed by the file.
	n := cfg.NumParams()
	for _, sg := range groups {
		*sg.slab = make([]float32, n)
	}
	var scratch []float32
	for _, r := range reads {
		t := params[r.i]
		dst := (*groups[r.g].slab)[t.Offset : t.Offset+t.Size]
		if t.Transposed {
			if cap(scratch) < t.Size {
				scratch = make([]float32, t.Size)
			}
			hf := scratch[:t.Size]
			if err := f.ReadFloat32(r.key, hf); err != nil {
				return fmt.Errorf("%w: %w", ErrFormat, err)
			}
			transpose(dst, hf, t.Shape[1], t.Shape[0]) // [in, out] -> stored (out, in)
		} else if err := f.ReadFloat32(r.key, dst); err != nil {
			return fmt.Errorf("%w: %w", ErrFormat, err)
		}
		if j := nonFinite(dst); j >= 0 {
			return fmt.Errorf("%w: %s: tensor %q holds %v at element %d: weights must be finite", ErrFormat, path, r.key, dst[j], j)
		}
	}
	if lmHead != "" {
		return checkTiedHead(f, path, cfg, *groups[0].slab)
	}
	return nil
}

// nonFinite returns the index of the first NaN or infinity in x, or -1.
func nonFinite(x []float32) int {
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return i
		}
	}
	return -1
}

// checkTiedHead accepts an lm_head.weight only when it is wte itself.
func checkTiedHead(f *safetensors.File, path string, cfg Config, slab []float32) error {
	head, err := f.Float32(hfLMHead)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrFormat, err)
	}
	wte := slab[:cfg.VocabSize*cfg.Embd]
	for i := range head {
		if math.Float32bits(head[i]) != math.Float32bits(wte[i]) {
			return fmt.Errorf("%w: %s: tensor %q differs from wte.weight at element %d: untied LM heads are not supported",
				ErrFormat, path, hfLMHead, i)
		}
	}
	return nil
}

// hfShape is t's shape in Hugging Face layout.
func hfShape(t Tensor) []int {
	if t.Transposed {
		return []int{t.Shape[1], t.Shape[0]}
	}
	return t.Shape
}

// isAttentionBuffer reports the non-parameter causal-mask buffers older transformers
// versions save as h.N.attn.bias and h.N.attn.masked_bias.
func isAttentionBuffer(name string) bool {
	rest, ok := strings.CutPrefix(name, "h.")
	if !ok {
		return false
	}
	layer, buf, ok := strings.Cut(rest, ".")
	if !ok || layer == "" || strings.Trim(layer, "0123456789") != "" {
		return false
	}
	return buf == "attn.bias" || buf == "attn.masked_bias"
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}

// ReadConfig returns the model shape recorded in the config.json of a checkpoint or a
// Hugging Face GPT-2 directory, without reading the weights.
func ReadConfig(dir string) (Config, error) {
	c, _, err := readHFConfig(dir)
	return c, err
}
