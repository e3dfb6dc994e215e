package chat

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseRowShapes(t *testing.T) {
	cols := DefaultColumns()
	tests := []struct {
		name string
		row  string
		want Example
	}{
		{"pair", `{"prompt":"2+2=","completion":"4"}`,
			Example{Prompt: "2+2=", Completion: "4", IsPair: true}},
		{"alpaca with input", `{"instruction":"Reverse","input":"a b","output":"b a"}`,
			Example{Messages: []Message{{RoleUser, "Reverse\n\na b"}, {RoleAssistant, "b a"}}}},
		{"alpaca without input", `{"instruction":"Say hi","input":"","output":"hi"}`,
			Example{Messages: []Message{{RoleUser, "Say hi"}, {RoleAssistant, "hi"}}}},
		{"chat", `{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"}]}`,
			Example{Messages: []Message{{RoleSystem, "Be brief."}, {RoleUser, "Hi"}, {RoleAssistant, "Hello"}}}},
	}
	for _, tt := range tests {
		got, err := ParseRow([]byte(tt.row), cols, true)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestParseRowErrors(t *testing.T) {
	cols := DefaultColumns()
	tests := []struct {
		row        string
		needAnswer bool
		wantInErr  string
	}{
		{`not json`, false, "not a JSON object"},
		{`[1,2]`, false, "not a JSON object"},
		{`{"text":"plain"}`, false, `no "prompt", "instruction" or "messages" key`},
		{`{"prompt":3,"completion":"x"}`, false, `"prompt" is not a string`},
		{`{"prompt":"q"}`, true, `empty or missing "completion"`},
		{`{"instruction":"q"}`, true, "no answer to train on"},
		{`{"messages":[]}`, false, "empty conversation"},
		{`{"messages":[{"role":"user","content":"a"},{"role":"system","content":"b"}]}`, false, "system message may only come first"},
		{`{"messages":[{"role":"robot","content":"a"}]}`, false, `unknown role "robot"`},
		{`{"messages":[{"role":"assistant","content":"a"}]}`, false, "needs a user message"},
		{`{"messages":[{"role":"user","content":"a"}]}`, true, "no answer to train on"},
		{`{"messages":[{"role":"user","content":7}]}`, false, `message 0: "content" is not a string`},
	}
	for _, tt := range tests {
		_, err := ParseRow([]byte(tt.row), cols, tt.needAnswer)
		if !errors.Is(err, ErrBadRow) || !strings.Contains(err.Error(), tt.wantInErr) {
			t.Errorf("ParseRow(%s): err %v, want ErrBadRow containing %q", tt.row, err, tt.wantInErr)
		}
	}
	// Prompts for generation may leave the answer out.
	if _, err := ParseRow([]byte(`{"messages":[{"role":"user","content":"a"}]}`), cols, false); err != nil {
		t.Errorf("prompt-only conversation: %v", err)
	}
}

func TestParseColumns(t *testing.T) {
	c, err := ParseColumns("prompt=question, completion=answer")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := ParseRow([]byte(`{"question":"q?","answer":"a."}`), c, true)
	if err != nil || ex.Prompt != "q?" || ex.Completion != "a." {
		t.Fatalf("renamed columns: %+v, %v", ex, err)
	}
	for _, bad := range []string{"prompt", "prompt=", "colour=x"} {
		if _, err := ParseColumns(bad); !errors.Is(err, ErrBadColumns) {
			t.Errorf("ParseColumns(%q): %v, want ErrBadColumns", bad, err)
		}
	}
	if c, err := ParseColumns(""); err != nil || c != DefaultColumns() {
		t.Errorf("empty spec: %+v, %v", c, err)
	}
}

func TestPlainTemplateSegments(t *testing.T) {
	tmpl, err := Lookup("")
	if err != nil || tmpl.Name() != Plain {
		t.Fatalf("Lookup(\"\"): %v, %v", tmpl, err)
	}
	ex := Example{Messages: []Message{
		{RoleSystem, "Be brief."}, {RoleUser, "Hi"}, {RoleAssistant, "Hello"},
		{RoleUser, "Bye"}, {RoleAssistant, "Ciao"},
	}}
	segs, err := tmpl.Segments(ex)
	if err != nil {
		t.Fatal(err)
	}
	want := []Segment{
		{Text: "Be brief.\n\n### User:\nHi\n\n### Assistant:\n"},
		{Text: "Hello", Train: true},
		{EOT: true, Train: true},
		{Text: "### User:\nBye\n\n### Assistant:\n"},
		{Text: "Ciao", Train: true},
		{EOT: true, Train: true},
	}
	if !reflect.DeepEqual(segs, want) {
		t.Fatalf("segments:\n got %+v\nwant %+v", segs, want)
	}
	// The prompt is the training rendering up to the last answer, segment for segment,
	// so a prompt tokenizes exactly as it did in training.
	prompt, err := tmpl.Prompt(ex)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(prompt, want[:4]) {
		t.Fatalf("prompt:\n got %+v\nwant %+v", prompt, want[:4])
	}
	if ex.Answer() != "Ciao" {
		t.Errorf("Answer = %q", ex.Answer())
	}

	pair := Example{Prompt: "2+2=", Completion: " 4", IsPair: true}
	segs, _ = tmpl.Segments(pair)
	wantPair := []Segment{{Text: "2+2="}, {Text: " 4", Train: true}, {EOT: true, Train: true}}
	if !reflect.DeepEqual(segs, wantPair) {
		t.Errorf("pair segments: %+v", segs)
	}
	if p, _ := tmpl.Prompt(pair); !reflect.DeepEqual(p, wantPair[:1]) {
		t.Errorf("pair prompt: %+v", p)
	}
	if _, err := Lookup("chatml"); !errors.Is(err, ErrUnknownTemplate) {
		t.Errorf("Lookup(chatml): %v", err)
	}
	if _, err := tmpl.Prompt(Example{Messages: []Message{{RoleAssistant, "x"}}}); !errors.Is(err, ErrBadRow) {
		t.Errorf("prompt of a lone answer: %v", err)
	}
}

// runeEncoder encodes one id per byte; EOT is 1000.
type runeEncoder struct{}

func (runeEncoder) Encode(s string) []int {
	ids := make([]int, len(s))
	for i := range s {
		ids[i] = int(s[i])
	}
	return ids
}
func (runeEncoder) EOT() int { return 1000 }

func TestEncodeMasks(t *testing.T) {
	segs := []Segment{{Text: "Q:"}, {Text: "ok", Train: true}, {EOT: true, Train: true}}
	ids, train := Encode(runeEncoder{}, segs)
	wantIDs := []int{'Q', ':', 'o', 'k', 1000}
	wantTrain := []bool{false, false, true, true, true}
	if !reflect.DeepEqual(ids, wantIDs) || !reflect.DeepEqual(train, wantTrain) {
		t.Fatalf("Encode = %v %v, want %v %v", ids, train, wantIDs, wantTrain)
	}
}
