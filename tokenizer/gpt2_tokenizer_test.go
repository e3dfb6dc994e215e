package tokenizer

import (
	"math/rand"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/quick"
	"time"
	"unicode/utf8"

	tiktoken "github.com/pkoukk/tiktoken-go"
	tiktoken_loader "github.com/pkoukk/tiktoken-go-loader"
)

func gpt2(t testing.TB) *GPT2 {
	t.Helper()
	tok, err := NewGPT2()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestGPT2KnownIDs(t *testing.T) {
	tok := gpt2(t)
	cases := []struct {
		in   string
		want []int
	}{
		{"Hello world", []int{15496, 995}},
		{" ", []int{220}},
		{"\n", []int{198}},
		{"First Citizen:\n", []int{5962, 22307, 25, 198}},
		// The special string is ordinary text: "<", "|", "end", "of", "text", "|", ">".
		{"<|endoftext|>", []int{27, 91, 437, 1659, 5239, 91, 29}},
	}
	for _, c := range cases {
		if got := tok.Encode(c.in); !slices.Equal(got, c.want) {
			t.Errorf("encode %q = %v, want %v", c.in, got, c.want)
		}
	}
	if tok.VocabSize() != 50257 || tok.EOT() != 50256 || tok.Mask() != -1 || tok.Name() != "gpt2" {
		t.Fatalf("vocab %d eot %d mask %d name %q", tok.VocabSize(), tok.EOT(), tok.Mask(), tok.Name())
	}
	if got := tok.Decode([]int{15496, 995, 50256, 50257, -1}); got != "Hello world<|endoftext|>" {
		t.Fatalf("decode = %q", got)
	}
}

// TestGPT2ByteIDs checks the single-byte ids against GPT-2's published byte order:
// the printable bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') first, then the others ascending.
func TestGPT2ByteIDs(t *testing.T) {
	tok := gpt2(t)
	var order []int
	printable := func(b int) bool { return b >= '!' && b <= '~' || b >= 0xa1 && b <= 0xac || b >= 0xae }
	for b := range 256 {
		if printable(b) {
			order = append(order, b)
		}
	}
	for b := range 256 {
		if !printable(b) {
			order = append(order, b)
		}
	}
	for id, b := range order {
		if got := tok.Encode(string([]byte{byte(b)})); !slices.Equal(got, []int{id}) {
			t.Fatalf("byte 0x%02x encodes to %v, want [%d]", b, got, id)
		}
	}
}

func TestGPT2RoundTrip(t *testing.T) {
	tok := gpt2(t)
	f := func(b []byte) bool { return tok.Decode(tok.Encode(string(b))) == string(b) }
	if err := quick.Check(f, &quick.Config{MaxCount: 1000, Rand: rand.New(rand.NewSource(21))}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(22))
	for i := range 1000 {
		s := randomBytes(rng, 300)
		ids := tok.Encode(s)
		if got := tok.Decode(ids); got != s {
			t.Fatalf("case %d: round trip of %q gave %q", i, s, got)
		}
		if slices.Contains(ids, tok.EOT()) {
			t.Fatalf("case %d: EOT produced from text %q", i, s)
		}
	}
	for _, s := range []string{" ROMEO:", "ROMEO:\nBut soft, what light through yonder window breaks?", "\xff\xfe ROMEO \x80"} {
		if got := tok.Decode(tok.Encode(s)); got != s {
			t.Fatalf("round trip of %q gave %q", s, got)
		}
	}
}

func TestGPT2InvalidUTF8(t *testing.T) {
	tok := gpt2(t)
	// Valid runs encode as on their own; the invalid byte is its single-byte token.
	got := tok.Encode("Hello\xffworld")
	want := slices.Concat(tok.Encode("Hello"), tok.Encode("\xff"), tok.Encode("world"))
	if !slices.Equal(got, want) {
		t.Fatalf("encode = %v, want %v", got, want)
	}
}

func TestGPT2Corpus(t *testing.T) {
	tok := gpt2(t)
	c := loadCorpus(t)
	if !utf8.ValidString(c) {
		t.Fatal("corpus is not valid UTF-8")
	}
	ids := tok.Encode(c)
	// tiktoken's gpt2 encoding gives 338025 tokens for tiny Shakespeare.
	if len(ids) != 338025 {
		t.Fatalf("corpus encodes to %d tokens, want 338025", len(ids))
	}
	if tok.Decode(ids) != c {
		t.Fatal("corpus does not round-trip")
	}
}

var (
	tiktokenOnce sync.Once
	tiktokenEnc  *tiktoken.Tiktoken
	tiktokenErr  error
)

// referenceGPT2 is tiktoken-go's r50k_base encoding, read from the embedded ranks:
// the independent implementation the gpt2 tokenizer is checked against.
func referenceGPT2(t testing.TB) *tiktoken.Tiktoken {
	t.Helper()
	tiktokenOnce.Do(func() {
		tiktoken.SetBpeLoader(tiktoken_loader.NewOfflineLoader())
		tiktokenEnc, tiktokenErr = tiktoken.GetEncoding(tiktoken.MODEL_R50K_BASE)
	})
	if tiktokenErr != nil {
		t.Fatal(tiktokenErr)
	}
	return tiktokenEnc
}

func TestGPT2MatchesTiktoken(t *testing.T) {
	tok, ref := gpt2(t), referenceGPT2(t)
	rng := rand.New(rand.NewSource(23))
	letters := make([]byte, 3000)
	for i := range letters {
		letters[i] = byte('a' + rng.Intn(26))
	}
	inputs := []string{
		loadCorpus(t),
		string(letters),             // one long chunk: many merge steps
		strings.Repeat("=", 2000),   // long punctuation chunk
		strings.Repeat("ab", 1500),  // repeated pairs, ties resolved leftmost
		strings.Repeat(" \n", 1000), // long whitespace chunk
		"Hello world, I'm here: 123 4567 \u00e9t\u00e9 \u65e5\u672c\u8a9e \U0001F642  \n\n\t",
	}
	for range 500 {
		inputs = append(inputs, strings.ToValidUTF8(randomBytes(rng, 200), "\uFFFD"))
	}
	for i, s := range inputs {
		got, want := tok.Encode(s), ref.EncodeOrdinary(s)
		if !slices.Equal(got, want) {
			t.Fatalf("input %d (%.60q): encode differs from tiktoken-go\ngot  %v\nwant %v", i, s, got, want)
		}
	}
}

func TestGPT2LongChunk(t *testing.T) {
	tok := gpt2(t)
	rng := rand.New(rand.NewSource(24))
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte('a' + rng.Intn(26))
	}
	s := string(b) // a single 1 MiB chunk
	start := time.Now()
	ids := tok.Encode(s)
	if tok.Decode(ids) != s {
		t.Fatal("long chunk does not round-trip")
	}
	t.Logf("1 MiB chunk: %d ids in %v", len(ids), time.Since(start))
}
