package chat

import (
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestSyntheticAnswers checks every task's answers against an independent computation,
// and that the examples are a function of the seed.
func TestSyntheticAnswers(t *testing.T) {
	for _, task := range SyntheticTasks() {
		exs, err := Synthetic(task, 200, 7)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := Synthetic(task, 200, 7)
		other, _ := Synthetic(task, 200, 8)
		if !reflect.DeepEqual(exs, again) || reflect.DeepEqual(exs, other) {
			t.Fatalf("%s: not a function of the seed", task)
		}
		for _, ex := range exs {
			q, a := ex.Messages[0].Content, ex.Answer()
			var want string
			switch task {
			case TaskArith:
				var x, y int
				body := strings.TrimSuffix(strings.TrimPrefix(q, "What is "), "?")
				xs, ys, _ := strings.Cut(body, "+")
				x, _ = strconv.Atoi(xs)
				y, _ = strconv.Atoi(ys)
				want = strconv.Itoa(x + y)
			case TaskReverse:
				w := strings.Fields(strings.TrimPrefix(q, "Reverse: "))
				slices.Reverse(w)
				want = strings.Join(w, " ")
			case TaskSort:
				w := strings.Fields(strings.TrimPrefix(q, "Sort: "))
				slices.Sort(w)
				want = strings.Join(w, " ")
			case TaskUpper:
				want = strings.ToUpper(strings.TrimPrefix(q, "Uppercase: "))
			}
			if a != want || a == "" {
				t.Fatalf("%s: %q -> %q, want %q", task, q, a, want)
			}
			// Rows round-trip through ParseRow.
			row, err := MarshalRow(ex)
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseRow(row, DefaultColumns(), true)
			if err != nil || !reflect.DeepEqual(back, ex) {
				t.Fatalf("%s: row %s parses to %+v, %v", task, row, back, err)
			}
		}
	}
	if _, err := Synthetic("poetry", 1, 1); !errors.Is(err, ErrBadRow) || !strings.Contains(err.Error(), "arith") {
		t.Errorf("unknown task: %v", err)
	}
	pair, err := MarshalRow(Example{Prompt: "a<b", Completion: "c", IsPair: true})
	if err != nil || string(pair) != `{"completion":"c","prompt":"a<b"}` {
		t.Errorf("pair row %s, %v", pair, err)
	}
}
