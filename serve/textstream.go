package serve

import (
	"strings"
	"unicode/utf8"
)

// Decoder is the part of a tokenizer that textStream needs.
type Decoder interface {
	Decode(ids []int) string
}

// textStream turns a sequence's tokens into text as they are generated. It decodes the
// whole answer so far on each token (so characters split over tokens come out whole),
// and releases text only when no later token can change it: an incomplete UTF-8
// character at the end, and a tail that is the beginning of a stop string, are held
// back. When a stop string appears, the answer ends before it. It is pure and used by
// one goroutine.
type textStream struct {
	dec     Decoder
	stops   []string
	ids     []int
	text    string // the answer so far, cut before a stop string once one appeared
	emitted int    // bytes of text released
	stopped bool
}

func newTextStream(dec Decoder, stops []string) *textStream {
	var s []string
	for _, st := range stops {
		if st != "" {
			s = append(s, st)
		}
	}
	return &textStream{dec: dec, stops: s}
}

// push adds a token and returns the text that became final (possibly ""), and whether
// a stop string appeared (the stream then takes no more tokens).
func (s *textStream) push(tok int32) (delta string, stop bool) {
	if s.stopped {
		return "", true
	}
	s.ids = append(s.ids, int(tok))
	s.text = s.dec.Decode(s.ids)
	if cut := firstStop(s.text, s.stops); cut >= 0 {
		s.text = s.text[:cut]
		s.stopped = true
		return s.flush(), true
	}
	safe := len(s.text) - heldBack(s.text, s.stops)
	if safe <= s.emitted {
		return "", false
	}
	delta = s.text[s.emitted:safe]
	s.emitted = safe
	return delta, false
}

// flush releases everything not yet released: the answer has ended.
func (s *textStream) flush() string {
	d := s.text[s.emitted:]
	s.emitted = len(s.text)
	return d
}

// firstStop returns the byte offset of the earliest stop string in text, or -1.
func firstStop(text string, stops []string) int {
	cut := -1
	for _, st := range stops {
		if i := strings.Index(text, st); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	return cut
}

// heldBack returns how many bytes at the end of text may still change: an incomplete
// UTF-8 sequence, or the longest tail that is a proper prefix of a stop string.
func heldBack(text string, stops []string) int {
	n := 0
	for i := len(text) - 1; i >= 0 && i >= len(text)-3; i-- {
		if utf8.RuneStart(text[i]) {
			if !utf8.FullRuneInString(text[i:]) {
				n = len(text) - i
			}
			break
		}
	}
	for _, st := range stops {
		for k := min(len(st)-1, len(text)); k > n; k-- {
			if strings.HasSuffix(text, st[:k]) {
				n = k
				break
			}
		}
	}
	return n
}
