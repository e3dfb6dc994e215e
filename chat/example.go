package chat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Roles of a conversation's messages.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
)

// Message is one turn of a conversation, in the JSON shape of the common chat APIs.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Example is one instruction example in normal form. Exactly one of the two shapes is
// set: a raw prompt/completion pair (IsPair), or a conversation (Messages). Alpaca
// records become a conversation of one user message (the instruction, then the input
// after a blank line) and one assistant message (the output).
type Example struct {
	Prompt     string
	Completion string
	Messages   []Message
	// IsPair is true for the prompt/completion shape.
	IsPair bool
}

// HasAnswer reports whether the example holds an answer to train on: a non-empty
// completion, or a conversation whose last message is the assistant's.
func (e Example) HasAnswer() bool {
	if e.IsPair {
		return e.Completion != ""
	}
	n := len(e.Messages)
	return n > 0 && e.Messages[n-1].Role == RoleAssistant
}

// Columns maps the keys of a JSONL row onto the fields this package knows. The zero
// value is not useful; start from DefaultColumns.
type Columns struct {
	Prompt, Completion         string
	Instruction, Input, Output string
	Messages, Role, Content    string
}

// DefaultColumns returns the key names of the common shapes: prompt/completion,
// Alpaca's instruction/input/output and messages of role/content.
func DefaultColumns() Columns {
	return Columns{
		Prompt: "prompt", Completion: "completion",
		Instruction: "instruction", Input: "input", Output: "output",
		Messages: "messages", Role: "role", Content: "content",
	}
}

// ParseColumns returns DefaultColumns with the renames of spec applied. spec is a
// comma-separated list of field=key, for example "prompt=question,completion=answer";
// the fields are prompt, completion, instruction, input, output, messages, role and
// content. An empty spec gives the defaults.
func ParseColumns(spec string) (Columns, error) {
	c := DefaultColumns()
	if strings.TrimSpace(spec) == "" {
		return c, nil
	}
	fields := map[string]*string{
		"prompt": &c.Prompt, "completion": &c.Completion,
		"instruction": &c.Instruction, "input": &c.Input, "output": &c.Output,
		"messages": &c.Messages, "role": &c.Role, "content": &c.Content,
	}
	for _, part := range strings.Split(spec, ",") {
		field, key, ok := strings.Cut(strings.TrimSpace(part), "=")
		field, key = strings.TrimSpace(field), strings.TrimSpace(key)
		if !ok || field == "" || key == "" {
			return Columns{}, fmt.Errorf("%w: %q is not field=key", ErrBadColumns, part)
		}
		p, known := fields[field]
		if !known {
			names := make([]string, 0, len(fields))
			for n := range fields {
				names = append(names, n)
			}
			sort.Strings(names)
			return Columns{}, fmt.Errorf("%w: unknown field %q (fields: %s)", ErrBadColumns, field, strings.Join(names, ", "))
		}
		*p = key
	}
	return c, nil
}

// ParseRow decodes one JSON object in any of the shapes Columns names. With needAnswer,
// the row must carry an answer (a completion, an Alpaca output or a final assistant
// message), as training rows do; without it, prompts for generation may leave the answer
// out (a prompt alone, an instruction alone, or a conversation ending on a user turn).
// Errors wrap ErrBadRow and say what is missing.
func ParseRow(line []byte, cols Columns, needAnswer bool) (Example, error) {
	var row map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(&row); err != nil || row == nil {
		return Example{}, fmt.Errorf("%w: not a JSON object: %v", ErrBadRow, err)
	}
	str := func(key string) (string, bool, error) {
		raw, ok := row[key]
		if !ok {
			return "", false, nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", true, fmt.Errorf("%w: %q is not a string", ErrBadRow, key)
		}
		return s, true, nil
	}
	var ex Example
	switch {
	case has(row, cols.Messages):
		var raw []map[string]json.RawMessage
		if err := json.Unmarshal(row[cols.Messages], &raw); err != nil {
			return Example{}, fmt.Errorf("%w: %q is not a list of messages: %v", ErrBadRow, cols.Messages, err)
		}
		for i, m := range raw {
			var msg Message
			if err := json.Unmarshal(m[cols.Role], &msg.Role); err != nil {
				return Example{}, fmt.Errorf("%w: message %d: %q is not a string", ErrBadRow, i, cols.Role)
			}
			if err := json.Unmarshal(m[cols.Content], &msg.Content); err != nil {
				return Example{}, fmt.Errorf("%w: message %d: %q is not a string", ErrBadRow, i, cols.Content)
			}
			ex.Messages = append(ex.Messages, msg)
		}
		if err := checkMessages(ex.Messages); err != nil {
			return Example{}, err
		}
	case has(row, cols.Instruction):
		instr, _, err := str(cols.Instruction)
		if err != nil {
			return Example{}, err
		}
		input, _, err := str(cols.Input)
		if err != nil {
			return Example{}, err
		}
		output, hasOut, err := str(cols.Output)
		if err != nil {
			return Example{}, err
		}
		user := instr
		if input != "" {
			user += "\n\n" + input
		}
		ex.Messages = []Message{{Role: RoleUser, Content: user}}
		if hasOut {
			ex.Messages = append(ex.Messages, Message{Role: RoleAssistant, Content: output})
		}
	case has(row, cols.Prompt):
		prompt, _, err := str(cols.Prompt)
		if err != nil {
			return Example{}, err
		}
		completion, _, err := str(cols.Completion)
		if err != nil {
			return Example{}, err
		}
		ex = Example{Prompt: prompt, Completion: completion, IsPair: true}
	default:
		return Example{}, fmt.Errorf("%w: no %q, %q or %q key", ErrBadRow, cols.Prompt, cols.Instruction, cols.Messages)
	}
	if needAnswer && !ex.HasAnswer() {
		if ex.IsPair {
			return Example{}, fmt.Errorf("%w: empty or missing %q", ErrBadRow, cols.Completion)
		}
		return Example{}, fmt.Errorf("%w: no answer to train on (an %q output or a final assistant message)", ErrBadRow, cols.Output)
	}
	return ex, nil
}

func has(row map[string]json.RawMessage, key string) bool {
	_, ok := row[key]
	return ok
}

// checkMessages enforces the conversation rules: known roles, a system message only
// first, at least one user message.
func checkMessages(msgs []Message) error {
	if len(msgs) == 0 {
		return fmt.Errorf("%w: empty conversation", ErrBadRow)
	}
	users := 0
	for i, m := range msgs {
		switch m.Role {
		case RoleSystem:
			if i != 0 {
				return fmt.Errorf("%w: message %d: a system message may only come first", ErrBadRow, i)
			}
		case RoleUser:
			users++
		case RoleAssistant:
		default:
			return fmt.Errorf("%w: message %d: unknown role %q (system, user, assistant)", ErrBadRow, i, m.Role)
		}
	}
	if users == 0 {
		return fmt.Errorf("%w: a conversation needs a user message", ErrBadRow)
	}
	return nil
}

// jsonMarshal is json.Marshal without HTML escaping, so rows read as written.
func jsonMarshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
