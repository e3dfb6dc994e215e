package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/chat"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/serve"
	"github.com/ringtrain/ringtrain/tensor"
)

// promptsFile are the flags of `generate --prompts`.
type promptsFile struct {
	in, out, columns string
	batch            int
}

// loadModel loads the checkpoint at dir with its tokenizer (or tokSpec's for a
// directory without one) as a serve.Model named after the directory, and prints the
// template note once to w when the checkpoint records no chat template.
func loadModel(dir, tokSpec string, w io.Writer) (*serve.Model, error) {
	return loadModelOn(dir, tokSpec, nil, w)
}

// loadModelOn is loadModel with the model on backend be (nil: the CPU).
func loadModelOn(dir, tokSpec string, be tensor.Backend, w io.Writer) (*serve.Model, error) {
	ck, err := model.LoadCheckpoint(dir)
	if err != nil {
		return nil, err
	}
	tok, err := checkpointTokenizer(ck, tokSpec)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	m, err := serve.NewModelOn(ck, tok, filepath.Base(filepath.Clean(dir)), be)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	if note := m.TemplateNote(); note != "" {
		fmt.Fprintln(w, note)
	}
	return m, nil
}

// promptRow is one row of a --prompts file.
type promptRow struct {
	line   int    // 1-based line number
	raw    []byte // the row's JSON object, as read
	ex     chat.Example
	prompt serve.Prompt
}

// readPrompts parses every non-blank line of path as a row ParseRow knows.
func readPrompts(path string, cols chat.Columns, m *serve.Model) ([]promptRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--prompts: %w", err)
	}
	defer f.Close()
	var rows []promptRow
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if !json.Valid(line) {
			return nil, fmt.Errorf("%s:%d: %w: not a JSON object", path, n, chat.ErrBadRow)
		}
		ex, err := chat.ParseRow(line, cols, false)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		p, err := m.EncodeExample(ex)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		rows = append(rows, promptRow{line: n, raw: bytes.Clone(line), ex: ex, prompt: p})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--prompts %s: %w", path, err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("--prompts %s: no rows", path)
	}
	return rows, nil
}

// generateFile answers every row of file.in with the checkpoint's model and writes the
// rows with their answers to file.out.
func generateFile(cmd *cobra.Command, ckpt, tokSpec string, be tensor.Backend, file promptsFile, opts model.GenerateOptions, log *slog.Logger) error {
	stderr, stdout := cmd.ErrOrStderr(), cmd.OutOrStdout()
	cols, err := chat.ParseColumns(file.columns)
	if err != nil {
		return usageError(fmt.Errorf("--columns: %w", err))
	}
	if file.batch < 1 {
		return usageErrorf("--batch %d: must be >= 1", file.batch)
	}
	if opts.MaxTokens < 1 {
		return usageErrorf("--max-tokens %d: must be >= 1", opts.MaxTokens)
	}
	m, err := loadModelOn(ckpt, tokSpec, be, stderr)
	if err != nil {
		return err
	}
	rows, err := readPrompts(file.in, cols, m)
	if err != nil {
		return err
	}
	out, err := os.Create(file.out)
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	defer out.Close()

	eng, err := serve.NewEngine(m, file.batch, log, nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	engDone := make(chan struct{})
	go func() { defer close(engDone); _ = eng.Run(ctx) }()
	defer func() { cancel(); <-engDone }()

	// Submit in order from one goroutine (Submit waits for a free row) and write the
	// results in order from this one.
	type pending struct {
		st  *serve.Stream
		err error
	}
	streams := make(chan pending, file.batch)
	go func() {
		defer close(streams)
		for i, r := range rows {
			o := opts
			o.Seed = opts.Seed + uint64(i)
			if n := len(r.prompt.IDs); n >= m.Context() {
				fmt.Fprintf(stderr, "note: %s:%d: the prompt has %d tokens; only the last %d fit the model's context of %d\n",
					file.in, r.line, n, m.Context()-1, m.Context())
			}
			st, err := eng.Submit(ctx, serve.Request{Prompt: r.prompt, Opts: o})
			select {
			case streams <- pending{st, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	w := bufio.NewWriter(out)
	defer w.Flush() // on an early return, keep the rows answered so far
	scored, matched, renamed := 0, 0, false
	for i := range rows {
		p, ok := <-streams
		if !ok {
			break
		}
		r := rows[i]
		if p.err != nil {
			return fmt.Errorf("%s:%d: %w", file.in, r.line, p.err)
		}
		res := p.st.Result()
		if res.Err != nil {
			return fmt.Errorf("%s:%d: %w", file.in, r.line, res.Err)
		}
		var match *bool
		if r.ex.HasAnswer() {
			eq := strings.TrimSpace(res.Text) == strings.TrimSpace(r.ex.Answer())
			match, scored = &eq, scored+1
			if eq {
				matched++
			}
		}
		line, usedGenerated, err := answerRow(r.raw, res.Text, match)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", file.in, r.line, err)
		}
		if usedGenerated && !renamed {
			renamed = true
			fmt.Fprintf(stderr, "note: %s:%d and rows like it have a \"completion\" key of their own; their answers are under \"generated\"\n", file.in, r.line)
		}
		w.Write(line)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %d rows to %s\n", len(rows), file.out)
	if scored > 0 {
		fmt.Fprintf(stdout, "exact match: %d/%d = %.2f%%\n", matched, scored, 100*float64(matched)/float64(scored))
	}
	return nil
}

// answerRow returns the JSON object raw with "completion" (or "generated", when raw
// has a "completion" key) set to text, and "exact_match" when match is not nil. raw's
// keys keep their order and bytes; the new keys come last.
func answerRow(raw []byte, text string, match *bool) ([]byte, bool, error) {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return nil, false, fmt.Errorf("%w: not a JSON object", chat.ErrBadRow)
	}
	key := "completion"
	if _, taken := keys[key]; taken {
		key = "generated"
	}
	val, err := json.Marshal(text)
	if err != nil {
		return nil, false, err
	}
	body := bytes.TrimRight(raw[:bytes.LastIndexByte(raw, '}')], " \t\r\n")
	var b bytes.Buffer
	b.Write(body)
	if len(keys) > 0 {
		b.WriteByte(',')
	}
	fmt.Fprintf(&b, "%q:%s", key, val)
	if match != nil {
		fmt.Fprintf(&b, `,"exact_match":%t`, *match)
	}
	b.WriteByte('}')
	return b.Bytes(), key != "completion", nil
}
