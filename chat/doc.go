// Package chat turns instruction data into the text a GPT is fine-tuned on and later
// answers: prompt/completion pairs, Alpaca records and conversations (lists of
// system, user and assistant messages). It says which parts of that text the model is
// trained to produce, so the loss can be masked to the answers.
//
// Who calls it: `ringtrain prepare --format sft` (rows to tokens and loss masks),
// `generate --prompts`, `chat` and `serve` (a prompt rendered exactly as in training,
// then the model's answer). The template's name is recorded in the dataset manifest and
// in checkpoints, so every one of them applies the template the model was tuned with.
//
// Usage:
//
//	cols := chat.DefaultColumns()
//	ex, err := chat.ParseRow([]byte(line), cols, true)
//	tmpl, err := chat.Lookup(chat.Plain)
//	segs, err := tmpl.Segments(ex)
//	ids, train := chat.Encode(tok, segs)      // train[i]: is ids[i] an answer token?
//	prompt, err := tmpl.Prompt(ex)             // what generation starts from
//
// Why the plain template: with the GPT-2 tokenizer the role markers are ordinary text
// ("### User:") and an answer ends with the existing end-of-text id, so a tuned model
// keeps its vocabulary and its Hugging Face export loads unchanged. Every segment is
// tokenized on its own, exactly as a prompt is tokenized at generation time, so the
// token boundary between a prompt and its answer is the same in training and in use.
//
// The package is pure: no I/O, safe for concurrent use.
package chat
