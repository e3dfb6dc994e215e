package chat

import "fmt"

// Plain is the name of the plain-text template, the default. A conversation renders as
//
//	{system}\n\n                       (when there is a system message)
//	### User:\n{user}\n\n
//	### Assistant:\n{assistant}<EOT>
//	### User:\n…
//
// where <EOT> is the tokenizer's end-of-text id, never the text "<|endoftext|>". A
// prompt/completion pair renders as the prompt followed by the completion and <EOT>, with
// no markers. Only an answer (an assistant message's content, a completion) and the EOT
// that ends it are trained.
const Plain = "plain"

// Segment is a piece of a rendered example: text, or the end-of-text token.
type Segment struct {
	Text string
	// EOT marks the end-of-text token; Text is empty then.
	EOT bool
	// Train is true for what the model is trained to produce.
	Train bool
}

// Template renders examples into segments. It is immutable and safe for concurrent
// use.
type Template struct {
	name        string
	systemAfter string // after a system message's content
	userBefore  string
	userAfter   string
	assistant   string // the header that opens an assistant turn
	stops       []string
}

var templates = map[string]*Template{
	Plain: {
		name:        Plain,
		systemAfter: "\n\n",
		userBefore:  "### User:\n",
		userAfter:   "\n\n",
		assistant:   "### Assistant:\n",
		stops:       []string{"### User:"},
	},
}

// Lookup returns the template with the given name ("" means Plain). Errors wrap
// ErrUnknownTemplate.
func Lookup(name string) (*Template, error) {
	if name == "" {
		name = Plain
	}
	t, ok := templates[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q (known: %s)", ErrUnknownTemplate, name, Plain)
	}
	return t, nil
}

// Name is what manifests and checkpoints record.
func (t *Template) Name() string { return t.name }

// Stops returns text at which generation should stop besides the end-of-text token: the
// start of a turn the model should not write. The caller owns the slice.
func (t *Template) Stops() []string { return append([]string(nil), t.stops...) }

// Segments renders a whole example, answers included, for training. Errors wrap
// ErrBadRow (a conversation that breaks the rules of ParseRow).
func (t *Template) Segments(ex Example) ([]Segment, error) {
	if ex.IsPair {
		return []Segment{
			{Text: ex.Prompt},
			{Text: ex.Completion, Train: true},
			{EOT: true, Train: true},
		}, nil
	}
	if err := checkMessages(ex.Messages); err != nil {
		return nil, err
	}
	return t.render(ex.Messages, false), nil
}

// Prompt renders what generation starts from: a pair's prompt, or a conversation up to
// and including the header of the assistant turn to be written. A trailing answer (a
// completion, or a final assistant message) is left out, so held-out training rows can
// be prompted directly and their answer compared with Answer.
func (t *Template) Prompt(ex Example) ([]Segment, error) {
	if ex.IsPair {
		return []Segment{{Text: ex.Prompt}}, nil
	}
	msgs := ex.Messages
	if n := len(msgs); n > 0 && msgs[n-1].Role == RoleAssistant {
		msgs = msgs[:n-1]
	}
	if err := checkMessages(msgs); err != nil {
		return nil, err
	}
	return t.render(msgs, true), nil
}

// Answer returns an example's trailing answer (the completion, or the final assistant
// message), or "" when it has none.
func (e Example) Answer() string {
	if e.IsPair {
		return e.Completion
	}
	if n := len(e.Messages); n > 0 && e.Messages[n-1].Role == RoleAssistant {
		return e.Messages[n-1].Content
	}
	return ""
}

func (t *Template) render(msgs []Message, open bool) []Segment {
	var segs []Segment
	text := func(s string, train bool) {
		if s == "" {
			return
		}
		if n := len(segs); n > 0 && !segs[n-1].EOT && segs[n-1].Train == train {
			segs[n-1].Text += s
			return
		}
		segs = append(segs, Segment{Text: s, Train: train})
	}
	for _, m := range msgs {
		switch m.Role {
		case RoleSystem:
			text(m.Content+t.systemAfter, false)
		case RoleUser:
			text(t.userBefore+m.Content+t.userAfter, false)
		case RoleAssistant:
			text(t.assistant, false)
			text(m.Content, true)
			segs = append(segs, Segment{EOT: true, Train: true})
		}
	}
	if open {
		text(t.assistant, false)
	}
	return segs
}

// Encoder is the part of a tokenizer that Encode needs.
type Encoder interface {
	Encode(text string) []int
	EOT() int
}

// Encode tokenizes segments one by one, as generation tokenizes a prompt, and returns
// the ids with, for each id, whether it is trained. The caller owns both slices.
func Encode(enc Encoder, segs []Segment) (ids []int, train []bool) {
	for _, s := range segs {
		var part []int
		if s.EOT {
			part = []int{enc.EOT()}
		} else {
			part = enc.Encode(s.Text)
		}
		ids = append(ids, part...)
		for range part {
			train = append(train, s.Train)
		}
	}
	return ids, train
}
