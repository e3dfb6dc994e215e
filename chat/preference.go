package chat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// Pair is one preference judgement: two complete examples that share a prompt, the
// answer preferred (Chosen) and the other (Rejected).
type Pair struct {
	Chosen, Rejected Example
}

// ParsePair decodes one preference row. Two shapes are read, with cols naming the keys
// of the prompt and of the messages' role and content:
//
//   - {"prompt": "...", "chosen": "...", "rejected": "..."}: the prompt is a string,
//     the answers completions of it (rendered like prompt/completion rows); or the
//     prompt is a list of messages and each answer one assistant message after them.
//   - {"chosen": [messages], "rejected": [messages]}: two whole conversations, each
//     ending on an assistant message (the answer trained on); a "prompt" of messages,
//     when also given, comes before each.
//
// Errors wrap ErrBadRow and say what is missing.
func ParsePair(line []byte, cols Columns) (Pair, error) {
	var row map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(&row); err != nil || row == nil {
		return Pair{}, fmt.Errorf("%w: not a JSON object: %v", ErrBadRow, err)
	}
	for _, k := range []string{"chosen", "rejected"} {
		if !has(row, k) {
			return Pair{}, fmt.Errorf("%w: a preference row needs %q and %q, missing %q", ErrBadRow, "chosen", "rejected", k)
		}
	}
	var promptStr string
	var promptMsgs []Message
	promptIsString := false
	if raw, ok := row[cols.Prompt]; ok {
		if err := json.Unmarshal(raw, &promptStr); err == nil {
			promptIsString = true
		} else if msgs, err := decodeMessages(raw, cols); err == nil {
			promptMsgs = msgs
		} else {
			return Pair{}, fmt.Errorf("%w: %q is neither a string nor a list of messages", ErrBadRow, cols.Prompt)
		}
	}
	side := func(key string) (Example, error) {
		raw := row[key]
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			switch {
			case promptIsString:
				ex := Example{Prompt: promptStr, Completion: s, IsPair: true}
				if !ex.HasAnswer() {
					return Example{}, fmt.Errorf("%w: %q is empty", ErrBadRow, key)
				}
				return ex, nil
			case promptMsgs != nil:
				msgs := append(slices.Clone(promptMsgs), Message{Role: RoleAssistant, Content: s})
				return messagesExample(key, msgs)
			default:
				return Example{}, fmt.Errorf("%w: %q is a string but the row has no %q", ErrBadRow, key, cols.Prompt)
			}
		}
		msgs, err := decodeMessages(raw, cols)
		if err != nil {
			return Example{}, fmt.Errorf("%w: %q is neither a string nor a list of messages", ErrBadRow, key)
		}
		if promptMsgs != nil {
			msgs = append(slices.Clone(promptMsgs), msgs...)
		} else if promptIsString {
			msgs = append([]Message{{Role: RoleUser, Content: promptStr}}, msgs...)
		}
		return messagesExample(key, msgs)
	}
	chosen, err := side("chosen")
	if err != nil {
		return Pair{}, err
	}
	rejected, err := side("rejected")
	if err != nil {
		return Pair{}, err
	}
	return Pair{Chosen: chosen, Rejected: rejected}, nil
}

// messagesExample checks a conversation that must end on an assistant answer.
func messagesExample(key string, msgs []Message) (Example, error) {
	if err := checkMessages(msgs); err != nil {
		return Example{}, fmt.Errorf("%q: %w", key, err)
	}
	ex := Example{Messages: msgs}
	if !ex.HasAnswer() {
		return Example{}, fmt.Errorf("%w: %q does not end on an assistant answer", ErrBadRow, key)
	}
	return ex, nil
}

func decodeMessages(raw json.RawMessage, cols Columns) ([]Message, error) {
	var list []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, err
	}
	msgs := make([]Message, 0, len(list))
	for i, m := range list {
		var msg Message
		if err := json.Unmarshal(m[cols.Role], &msg.Role); err != nil {
			return nil, fmt.Errorf("%w: message %d: %q is not a string", ErrBadRow, i, cols.Role)
		}
		if err := json.Unmarshal(m[cols.Content], &msg.Content); err != nil {
			return nil, fmt.Errorf("%w: message %d: %q is not a string", ErrBadRow, i, cols.Content)
		}
		msgs = append(msgs, msg)
	}
	return msgs, nil
}

// MarshalPair returns p as one JSONL row ParsePair reads with DefaultColumns: the two
// conversations, without a trailing newline.
func MarshalPair(p Pair) ([]byte, error) {
	return jsonMarshal(map[string][]Message{"chosen": p.Chosen.Messages, "rejected": p.Rejected.Messages})
}

