package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"

	"github.com/ringtrain/ringtrain/chat"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/tokenizer"
)

// tunedModel is a checkpoint loaded for answering or scoring rows: its model on the
// CPU, its tokenizer and the chat template it was tuned with.
type tunedModel struct {
	m    *model.GPT
	tok  tokenizer.Tokenizer
	tmpl *chat.Template
}

// loadTuned loads the checkpoint in dir with the template named by template, or by
// the checkpoint when template is "" (an unknown name is a usage error of --template).
func loadTuned(dir, template string) (*tunedModel, error) {
	ck, err := model.LoadCheckpoint(dir)
	if err != nil {
		return nil, err
	}
	if template == "" {
		template = ck.Trainer.ChatTemplate
	}
	tmpl, err := chat.Lookup(template)
	if err != nil {
		return nil, usageError(fmt.Errorf("--template: %w", err))
	}
	tok, err := checkpointTokenizer(ck, "")
	if err != nil {
		return nil, fmt.Errorf("--checkpoint %s: %w", dir, err)
	}
	m, err := model.New(ck.Config, nil)
	if err != nil {
		return nil, err
	}
	copy(m.Params.Slab, ck.Params)
	return &tunedModel{m: m, tok: tok, tmpl: tmpl}, nil
}

// readRows parses every non-blank line of the JSONL file path as a row with an
// answer; errors name flag, the file and the line. It returns the rows and their
// 1-based line numbers.
func readRows(flag, path string, cols chat.Columns) ([]chat.Example, []int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", flag, err)
	}
	var examples []chat.Example
	var lines []int
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		ex, err := chat.ParseRow(sc.Bytes(), cols, true)
		if err != nil {
			return nil, nil, fmt.Errorf("%s %s:%d: %w", flag, path, line, err)
		}
		examples, lines = append(examples, ex), append(lines, line)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", flag, path, err)
	}
	return examples, lines, nil
}
