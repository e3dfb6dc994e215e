package chat

import (
	"errors"
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
// chosen one but has the same length, and that the pairs round-trip through a row.
func TestSyntheticPairsNotByLength(t *testing.T) {
	for _, task := range SyntheticTasks() {
		pairs, err := SyntheticPairs(task, 200, 5)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range pairs {
			c, r := p.Chosen.Answer(), p.Rejected.Answer()
			if c == r || len(c) != len(r) {
				t.Fatalf("%s pair %d: chosen %q rejected %q: want different answers of one length", task, i, c, r)
			}
			if task == TaskArith && strings.HasPrefix(r, "0") && len(r) > 1 {
				t.Fatalf("arith pair %d: rejected %q has a leading zero", i, r)
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
	}
}
