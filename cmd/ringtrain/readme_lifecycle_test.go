package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// lifecycleSection is the heading of README.md's walk-through.
const lifecycleSection = "## The lifecycle in five minutes"

// readmeLifecycle returns the commands of README.md's lifecycle walk-through: the
// lines of its indented code blocks that start with `ringtrain `, without comments.
func readmeLifecycle(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n"+lifecycleSection+"\n")
	if !ok {
		t.Fatalf("README.md has no section %q", lifecycleSection)
	}
	if i := strings.Index(sec, "\n## "); i >= 0 {
		sec = sec[:i]
	}
	var cmds []string
	for line := range strings.SplitSeq(sec, "\n") {
		if c, ok := strings.CutPrefix(line, "    ringtrain "); ok {
			c, _, _ = strings.Cut(c, "#")
			cmds = append(cmds, "ringtrain "+strings.TrimSpace(c))
		}
	}
	return cmds
}

// scriptCommandRE matches a line of scripts/lifecycle.sh that runs ringtrain,
// possibly fed by a pipe: the command is the last group.
var scriptCommandRE = regexp.MustCompile(`^(?:.*\| )?(ringtrain .*)$`)

// scriptLifecycle returns the ringtrain commands of scripts/lifecycle.sh.
func scriptLifecycle(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../scripts/lifecycle.sh")
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if m := scriptCommandRE.FindStringSubmatch(line); m != nil {
			cmds = append(cmds, strings.TrimSpace(m[1]))
		}
	}
	return cmds
}

// TestReadmeLifecycle checks README.md's lifecycle walk-through: scripts/lifecycle.sh
// runs the same commands in the same order (so running the script checks the
// README), and every command names a ringtrain subcommand whose flags and arguments
// parse.
func TestReadmeLifecycle(t *testing.T) {
	readme, script := readmeLifecycle(t), scriptLifecycle(t)
	if len(readme) < 5 {
		t.Fatalf("README.md's lifecycle has %d commands: %q", len(readme), readme)
	}
	if !slices.Equal(readme, script) {
		t.Fatalf("README.md's lifecycle and scripts/lifecycle.sh differ:\nREADME:\n  %s\nscript:\n  %s",
			strings.Join(readme, "\n  "), strings.Join(script, "\n  "))
	}
	var names []string
	for _, c := range readme {
		if strings.ContainsAny(c, `'"$\`+"`") {
			t.Errorf("%q: quotes and expansions would need a shell; keep the commands plain words", c)
			continue
		}
		args := strings.Fields(c)[1:]
		root := newRoot()
		cmd, rest, err := root.Find(args)
		if err != nil || cmd == root {
			t.Errorf("%q: no such subcommand (%v)", c, err)
			continue
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Errorf("%q: %v", c, err)
			continue
		}
		if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
			t.Errorf("%q: %v", c, err)
		}
		names = append(names, cmd.Name())
	}
	// The walk-through covers the lifecycle in order: pre-training, SFT, the reward
	// model, DPO and chat.
	var order []string
	for _, c := range readme {
		for _, k := range []string{"--objective sft", "--objective reward", "--objective dpo"} {
			if strings.Contains(c, k) {
				order = append(order, k)
			}
		}
	}
	if want := []string{"--objective sft", "--objective reward", "--objective dpo"}; !slices.Equal(order, want) {
		t.Errorf("README.md's lifecycle trains %q, want %q", order, want)
	}
	if len(names) > 0 && names[len(names)-1] != "chat" {
		t.Errorf("README.md's lifecycle ends with %q, want chat", names[len(names)-1])
	}
}
