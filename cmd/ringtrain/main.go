// Command ringtrain trains GPT language models, on one machine or as a cluster.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ringtrain/ringtrain/progress"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal asks the command to stop (train checkpoints first); from
		// then on the default handling is back, so a second one ends the process.
		<-ctx.Done()
		stop()
	}()
	code := execute(ctx, newRoot(), os.Stderr)
	stop()
	os.Exit(code)
}

// execute runs root and returns the status the process exits with (exit.go): 0, or
// the status of the command's error after printing it to stderr; a usage error also
// says where the usage is. With --log-format json (or RINGTRAIN_LOG_FORMAT=json) the
// error is a JSON log record like every other line the process writes to stderr
// (errorRecord); otherwise it is the line "ringtrain: <error>".
func execute(ctx context.Context, root *cobra.Command, stderr io.Writer) int {
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	if cmd == nil {
		cmd = root
	}
	code := exitCode(err)
	hint := ""
	if isUsage(err) {
		hint = fmt.Sprintf("Run '%s --help' for usage.", cmd.CommandPath())
	}
	if logFormatOf(root) == "json" {
		errorRecord(stderr, cmd, err, code, hint)
		return code
	}
	fmt.Fprintln(stderr, "ringtrain:", err)
	if hint != "" {
		fmt.Fprintln(stderr, hint)
	}
	return code
}

// logFormatOf is the log format root's command line chose: --log-format, else
// RINGTRAIN_LOG_FORMAT (which a command that failed before it ran has not applied),
// else the default.
func logFormatOf(root *cobra.Command) string {
	f := root.PersistentFlags().Lookup("log-format")
	if !f.Changed {
		if v, ok := os.LookupEnv("RINGTRAIN_LOG_FORMAT"); ok {
			return v
		}
	}
	return f.Value.String()
}

// errorRecord writes a command's error as one JSON log record at level ERROR: msg
// says which command failed ("ringtrain train failed", "... interrupted", "... bad
// usage"), error is the message the text format prints, exit_status the process's
// status, and usage (for a usage error) where the usage is.
func errorRecord(w io.Writer, cmd *cobra.Command, err error, code int, hint string) {
	msg := cmd.CommandPath() + " failed"
	switch code {
	case exitUsage:
		msg = cmd.CommandPath() + ": bad usage"
	case exitInterrupted:
		msg = cmd.CommandPath() + " interrupted"
	}
	attrs := []slog.Attr{slog.String("error", err.Error()), slog.Int("exit_status", code)}
	if hint != "" {
		attrs = append(attrs, slog.String("usage", hint))
	}
	slog.New(slog.NewJSONHandler(w, nil)).LogAttrs(context.Background(), slog.LevelError, msg, attrs...)
}

type globals struct {
	logLevel   string
	logFormat  string
	cpuProfile string
	profFile   *os.File
	ident      identity // from the environment; set before a command runs
	// given holds the flags the user set, on the command line or as
	// RINGTRAIN_<FLAG>, before ident filled others; set before a command runs.
	given map[string]bool
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "ringtrain",
		Short:         "Distributed data-parallel training of GPT language models",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       readBuildInfo().short(),
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd); err != nil {
				return usageError(err)
			}
			g.given = map[string]bool{}
			cmd.Flags().Visit(func(f *pflag.Flag) { g.given[f.Name] = true })
			host, _ := os.Hostname()
			id, err := identityFromEnv(os.LookupEnv, host)
			if err != nil {
				return usageError(err)
			}
			if err := id.apply(cmd); err != nil {
				return usageError(err)
			}
			g.ident = id
			if err := checkRequired(cmd); err != nil {
				return err
			}
			return g.startProfile()
		},
		PersistentPostRun: func(*cobra.Command, []string) { g.stopProfile() },
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.PersistentFlags().StringVar(&g.cpuProfile, "cpuprofile", "", "write a CPU profile (go tool pprof) to this file")
	root.AddCommand(
		newPrepareCmd(g),
		newTrainCmd(g),
		newEvalCmd(g),
		newScoreCmd(),
		newGenerateCmd(g),
		newChatCmd(g),
		newServeCmd(g),
		newExportCmd(g),
		newLocalCmd(g),
		newBenchCmd(g),
		newCoordinatorCmd(g),
		newStatusCmd(g),
		newWorkerCmd(g),
		newSubmitCmd(g),
		newAuditCmd(),
		newPlotCmd(g),
		newHealthCmd(),
		newCertsCmd(),
		newVersionCmd(),
		newManCmd(),
	)
	root.SetVersionTemplate("{{.Version}}\n")
	declareUsageErrors(root)
	return root
}

// applyEnv sets every flag the user did not give from RINGTRAIN_<FLAG> in the
// environment (dashes become underscores): flags win over the environment.
func applyEnv(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := "RINGTRAIN_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if e := cmd.Flags().Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", name, v, e)
			}
		}
	})
	return err
}

func (g *globals) startProfile() error {
	if g.cpuProfile == "" {
		return nil
	}
	f, err := os.Create(g.cpuProfile)
	if err != nil {
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	g.profFile = f
	// PersistentPostRun is skipped when a command fails; finalizers always run.
	cobra.OnFinalize(g.stopProfile)
	return nil
}

func (g *globals) stopProfile() {
	if g.profFile != nil {
		pprof.StopCPUProfile()
		g.profFile.Close()
		g.profFile = nil
	}
}

// logger returns the process's logger (newLogger) on standard error.
func (g *globals) logger() (*slog.Logger, error) {
	l, err := newLogger(logOutput(), g.logLevel, g.logFormat, sameTerminal(os.Stdout, os.Stderr))
	return l, usageError(err)
}

// logOutput is where logs go: standard error, through a writer that first erases
// the current line when standard output and error are both terminals, so that a log
// line replaces the progress bar rather than running on after it.
func logOutput() io.Writer {
	if progress.IsTerminal(os.Stdout) && progress.IsTerminal(os.Stderr) {
		return progress.ClearingWriter(os.Stderr)
	}
	return os.Stderr
}
