package tokenizer_test

import (
	"fmt"

	"github.com/ringtrain/ringtrain/tokenizer"
)

func ExampleBuild() {
	// Three merges learnt from a tiny corpus: (a,a)->256, (a,b)->257, (256,257)->258.
	tok, err := tokenizer.Build("bpe:261", "aaabdaaabac")
	if err != nil {
		fmt.Println(err)
		return
	}
	ids := tok.Encode("aaabdaaabac")
	ids = append(ids, tok.EOT())
	fmt.Println(ids)
	fmt.Printf("%q\n", tok.Decode(ids))
	// Output:
	// [258 100 258 97 99 259]
	// "aaabdaaabac<|endoftext|>"
}

func ExampleEncodeChecked() {
	tok, err := tokenizer.Build("char", "hello world")
	if err != nil {
		fmt.Println(err)
		return
	}
	ids, err := tokenizer.EncodeChecked(tok, "hold")
	fmt.Println(ids, err)
	_, err = tokenizer.EncodeChecked(tok, "help!")
	fmt.Println(err)
	// Output:
	// [3 5 4 1] <nil>
	// tokenizer: unknown token: rune 'p' (U+0070) at byte offset 3 is not in the char vocabulary
}
