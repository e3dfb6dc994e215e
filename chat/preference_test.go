package chat

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParsePairShapes(t *testing.T) {
	cols := DefaultColumns()
	tests := []struct {
		name, row            string
		wantChosen, wantRej  string
		wantPairForm, errSub bool
	}{
		{name: "strings", row: `{"prompt":"2+2=","chosen":"4","rejected":"5"}`, wantChosen: "4", wantRej: "5", wantPairForm: true},
		{name: "prompt messages", row: `{"prompt":[{"role":"user","content":"hi"}],"chosen":"hello","rejected":"go away"}`, wantChosen: "hello", wantRej: "go away"},
		{name: "conversations", row: `{"chosen":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}],"rejected":[{"role":"user","content":"hi"},{"role":"assistant","content":"no"}]}`, wantChosen: "hello", wantRej: "no"},
		{name: "prompt plus answers as messages", row: `{"prompt":[{"role":"user","content":"hi"}],"chosen":[{"role":"assistant","content":"a"}],"rejected":[{"role":"assistant","content":"b"}]}`, wantChosen: "a", wantRej: "b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePair([]byte(tc.row), cols)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Chosen.Answer(); got != tc.wantChosen {
				t.Errorf("chosen answer %q, want %q", got, tc.wantChosen)
			}
			if got := p.Rejected.Answer(); got != tc.wantRej {
				t.Errorf("rejected answer %q, want %q", got, tc.wantRej)
			}
			if p.Chosen.IsPair != tc.wantPairForm {
				t.Errorf("IsPair %v, want %v", p.Chosen.IsPair, tc.wantPairForm)
			}
		})
	}
}

func TestParsePairErrors(t *testing.T) {
	for _, row := range []string{
		`{"prompt":"x","chosen":"a"}`,
		`{"chosen":"a","rejected":"b"}`,
		`{"prompt":"x","chosen":"","rejected":"b"}`,
		`{"chosen":[{"role":"user","content":"hi"}],"rejected":[{"role":"user","content":"hi"},{"role":"assistant","content":"b"}]}`,
		`{"prompt":3,"chosen":"a","rejected":"b"}`,
		`not json`,
	} {
		if _, err := ParsePair([]byte(row), DefaultColumns()); !errors.Is(err, ErrBadRow) {
			t.Errorf("ParsePair(%s): err %v, want ErrBadRow", row, err)
		}
	}
}

// TestSyntheticPairsNotByLength checks that every rejected answer differs from the
// chosen one, that about three in four have its length and the others are wrong in
// length in the documented ways, and that the pairs round-trip through a row.
func TestSyntheticPairsNotByLength(t *testing.T) {
	for _, task := range SyntheticTasks() {
		pairs, err := SyntheticPairs(task, 400, 5)
		if err != nil {
			t.Fatal(err)
		}
		longer := 0
		for i, p := range pairs {
			c, r := p.Chosen.Answer(), p.Rejected.Answer()
			if c == r {
				t.Fatalf("%s pair %d: rejected %q is the chosen answer", task, i, r)
			}
			if task == TaskArith && strings.HasPrefix(r, "0") && len(r) > 1 {
				t.Fatalf("arith pair %d: rejected %q has a leading zero", i, r)
			}
			if len(c) != len(r) {
				longer++
				checkLengthCorruption(t, task, i, c, r)
			}
			row, err := MarshalPair(p)
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParsePair(row, DefaultColumns())
			if err != nil || back.Chosen.Answer() != c || back.Rejected.Answer() != r {
				t.Fatalf("%s pair %d does not round-trip: %v", task, i, err)
			}
		}
		if longer < 60 || longer > 140 {
			t.Errorf("%s: %d of 400 rejected answers differ in length: want about a quarter", task, longer)
		}
	}
}

// checkLengthCorruption checks that rejected answer r of pair i is chosen answer c
// with one digit more or fewer (arith), or with one word left out or one other
// vocabulary word inserted (the word tasks).
func checkLengthCorruption(t *testing.T, task string, i int, c, r string) {
	t.Helper()
	if task == TaskArith {
		if d := len(r) - len(c); d != 1 && d != -1 {
			t.Fatalf("arith pair %d: %q vs %q: want one digit more or fewer", i, c, r)
		}
		if _, err := strconv.Atoi(r); err != nil {
			t.Fatalf("arith pair %d: rejected %q is not a number", i, r)
		}
		return
	}
	cw, rw := strings.Fields(c), strings.Fields(r)
	short, long := cw, rw
	if len(rw) < len(cw) {
		short, long = rw, cw
	}
	if len(long) != len(short)+1 {
		t.Fatalf("%s pair %d: %q vs %q: want one word more or fewer", task, i, c, r)
	}
	for k := range long {
		if slices.Equal(slices.Delete(slices.Clone(long), k, k+1), short) {
			if len(rw) > len(cw) && slices.Contains(cw, long[k]) {
				t.Fatalf("%s pair %d: inserted %q is already in %q", task, i, long[k], c)
			}
			return
		}
	}
	t.Fatalf("%s pair %d: %q vs %q: not one word left out or inserted", task, i, c, r)
}

// TestSyntheticPairsLetterCorruptions: the same-length rejected answers of the word
// tasks are a mix of word-level corruptions (two words swapped; upper: one word in lower case)
// and letter-level ones: one word with one or two letters changed to other letters
// of the answer's case, every other word as it was.
func TestSyntheticPairsLetterCorruptions(t *testing.T) {
	for _, task := range []string{TaskReverse, TaskSort, TaskUpper} {
		pairs, err := SyntheticPairs(task, 400, 9)
		if err != nil {
			t.Fatal(err)
		}
		letters := 0
		for i, p := range pairs {
			c, r := strings.Fields(p.Chosen.Answer()), strings.Fields(p.Rejected.Answer())
			if len(c) != len(r) {
				continue // wrong in length: TestSyntheticPairsNotByLength
			}
			sc, sr := slices.Sorted(slices.Values(c)), slices.Sorted(slices.Values(r))
			if slices.Equal(sc, sr) || (task == TaskUpper && strings.EqualFold(strings.Join(c, " "), strings.Join(r, " "))) {
				continue // word level
			}
			letters++
			changedWords, changedLetters := 0, 0
			for k := range c {
				if c[k] == r[k] {
					continue
				}
				changedWords++
				for j := range len(c[k]) {
					if c[k][j] != r[k][j] {
						changedLetters++
						lo, hi := byte('a'), byte('z')
						if task == TaskUpper {
							lo, hi = 'A', 'Z'
						}
						if r[k][j] < lo || r[k][j] > hi {
							t.Fatalf("%s pair %d: %q has %q, not a letter of the answer's case", task, i, r[k], r[k][j])
						}
					}
				}
			}
			if changedWords != 1 || changedLetters < 1 || changedLetters > 2 {
				t.Fatalf("%s pair %d: chosen %q rejected %q: want one word with one or two letters changed", task, i, c, r)
			}
		}
		if letters < 90 || letters > 210 {
			t.Errorf("%s: %d of 400 rejected answers are letter-level: want about three in eight", task, letters)
		}
	}
}
