package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/security"
)

// tlsFlags are --tls-dir and --insecure, which every command that serves or
// calls a cluster has.
type tlsFlags struct {
	dir      string
	insecure bool
}

const tlsDirHelp = "directory of ca.crt, tls.crt and tls.key (a Kubernetes TLS Secret's layout), re-read when they change: mutual TLS on every connection"

func addTLSFlags(cmd *cobra.Command, f *tlsFlags, insecureHelp string) {
	cmd.Flags().StringVar(&f.dir, "tls-dir", "", tlsDirHelp)
	cmd.Flags().BoolVar(&f.insecure, "insecure", false, insecureHelp)
}

const (
	serveInsecureHelp  = "serve plain text without --tls-dir even off loopback (anyone who reaches the ports controls the cluster)"
	clientInsecureHelp = "call the cluster in plain text without --tls-dir (only a cluster started with --insecure answers)"
)

// load reads the certificates of --tls-dir; nil without it. --tls-dir and
// --insecure together are a usage error.
func (f *tlsFlags) load(log *slog.Logger) (*security.Store, error) {
	if f.dir != "" && f.insecure {
		return nil, usageErrorf("--tls-dir and --insecure: give one, not both")
	}
	if f.dir == "" {
		return nil, nil
	}
	st, err := security.LoadDir(f.dir, log)
	if err != nil {
		return nil, fmt.Errorf("--tls-dir: %w", err)
	}
	return st, nil
}

// serve loads the certificates of a process that listens on addrs (flag →
// address). Without --tls-dir it refuses addresses off loopback unless
// --insecure, and warns when --insecure lets it serve plain text.
func (f *tlsFlags) serve(log *slog.Logger, addrs map[string]string) (*security.Store, error) {
	st, err := f.load(log)
	if err != nil || st != nil {
		if st != nil {
			log.Info("TLS on", "identity", st.Identity().String(), "dir", f.dir)
		}
		return st, err
	}
	if f.insecure {
		log.Warn("TLS off (--insecure): every port serves plain text to anyone who reaches it", "addrs", addrs)
		return nil, nil
	}
	if err := security.CheckPlaintext(addrs); err != nil {
		return nil, usageError(err)
	}
	return nil, nil
}
