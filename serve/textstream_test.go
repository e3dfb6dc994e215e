package serve

import (
	"strings"
	"testing"
)

// byteDecoder decodes ids as bytes.
type byteDecoder struct{}

func (byteDecoder) Decode(ids []int) string {
	b := make([]byte, len(ids))
	for i, id := range ids {
		b[i] = byte(id)
	}
	return string(b)
}

func TestTextStream(t *testing.T) {
	tests := []struct {
		name   string
		text   string
		stops  []string
		deltas []string // what push releases, token by token (flush last)
		final  string
		stop   bool
	}{
		{"no stops", "abc", nil, []string{"a", "b", "c", ""}, "abc", false},
		{"stop string cut", "hi###x", []string{"###"}, []string{"h", "i", "", "", "", ""}, "hi", true},
		{"false start released", "a#b", []string{"##"}, []string{"a", "", "#b", ""}, "a#b", false},
		{"held tail flushed at the end", "ab#", []string{"##"}, []string{"a", "b", "", "#"}, "ab#", false},
		{"earliest of two stops", "xAB", []string{"B", "AB"}, []string{"x", "", "", ""}, "x", true},
		{"utf-8 held whole", "é!", nil, []string{"", "é", "!", ""}, "é!", false},
	}
	for _, tt := range tests {
		s := newTextStream(byteDecoder{}, tt.stops)
		var got []string
		stopped := false
		for i := 0; i < len(tt.text) && !stopped; i++ {
			d, stop := s.push(int32(tt.text[i]))
			got, stopped = append(got, d), stop
		}
		got = append(got, s.flush())
		if strings.Join(got, "|") != strings.Join(tt.deltas, "|") || s.text != tt.final || stopped != tt.stop {
			t.Errorf("%s: deltas %q text %q stop %v, want %q %q %v", tt.name, got, s.text, stopped, tt.deltas, tt.final, tt.stop)
		}
	}
}
