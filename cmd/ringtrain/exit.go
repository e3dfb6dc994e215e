package main

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit statuses of the ringtrain process, as a shell or a scheduler sees them.
const (
	exitOK          = 0   // the command did what it was asked
	exitFailure     = 1   // the command ran and failed
	exitUsage       = 2   // bad flags or flag values, a missing required flag, an unknown command
	exitInterrupted = 130 // stopped by SIGINT or SIGTERM (128 + SIGINT's number), after saving what it could
)

// exitError is a command's error together with the status the process exits with.
// A command returns one (through usageError, usageErrorf or interruptedError) when
// its failure is not a plain failure (status 1); main reads the status with exitCode.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// ExitCode is the status the process exits with.
func (e *exitError) ExitCode() int { return e.code }

// usageError marks err as a usage error (status 2): a bad flag or flag value, a
// missing required flag, an argument or command that does not exist. nil stays nil;
// an error that already carries a status keeps it.
func usageError(err error) error {
	var e *exitError
	if err == nil || errors.As(err, &e) {
		return err
	}
	return &exitError{code: exitUsage, err: err}
}

// usageErrorf is usageError(fmt.Errorf(format, args...)).
func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// interruptedError marks err as the report of a command stopped by a signal
// (status 130).
func interruptedError(err error) error {
	return &exitError{code: exitInterrupted, err: err}
}

// exitCode is the status the process exits with after a command returned err: 0 for
// nil, the status of the outermost exitError in err's chain, else 1.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return exitFailure
}

// isUsage reports whether err is a usage error.
func isUsage(err error) bool { return exitCode(err) == exitUsage }

// declareUsageErrors makes every way cobra rejects a command line a usage error:
// unparsable flags and values (the flag error function, which subcommands inherit),
// arguments a command does not take (each command's Args), and unknown commands
// (a command that only groups others runs, and rejects any argument itself, instead
// of cobra's error before any command runs). Call it once the tree is complete.
func declareUsageErrors(root *cobra.Command) {
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.HasSubCommands() && !c.Runnable() {
			c.Args = cobra.ArbitraryArgs
			c.RunE = func(cmd *cobra.Command, args []string) error {
				if len(args) > 0 {
					return unknownCommand(cmd, args[0])
				}
				return cmd.Help()
			}
		} else if c.Args != nil {
			args := c.Args
			c.Args = func(cmd *cobra.Command, a []string) error { return usageError(args(cmd, a)) }
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// unknownCommand is the usage error for a command name c does not have, with cobra's
// suggestions of names it does.
func unknownCommand(c *cobra.Command, name string) error {
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2 // cobra's own default
	}
	msg := fmt.Sprintf("unknown command %q for %q", name, c.CommandPath())
	if s := c.SuggestionsFor(name); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageErrorf("%s", msg)
}

// requireFlags declares the named flags of cmd required (cobra's annotation, which
// completions and the man page show) and says so in their help. checkRequired
// enforces it.
func requireFlags(cmd *cobra.Command, names ...string) {
	for _, n := range names {
		if err := cmd.MarkFlagRequired(n); err != nil {
			panic(fmt.Sprintf("requireFlags: %s has no flag --%s", cmd.Name(), n)) // a programming error
		}
		f := cmd.Flags().Lookup(n)
		f.Usage += " (required)"
	}
}

// checkRequired returns a usage error naming every required flag of cmd that was
// given neither on the command line nor by the environment (RINGTRAIN_<FLAG> or a
// scheduler's variables, which set flags before it runs).
func checkRequired(cmd *cobra.Command) error {
	var missing []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if req := f.Annotations[cobra.BashCompOneRequiredFlag]; len(req) > 0 && req[0] == "true" && !f.Changed {
			missing = append(missing, "--"+f.Name)
		}
	})
	switch len(missing) {
	case 0:
		return nil
	case 1:
		return usageErrorf("required flag %s not given", missing[0])
	}
	sort.Strings(missing)
	return usageErrorf("required flags %s not given", strings.Join(missing, ", "))
}
