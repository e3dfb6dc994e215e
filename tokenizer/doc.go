// Package tokenizer turns text into the token ids a GPT is trained on, and back.
//
// Four kinds exist, each named by a spec string given to Build:
//
//   - "byte": ids 0..255 are bytes, then "<|endoftext|>" (256) and "<|mask|>" (257).
//   - "char": the sorted distinct Unicode code points of a corpus, then EOT and mask.
//     Small and readable; the classic choice for tiny Shakespeare.
//   - "bpe:N": byte-level byte-pair encoding trained on a corpus, N ids in all: 256
//     bytes, N-258 merges, EOT (N-2) and mask (N-1). Text is cut with GPT-2's
//     pre-tokenization regex and merges are learnt minbpe-style with a deterministic
//     tie-break, so the same corpus always gives the same tokenizer.
//   - "gpt2": GPT-2's own encoding (tiktoken's r50k_base), 50257 ids with EOT 50256
//     and no mask, for compatibility with GPT-2 checkpoints and llm.c token files.
//
// Every Tokenizer is safe for concurrent use once built. Encode never produces special
// ids from text: "<|endoftext|>" in a document is ordinary text, and callers place EOT
// between documents themselves. byte, bpe and gpt2 round-trip every byte string,
// invalid UTF-8 included; char represents only the runes it was built from, and
// EncodeChecked reports anything else as an error.
//
// # Who calls it
//
// The prepare pipeline (the `ringtrain prepare` command, package shard) builds or
// loads a tokenizer, encodes the corpus into token shards and records the tokenizer's
// JSON and Hash in the shard manifest. Checkpoints store the same JSON so that a
// trained model carries its vocabulary, and generation loads it to encode prompts and
// decode samples. Marshal is canonical, so equal hashes mean equal tokenizers.
//
// # Usage
//
//	tok, err := tokenizer.Build("bpe:4096", corpus) // or "byte", "char", "gpt2"
//	if err != nil {
//		return err
//	}
//	ids := tok.Encode("ROMEO:\nBut soft, what light")
//	ids = append(ids, tok.EOT())
//	text := tok.Decode(ids)
//	if err := tokenizer.Save(tok, "tokenizer.json"); err != nil {
//		return err
//	}
//	tok2, err := tokenizer.Load("tokenizer.json") // same ids, same Hash
//
// # Hugging Face files
//
// HFFiles expresses any of the four kinds in the files transformers and the tokenizers
// library load: tokenizer.json in the library's own schema (a BPE model with vocab and
// merges, the ByteLevel pre-tokenizer and decoder for byte, bpe and gpt2; characters
// with no merges, no pre-tokenizer and the Fuse decoder for char), vocab.json and
// merges.txt for the byte-level kinds (for gpt2 they equal GPT-2's published files,
// derived from the embedded ranks), tokenizer_config.json and special_tokens_map.json.
// ringtrain's own JSON (Marshal) goes beside them as OwnFile,
// "ringtrain_tokenizer.json". Unmarshal reads both schemas, so a tokenizer.json that
// an older ringtrain wrote in its own schema, or one that HFFiles wrote, loads alike.
//
// # Invalid UTF-8
//
// The split regex is defined on code points. A byte that is not part of a valid UTF-8
// sequence is therefore a chunk of its own and encodes as its single-byte id, and the
// regex runs on the valid runs between such bytes. For valid UTF-8, which is all
// tiktoken can see, the chunks and ids are exactly GPT-2's.
//
// # Training cost
//
// BPE training counts the distinct chunks of the corpus once and then keeps pair counts
// and a pair-to-chunks index up to date incrementally: a merge touches only the chunks
// that contain the merged pair and only the pairs next to each occurrence. bpe:4096 on
// the 1.1 MB tiny Shakespeare corpus trains in well under a second on one core.
package tokenizer
