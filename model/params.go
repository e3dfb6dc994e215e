package model

import "fmt"

// Tensor describes one named parameter tensor inside the flat slab.
//
// Names are Hugging Face GPT-2 names without the "transformer." prefix. Linear weights
// are stored (out, in) like torch.nn.Linear, i.e. transposed with respect to Hugging
// Face's Conv1D [in, out]; Transposed marks those, and the checkpoint code transposes
// them on export and import.
type Tensor struct {
	Name       string
	Shape      []int // shape as stored in the slab
	Offset     int   // first element in the slab
	Size       int   // number of elements
	Decay      bool  // AdamW applies weight decay (2-D weights only, not biases or LayerNorm)
	Transposed bool  // stored (out,in); Hugging Face stores (in,out)
}

// Block holds the typed views of one transformer layer.
type Block struct {
	Ln1W, Ln1B       []float32 // (C)
	QKVW             []float32 // (3C, C)
	QKVB             []float32 // (3C)
	AttnProjW        []float32 // (C, C)
	AttnProjB        []float32 // (C)
	Ln2W, Ln2B       []float32 // (C)
	FcW              []float32 // (4C, C)
	FcB              []float32 // (4C)
	FcProjW          []float32 // (C, 4C)
	FcProjB          []float32 // (C)
	first, afterLast int       // slab range of this block
}

// Params is a set of typed views over one flat []float32 slab. The same type views the
// gradient slab. The slab order is: wte, wpe, then each layer's tensors contiguously
// (layer 0 first), then the final LayerNorm, then a reward model's score head or a PPO value head. Keeping a layer contiguous lets a worker
// start all-reducing a layer's gradients as soon as backward has finished it.
type Params struct {
	Slab   []float32
	Wte    []float32 // (V, C), also the LM head
	Wpe    []float32 // (maxT, C)
	Blocks []Block   // (L)
	LnfW   []float32 // (C)
	LnfB   []float32 // (C)
	Score  []float32 // (NumLabels, C): a reward model's head; nil for a language model
	Value  []float32 // (1, C): a PPO value head's weight (Config.ValueHead); else nil
	ValueB []float32 // (1): the value head's bias; else nil
}

// ScoreTensor names a reward model's head, the last tensor of its slab.
const ScoreTensor = "score.weight"

type layout struct {
	tensors []Tensor
	size    int
}

func layoutOf(c Config) layout {
	var l layout
	add := func(name string, decay, transposed bool, shape ...int) {
		n := 1
		for _, d := range shape {
			n *= d
		}
		l.tensors = append(l.tensors, Tensor{Name: name, Shape: shape, Offset: l.size, Size: n, Decay: decay, Transposed: transposed})
		l.size += n
	}
	C := c.Embd
	add("wte.weight", true, false, c.VocabSize, C)
	add("wpe.weight", true, false, c.MaxSeqLen, C)
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("h.%d.", i)
		add(p+"ln_1.weight", false, false, C)
		add(p+"ln_1.bias", false, false, C)
		add(p+"attn.c_attn.weight", true, true, 3*C, C)
		add(p+"attn.c_attn.bias", false, false, 3*C)
		add(p+"attn.c_proj.weight", true, true, C, C)
		add(p+"attn.c_proj.bias", false, false, C)
		add(p+"ln_2.weight", false, false, C)
		add(p+"ln_2.bias", false, false, C)
		add(p+"mlp.c_fc.weight", true, true, 4*C, C)
		add(p+"mlp.c_fc.bias", false, false, 4*C)
		add(p+"mlp.c_proj.weight", true, true, C, 4*C)
		add(p+"mlp.c_proj.bias", false, false, C)
	}
	add("ln_f.weight", false, false, C)
	add("ln_f.bias", false, false, C)
	if c.NumLabels > 0 {
		add(ScoreTensor, true, false, c.NumLabels, C)
	}
	if c.ValueHead {
		add(ValueTensor, true, false, 1, C)
		add(ValueBiasTensor, false, false, 1)
	}
	return l
}

// Tensors lists the parameter tensors of a model of this shape in slab order.
// The returned slice is freshly allocated and owned by the caller.
func (c Config) Tensors() []Tensor {
	return layoutOf(c).tensors
}

// NewParams allocates a zeroed slab for c and returns its views.
func NewParams(c Config) *Params {
	return ViewParams(c, make([]float32, c.NumParams()))
}

// ViewParams builds typed views over an existing slab of length c.NumParams().
// It panics if the slab has the wrong length: that is a programming error.
func ViewParams(c Config, slab []float32) *Params {
	l := layoutOf(c)
	if len(slab) != l.size {
		panic(fmt.Sprintf("model: slab has %d floats, config needs %d", len(slab), l.size))
	}
	p := &Params{Slab: slab, Blocks: make([]Block, c.Layers)}
	i := 0
	next := func() []float32 {
		t := l.tensors[i]
		i++
		return slab[t.Offset : t.Offset+t.Size : t.Offset+t.Size]
	}
	p.Wte = next()
	p.Wpe = next()
	for li := range p.Blocks {
		b := &p.Blocks[li]
		b.first = l.tensors[i].Offset
		b.Ln1W, b.Ln1B = next(), next()
		b.QKVW, b.QKVB = next(), next()
		b.AttnProjW, b.AttnProjB = next(), next()
		b.Ln2W, b.Ln2B = next(), next()
		b.FcW, b.FcB = next(), next()
		b.FcProjW, b.FcProjB = next(), next()
		b.afterLast = l.tensors[i-1].Offset + l.tensors[i-1].Size
	}
	p.LnfW = next()
	p.LnfB = next()
	if c.NumLabels > 0 {
		p.Score = next()
	}
	if c.ValueHead {
		p.Value, p.ValueB = next(), next()
	}
	return p
}

// Range returns the slab range [first, afterLast) of the layer's tensors.
func (b *Block) Range() (first, afterLast int) { return b.first, b.afterLast }
