package serve

import (
	"fmt"

	"github.com/ringtrain/ringtrain/chat"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/tensor"
	"github.com/ringtrain/ringtrain/tokenizer"
)

// Model is a GPT ready to answer: its weights, its tokenizer and the chat template it
// was tuned with. It is read-only after NewModel; the GPT itself belongs to the Engine
// that runs it.
type Model struct {
	// Name is the model id reported by the server (the "model" of requests and
	// responses).
	Name string
	// GPT holds the weights.
	GPT *model.GPT
	// Tok encodes prompts and decodes answers.
	Tok tokenizer.Tokenizer
	// Template renders conversations; chat.Plain when the checkpoint records none.
	Template *chat.Template
	// Tuned is true when the checkpoint records the template it was tuned with; false
	// for a model that was never tuned on conversations (Template is then chat.Plain,
	// which the model has not seen).
	Tuned bool
}

// NewModel builds the model of checkpoint ck with tokenizer tok (the checkpoint's own,
// or one chosen for a directory that carries none). A tokenizer with more ids than the
// model's vocabulary, or an unknown template name, is an error.
func NewModel(ck *model.Checkpoint, tok tokenizer.Tokenizer, name string) (*Model, error) {
	return NewModelOn(ck, tok, name, nil)
}

// NewModelOn is NewModel with the model on backend be (nil: the CPU).
func NewModelOn(ck *model.Checkpoint, tok tokenizer.Tokenizer, name string, be tensor.Backend) (*Model, error) {
	if tok.VocabSize() > ck.Config.VocabSize {
		return nil, fmt.Errorf("tokenizer has %d ids but the model only %d", tok.VocabSize(), ck.Config.VocabSize)
	}
	tmpl, err := chat.Lookup(ck.Trainer.ChatTemplate)
	if err != nil {
		return nil, fmt.Errorf("trainer_state.json chat_template: %w", err)
	}
	m, err := model.New(ck.Config, be)
	if err != nil {
		return nil, err
	}
	copy(m.Params.Slab, ck.Params)
	return &Model{Name: name, GPT: m, Tok: tok, Template: tmpl, Tuned: ck.Trainer.ChatTemplate != ""}, nil
}

// Prompt is a request's prompt in tokens, with the text that should end its answer.
type Prompt struct {
	// IDs are the prompt's tokens (at least one: an empty prompt is the EOT token, the
	// start of a document).
	IDs []int32
	// Stops are the template's stop strings for a conversation; none for raw text.
	Stops []string
}

// EncodeText returns raw text as a prompt, with no template: what a completion request
// or a prompt/completion row continues.
func (m *Model) EncodeText(text string) Prompt {
	return m.encode([]chat.Segment{{Text: text}}, nil)
}

// EncodeExample renders an example as the model was tuned: a pair's prompt as raw
// text, a conversation through the template up to the header of the assistant turn to
// write (a trailing assistant message is left out). Errors wrap chat.ErrBadRow.
func (m *Model) EncodeExample(ex chat.Example) (Prompt, error) {
	segs, err := m.Template.Prompt(ex)
	if err != nil {
		return Prompt{}, err
	}
	var stops []string
	if !ex.IsPair {
		stops = m.Template.Stops()
	}
	return m.encode(segs, stops), nil
}

func (m *Model) encode(segs []chat.Segment, stops []string) Prompt {
	ids, _ := chat.Encode(m.Tok, segs)
	if len(ids) == 0 {
		ids = []int{m.Tok.EOT()}
	}
	out := make([]int32, len(ids))
	for i, id := range ids {
		out[i] = int32(id)
	}
	return Prompt{IDs: out, Stops: stops}
}

// Context returns the model's context length in tokens (MaxSeqLen).
func (m *Model) Context() int { return m.GPT.Config.MaxSeqLen }

// TemplateNote is the line to show once when the model records no chat template, or ""
// when it does.
func (m *Model) TemplateNote() string {
	if m.Tuned {
		return ""
	}
	return "note: the checkpoint records no chat template (not tuned on conversations); conversations use the plain template, prompts are raw text"
}
