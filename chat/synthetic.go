package chat

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// The synthetic instruction tasks: each example has one exact answer, so a tuned model
// can be scored by exact match.
const (
	TaskArith   = "arith"   // "What is 23+58?" -> "81"
	TaskReverse = "reverse" // "Reverse: sun cat fig" -> "fig cat sun"
	TaskSort    = "sort"    // "Sort: sun cat fig" -> "cat fig sun"
	TaskUpper   = "upper"   // "Uppercase: sun cat" -> "SUN CAT"
)

// SyntheticTasks lists the task names Synthetic knows, in a fixed order.
func SyntheticTasks() []string { return []string{TaskArith, TaskReverse, TaskSort, TaskUpper} }

// syntheticWords are the words the word tasks draw from: short, lower case, distinct.
var syntheticWords = strings.Fields(`ant bee cat cow dog eel elk emu fox gnu hen jay owl pig ram rat yak
ash elm fig oak yew bay
red tan sky sun sea ice fog dew mud gem ore tin
cup jar pot pan box bag hat cap net map pen ink key`)

// Synthetic returns n examples of task drawn from seed: conversations of one user
// message (the instruction) and one assistant message (the exact answer). The same
// task, n and seed give the same examples on every machine (math/rand/v2's PCG).
// Word tasks use two or three distinct words. Errors wrap ErrBadRow for an unknown
// task or n < 0.
func Synthetic(task string, n int, seed uint64) ([]Example, error) {
	if n < 0 {
		return nil, fmt.Errorf("%w: synthetic %s: n=%d must be >= 0", ErrBadRow, task, n)
	}
	if !slices.Contains(SyntheticTasks(), task) {
		return nil, fmt.Errorf("%w: unknown synthetic task %q (tasks: %s)", ErrBadRow, task, strings.Join(SyntheticTasks(), ", "))
	}
	taskKey := uint64(slices.Index(SyntheticTasks(), task)) + 1
	r := rand.New(rand.NewPCG(seed, 0x73796e7468657469^taskKey))
	out := make([]Example, n)
	for i := range out {
		var q, a string
		switch task {
		case TaskArith:
			x, y := r.IntN(100), r.IntN(100)
			q, a = fmt.Sprintf("What is %d+%d?", x, y), strconv.Itoa(x+y)
		default:
			words := pickWords(r, 2+r.IntN(2))
			switch task {
			case TaskReverse:
				q = "Reverse: " + strings.Join(words, " ")
				slices.Reverse(words)
				a = strings.Join(words, " ")
			case TaskSort:
				q = "Sort: " + strings.Join(words, " ")
				slices.Sort(words)
				a = strings.Join(words, " ")
			case TaskUpper:
				q = "Uppercase: " + strings.Join(words, " ")
				a = strings.ToUpper(strings.Join(words, " "))
			}
		}
		out[i] = Example{Messages: []Message{{Role: RoleUser, Content: q}, {Role: RoleAssistant, Content: a}}}
	}
	return out, nil
}

// pickWords draws k distinct words.
func pickWords(r *rand.Rand, k int) []string {
	idx := r.Perm(len(syntheticWords))[:k]
	words := make([]string, k)
	for i, j := range idx {
		words[i] = syntheticWords[j]
	}
	return words
}

// MarshalRow returns ex as one JSONL row in the messages shape ParseRow reads with
// DefaultColumns (a pair as prompt/completion), without a trailing newline.
func MarshalRow(ex Example) ([]byte, error) {
	if ex.IsPair {
		return jsonMarshal(map[string]string{"prompt": ex.Prompt, "completion": ex.Completion})
	}
	return jsonMarshal(map[string][]Message{"messages": ex.Messages})
}
