package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/ringtrain/ringtrain/tensor"
)

// buildInfo is what the binary knows about its own build (runtime/debug.ReadBuildInfo)
// and the machine it runs on.
type buildInfo struct {
	Version   string // the module version: a tag for `go install ...@vX.Y.Z`, "(devel)" for a build in a checkout
	Revision  string // vcs.revision; "" when the build recorded none (-buildvcs=false, no .git)
	Time      string // vcs.time, the commit's time (RFC 3339)
	Modified  bool   // vcs.modified: the work tree had uncommitted changes
	GoVersion string // the toolchain that built the binary
	OS, Arch  string
	Gemm      string // the gemm kernel chosen for this CPU (tensor.GemmKernel)
}

// readBuildInfo returns the build information of the running binary.
func readBuildInfo() buildInfo {
	b := buildInfo{Version: "(unknown)", GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, Gemm: tensor.GemmKernel()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if bi.Main.Version != "" {
		b.Version = bi.Main.Version
	}
	b.GoVersion = bi.GoVersion
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// commit is the short revision, "+modified" for a dirty tree, or "unknown".
func (b buildInfo) commit() string {
	if b.Revision == "" {
		return "unknown"
	}
	c := b.Revision[:min(12, len(b.Revision))]
	if b.Modified {
		c += "+modified"
	}
	return c
}

// short is the one line `ringtrain --version` prints.
func (b buildInfo) short() string {
	return fmt.Sprintf("ringtrain %s (commit %s, %s %s/%s, gemm %s)", b.Version, b.commit(), b.GoVersion, b.OS, b.Arch, b.Gemm)
}

// long is what `ringtrain version` prints: one field per line.
func (b buildInfo) long() string {
	commitTime := b.Time
	if commitTime == "" {
		commitTime = "unknown"
	}
	rows := [][2]string{
		{"version", b.Version},
		{"commit", b.commit()},
		{"commit time", commitTime},
		{"go", b.GoVersion},
		{"platform", b.OS + "/" + b.Arch},
		{"gemm kernel", b.Gemm},
	}
	var s strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&s, "%-12s %s\n", r[0]+":", r[1])
	}
	return s.String()
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, Go toolchain, platform and gemm kernel",
		Long: `Print what the binary knows of its build: the module version ("(devel)" for a build
in a checkout), the commit and its time and whether the tree was modified (when the
build recorded them), the Go toolchain, the platform, and the gemm kernel this CPU
runs. 'ringtrain --version' prints the same on one line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprint(cmd.OutOrStdout(), readBuildInfo().long())
			return err
		},
	}
}

func newManCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "man",
		Short: "Write man pages for ringtrain and every command",
		Long: `Write one man page (section 1) per command into --dir: ringtrain.1,
ringtrain-train.1, ringtrain-bench-gemm.1, ... Install them under a MANPATH directory
(for example /usr/local/share/man/man1) to read them with 'man ringtrain-train'.
SOURCE_DATE_EPOCH, when set, dates the pages (for reproducible packages).`,
		Example: `  ringtrain man --dir /usr/local/share/man/man1`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("--dir: %w", err)
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true
			header := &doc.GenManHeader{Title: "RINGTRAIN", Section: "1", Source: "ringtrain " + readBuildInfo().Version, Manual: "ringtrain manual"}
			if err := doc.GenManTree(root, header, dir); err != nil {
				return fmt.Errorf("--dir %s: %w", dir, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote man pages to %s\n", dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory to write the pages to (created if missing)")
	requireFlags(cmd, "dir")
	return cmd
}
