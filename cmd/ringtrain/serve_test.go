package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/chat"
	"github.com/ringtrain/ringtrain/serve"
)

// tinyChatCheckpoint saves serve.TinyCheckpoint with template and returns its directory.
func tinyChatCheckpoint(t *testing.T, template string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tuned")
	serve.TinyCheckpoint(t, dir, template)
	return dir
}

func readJSONL(t *testing.T, path string) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var row map[string]any
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("%s: %q: %v", path, line, err)
		}
		rows = append(rows, row)
	}
	return rows
}

// TestGeneratePrompts answers a file of every row shape, one row at a time and four at a
// time, and checks the kept keys, the answers (the same in both runs, and a pair's the
// same as generate --prompt's greedy continuation), exact_match and its rate.
func TestGeneratePrompts(t *testing.T) {
	ck := tinyChatCheckpoint(t, chat.Plain)
	tmp := t.TempDir()
	in := filepath.Join(tmp, "in.jsonl")
	rows := `{"id":1,"prompt":"The cat ","completion":"REF1"}
{"id":2,"instruction":"Say hi","input":"","output":"hello"}

{"id":3,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Name a colour"}]}
{"id":4,"question":"2+2=","prompt":"2+2="}
`
	if err := os.WriteFile(in, []byte(rows), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(out string, extra ...string) string {
		return mustRun(t, append([]string{"generate", "--checkpoint", ck, "--prompts", in, "--out", out, "--max-tokens", "12"}, extra...)...)
	}
	out1, out4 := filepath.Join(tmp, "b1.jsonl"), filepath.Join(tmp, "b4.jsonl")
	run(out1, "--batch", "1")
	printed := run(out4, "--batch", "4")
	b1, _ := os.ReadFile(out1)
	b4, _ := os.ReadFile(out4)
	if !bytes.Equal(b1, b4) {
		t.Fatalf("--batch 1 and --batch 4 wrote different answers:\n%s\n%s", b1, b4)
	}
	got := readJSONL(t, out4)
	if len(got) != 4 {
		t.Fatalf("%d rows, want 4", len(got))
	}
	for i, row := range got {
		if row["id"] != float64(i+1) {
			t.Errorf("row %d: id %v", i, row["id"])
		}
	}
	// A pair row's own "completion" is its reference: the answer goes under "generated".
	if got[0]["completion"] != "REF1" || got[0]["exact_match"] != false {
		t.Errorf("pair row: %v", got[0])
	}
	greedy := continuation(t, mustRun(t, "generate", "--checkpoint", ck, "--prompt", "The cat ", "--max-tokens", "12", "--temperature", "0"), "The cat ")
	if got[0]["generated"] != greedy {
		t.Errorf("pair row answered %q, generate --prompt --temperature 0 %q", got[0]["generated"], greedy)
	}
	if _, ok := got[1]["completion"].(string); !ok || got[1]["exact_match"] != false || got[1]["output"] != "hello" {
		t.Errorf("alpaca row: %v", got[1])
	}
	if _, ok := got[2]["completion"].(string); !ok || got[2]["exact_match"] != nil {
		t.Errorf("conversation without a reference: %v", got[2])
	}
	if got[3]["question"] != "2+2=" || got[3]["exact_match"] != nil {
		t.Errorf("prompt row without a completion: %v", got[3])
	}
	if !strings.Contains(printed, "exact match: 0/2 = 0.00%") {
		t.Errorf("printed %q, want the exact-match rate 0/2", printed)
	}

	// References equal to the model's answers match: the rate is computed, not assumed.
	ref := fmt.Sprintf(`{"instruction":"Say hi","output":%q}`+"\n"+`{"prompt":"2+2=","completion":" nope"}`+"\n", got[1]["completion"])
	in2 := filepath.Join(tmp, "in2.jsonl")
	if err := os.WriteFile(in2, []byte(ref), 0o644); err != nil {
		t.Fatal(err)
	}
	printed = mustRun(t, "generate", "--checkpoint", ck, "--prompts", in2, "--out", filepath.Join(tmp, "o2.jsonl"), "--max-tokens", "12")
	if !strings.Contains(printed, "exact match: 1/2 = 50.00%") {
		t.Errorf("printed %q, want 1/2", printed)
	}
	o2 := readJSONL(t, filepath.Join(tmp, "o2.jsonl"))
	if o2[0]["exact_match"] != true || o2[1]["exact_match"] != false {
		t.Errorf("exact_match: %v", o2)
	}
}

func TestGeneratePromptsErrors(t *testing.T) {
	ck := tinyChatCheckpoint(t, "")
	tmp := t.TempDir()
	bad := filepath.Join(tmp, "bad.jsonl")
	if err := os.WriteFile(bad, []byte(`{"prompt":"a"}`+"\n"+`{"text":"b"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--prompts", bad}, 2, "--prompts needs --out"},
		{[]string{"--prompts", bad, "--out", filepath.Join(tmp, "o"), "--prompt", "x"}, 2, "--prompt and --prompts: give one"},
		{[]string{"--prompts", bad, "--out", filepath.Join(tmp, "o")}, 1, "bad.jsonl:2: chat: bad row: no \"prompt\""},
		{[]string{"--prompts", bad, "--out", filepath.Join(tmp, "o"), "--columns", "colour=x"}, 2, "--columns"},
		{[]string{"--prompts", bad, "--out", filepath.Join(tmp, "o"), "--batch", "0"}, 2, "--batch 0"},
		{[]string{"--prompts", bad, "--out", filepath.Join(tmp, "o"), "--max-tokens", "0"}, 2, "--max-tokens 0"},
		{[]string{"--prompts", filepath.Join(tmp, "missing.jsonl"), "--out", filepath.Join(tmp, "o")}, 1, "missing.jsonl"},
	} {
		_, stderr, code := execIn(t, append([]string{"generate", "--checkpoint", ck}, tc.args...)...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("generate %v: status %d, stderr %q; want %d and %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}

// TestChatPiped drives chat through piped standard input: answers stream out, /reset
// starts over (the same question then gets the same greedy answer), and the end of
// input exits 0. A checkpoint without a template says so once.
func TestChatPiped(t *testing.T) {
	for _, template := range []string{chat.Plain, ""} {
		ck := tinyChatCheckpoint(t, template)
		root := newRoot()
		var out, errOut bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&errOut)
		root.SetIn(strings.NewReader("Hi there\n\n/reset\nHi there\nAnd you?\n"))
		root.SetArgs([]string{"--log-level", "error", "chat", "--checkpoint", ck, "--system", "Be brief.", "--temperature", "0", "--max-tokens", "10"})
		if code := execute(context.Background(), root, &errOut); code != 0 {
			t.Fatalf("chat exited %d: %s", code, errOut.String())
		}
		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		// Answers may hold newlines: find the reset marker and compare around it.
		text := out.String()
		before, after, ok := strings.Cut(text, "(new conversation)\n")
		if !ok {
			t.Fatalf("no reset marker in %q", lines)
		}
		if !strings.HasPrefix(after, before) || len(after) <= len(before) {
			t.Errorf("after /reset the same question answered %q, before %q (want it first, then a second answer)", after, before)
		}
		note := strings.Count(errOut.String(), "records no chat template")
		if (template == "") != (note == 1) || note > 1 {
			t.Errorf("template %q: the no-template note printed %d times: %q", template, note, errOut.String())
		}
	}
	if _, stderr, code := execIn(t, "chat", "--checkpoint", tinyChatCheckpoint(t, chat.Plain), "/exit"); code != 2 || !strings.Contains(stderr, "unknown command") && !strings.Contains(stderr, "accepts 0 arg") {
		t.Errorf("chat with an argument: status %d, %q", code, stderr)
	}
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestServeCommand runs `ringtrain serve` as a process, asks it for a completion, a
// chat answer and its metrics, then sends SIGTERM: it must exit 0.
func TestServeCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process; -short skips it")
	}
	ck := tinyChatCheckpoint(t, chat.Plain)
	addr := freeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := subprocess(t, ctx, "serve", "--checkpoint", ck, "--addr", addr, "--batch", "4", "--model-name", "tiny")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not answer /healthz within 30s: %v\n%s", err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Post(base+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"tiny","messages":[{"role":"user","content":"Hi"}],"max_tokens":8,"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	var last string
	for sc.Scan() {
		if sc.Text() != "" {
			last = sc.Text()
		}
	}
	resp.Body.Close()
	if last != "data: [DONE]" {
		t.Errorf("chat stream ended with %q", last)
	}
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `ringtrain_serve_requests_total{code="200",endpoint="chat_completions"} 1`) ||
		!strings.Contains(string(metrics), "go_goroutines") {
		t.Errorf("metrics:\n%s", metrics)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "shutting down") {
		t.Errorf("serve logged no shutdown:\n%s", stderr.String())
	}
}