// SyntheticPairs returns n preference pairs of task drawn from seed: the prompt and
// correct answer of Synthetic(task, n, seed), and a corrupted rejected answer. Three
// in four rejected answers have the correct answer's length, so length alone does
// not tell most pairs apart:
//
//   - arith: a wrong sum with the same number of digits;
//   - reverse and sort: half of them the correct words with two of them swapped, half
//     the correct answer with one or two letters of one word changed to other
//     letters;
//   - upper: half of them the correct answer with one word left in lower case, half
//     with one or two letters of one word changed to other capitals.
//
// The fourth is wrong in length: a sum with one digit more or one fewer, or the
// correct words with one word left out or one word of the vocabulary inserted
// (capitalised for upper). The letter-level corruptions teach a reward model that a
// garbled word is wrong, not only a misplaced one; the length ones that an answer
// padded with an extra word is wrong too, so a policy tuned against the reward model
// gains nothing by writing longer answers.
//
// The same task, n and seed give the same pairs on every machine.
func SyntheticPairs(task string, n int, seed uint64) ([]Pair, error) {
	exs, err := Synthetic(task, n, seed)
	if err != nil {
		return nil, err
	}
	taskKey := uint64(slices.Index(SyntheticTasks(), task)) + 1
	r := rand.New(rand.NewPCG(seed, 0x7072656665727321^taskKey))
	out := make([]Pair, n)
	for i, ex := range exs {
		good := ex.Messages[1].Content
		var bad string
		if r.IntN(4) == 0 {
			bad = corruptLength(task, good, r)
		} else {
			bad = corrupt(task, good, r)
		}
		rej := Example{Messages: []Message{ex.Messages[0], {Role: RoleAssistant, Content: bad}}}
		out[i] = Pair{Chosen: ex, Rejected: rej}
	}
	return out, nil
}

// corruptLength returns a wrong answer whose length differs from good's: for arith a
// sum with one digit more (a digit appended; before a sum of 0) or one fewer (the
// last dropped; a one-digit sum always gains one), for the word tasks the words of
// good with one left out (answers of three words) or one other word of the
// vocabulary inserted.
func corruptLength(task, good string, r *rand.Rand) string {
	if task == TaskArith {
		if len(good) > 1 && r.IntN(2) == 0 {
			return good[:len(good)-1]
		}
		if good == "0" {
			return strconv.Itoa(1+r.IntN(9)) + good // no leading zero
		}
		return good + strconv.Itoa(r.IntN(10))
	}
	words := strings.Fields(good)
	if len(words) > 2 && r.IntN(2) == 0 {
		k := r.IntN(len(words))
		return strings.Join(slices.Delete(words, k, k+1), " ")
	}
	var extra string
	for {
		extra = syntheticWords[r.IntN(len(syntheticWords))]
		if task == TaskUpper {
			extra = strings.ToUpper(extra)
		}
		if !slices.Contains(words, extra) {
			break
		}
	}
	words = slices.Insert(words, r.IntN(len(words)+1), extra)
	return strings.Join(words, " ")
}

// corrupt returns a wrong answer of the same length in characters as good.
func corrupt(task, good string, r *rand.Rand) string {
	switch task {
	case TaskArith:
		v, _ := strconv.Atoi(good)
		digits := len(good)
		lo, hi := 0, 9
		if digits > 1 {
			lo = 1
			for range digits - 1 {
				lo *= 10
			}
			hi = lo*10 - 1
		}
		for {
			w := lo + r.IntN(hi-lo+1)
			if w != v {
				return strconv.Itoa(w)
			}
		}
	}
	words := strings.Fields(good)
	if r.IntN(2) == 0 {
		base := byte('a')
		if task == TaskUpper {
			base = 'A'
		}
		return garble(words, base, r)
	}
	switch task {
	case TaskUpper:
		k := r.IntN(len(words))
		words[k] = strings.ToLower(words[k])
		return strings.Join(words, " ")
	default:
		i := r.IntN(len(words))
		j := (i + 1 + r.IntN(len(words)-1)) % len(words)
		words[i], words[j] = words[j], words[i]
		return strings.Join(words, " ")
	}
}

// garble returns words joined by spaces after one or two letters of one of them
// (distinct positions) are replaced by other letters of the alphabet starting at
// base: a letter-level corruption of the same length.
func garble(words []string, base byte, r *rand.Rand) string {
	k := r.IntN(len(words))
	w := []byte(words[k])
	n := min(1+r.IntN(2), len(w))
	for _, i := range r.Perm(len(w))[:n] {
		c := base + byte(r.IntN(25))
		if c >= w[i] {
			c++ // any letter but the one there
		}
		w[i] = c
	}
	words[k] = string(w)
	return strings.Join(words, " ")
}
