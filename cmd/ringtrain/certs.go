package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/security"
)

// newCertsCmd is "certs": a CA and role certificates in the Kubernetes TLS
// Secret layout, for clusters without cert-manager (compose, bare hosts).
func newCertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Create a CA and issue role certificates (ca.crt, tls.crt, tls.key)",
		Long: `Create a certificate authority and issue the certificates ringtrain processes prove
themselves with. Each certificate names its holder's role and id in a URI SAN
(ringtrain://worker/w3, ringtrain://coordinator/c0, ringtrain://admin/alice,
ringtrain://reader/grafana); keys are ECDSA P-256. Every directory written holds
ca.crt, tls.crt and tls.key, the layout of a Kubernetes TLS Secret, which
--tls-dir reads. See docs/security.md.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newCertsCACmd(), newCertsIssueCmd(), newCertsClusterCmd())
	return cmd
}

func newCertsCACmd() *cobra.Command {
	var (
		out, name string
		validity  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "ca --out DIR",
		Short: "Create a CA: DIR/tls.crt and DIR/ca.crt (its certificate), DIR/tls.key (its key)",
		Long: `Create a self-signed CA in DIR. tls.crt and ca.crt are its certificate, tls.key its
key (0600): the layout of a cert-manager CA Issuer's Secret, so the same directory
can back "kubectl create secret tls ringtrain-ca --cert DIR/tls.crt --key DIR/tls.key".
Keep tls.key off the cluster's machines: 'certs issue --ca DIR' is the only user.`,
		Example: `  ringtrain certs ca --out ca`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if validity <= 0 {
				return usageErrorf("--validity %v: must be positive", validity)
			}
			ca, err := security.NewCA(name, validity)
			if err != nil {
				return err
			}
			if err := ca.WriteDir(out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "CA %q written to %s (valid until %s)\n", name, out, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory to write ca.crt, tls.crt and tls.key into (created)")
	cmd.Flags().StringVar(&name, "name", "ringtrain CA", "the CA's common name")
	cmd.Flags().DurationVar(&validity, "validity", 5*365*24*time.Hour, "how long the CA is valid")
	requireFlags(cmd, "out")
	return cmd
}

func newCertsIssueCmd() *cobra.Command {
	var (
		caDir, role, id, out string
		hosts                []string
		validity             time.Duration
	)
	cmd := &cobra.Command{
		Use:   "issue --ca DIR --role ROLE --id ID --out DIR",
		Short: "Issue a role certificate signed by a CA",
		Long: `Issue a certificate for one process or person: --role coordinator, worker, admin or
reader, and --id its id (a worker's --id, a coordinator's --id, an admin's name). It
is written to --out as ca.crt (the CA's certificate), tls.crt and tls.key (0600).
--hosts adds host names and IP addresses as DNS and IP SANs; ringtrain itself
authenticates peers by the ringtrain:// URI SAN, the host SANs serve other tools.`,
		Example: `  ringtrain certs issue --ca ca --role worker --id w0 --hosts h1,10.0.0.3 --out tls/w0
  ringtrain certs issue --ca ca --role admin --id alice --out ~/.ringtrain/tls`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if validity <= 0 {
				return usageErrorf("--validity %v: must be positive", validity)
			}
			who, err := security.NewIdentity(security.Role(role), id)
			if err != nil {
				return usageErrorf("--role %q --id %q: %v", role, id, err)
			}
			ca, err := security.LoadCA(caDir)
			if err != nil {
				return fmt.Errorf("--ca: %w", err)
			}
			is, err := ca.Issue(who, splitList(hosts), validity)
			if err != nil {
				return err
			}
			if err := is.WriteDir(out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s written to %s\n", who, out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&caDir, "ca", "", "the CA's directory (from 'certs ca')")
	f.StringVar(&role, "role", "", "coordinator, worker, admin or reader")
	f.StringVar(&id, "id", "", "the holder's id")
	f.StringSliceVar(&hosts, "hosts", nil, "host names and IP addresses for the DNS and IP SANs, comma separated")
	f.StringVar(&out, "out", "", "directory to write ca.crt, tls.crt and tls.key into (created)")
	f.DurationVar(&validity, "validity", 365*24*time.Hour, "how long the certificate is valid (at most as long as the CA)")
	requireFlags(cmd, "ca", "role", "id", "out")
	return cmd
}

func newCertsClusterCmd() *cobra.Command {
	var (
		caDir, out                             string
		coordinators, workers, admins, readers []string
		validity, renewBefore                  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "cluster --ca DIR --out DIR --coordinator-ids IDS --worker-ids IDS --admins NAMES",
		Short: "Issue every certificate of a cluster at once (a compose one-shot service)",
		Long: `Make sure --ca holds a CA (created when missing) and --out/ID holds a certificate of it
for every id named: coordinators, workers, admins and readers, each with its id as a
DNS SAN. What is there and valid for more than --renew-before is kept, so running it
again changes nothing, and renews certificates about to expire (running processes
pick them up without a restart). Mount --out into the cluster's containers and keep
--ca (its tls.key) in the one-shot service alone.`,
		Example: `  ringtrain certs cluster --ca /tls-ca --out /tls --coordinator-ids coordinator-0,coordinator-1,coordinator-2 \
      --worker-ids worker-0,worker-1,worker-2 --admins submit`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if validity <= 0 || renewBefore < 0 || renewBefore >= validity {
				return usageErrorf("--validity %v, --renew-before %v: want 0 <= renew-before < validity", validity, renewBefore)
			}
			var who []security.Identity
			for _, g := range []struct {
				role security.Role
				ids  []string
				flag string
			}{{security.RoleCoordinator, coordinators, "--coordinator-ids"}, {security.RoleWorker, workers, "--worker-ids"},
				{security.RoleAdmin, admins, "--admins"}, {security.RoleReader, readers, "--readers"}} {
				for _, id := range splitList(g.ids) {
					w, err := security.NewIdentity(g.role, id)
					if err != nil {
						return usageErrorf("%s %q: %v", g.flag, id, err)
					}
					who = append(who, w)
				}
			}
			if len(who) == 0 {
				return usageErrorf("name at least one of --coordinator-ids, --worker-ids, --admins, --readers")
			}
			done, err := security.IssueAll(caDir, out, who, validity, renewBefore)
			if err != nil {
				return err
			}
			for _, d := range done {
				fmt.Fprintln(cmd.OutOrStdout(), "issued", d)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d certificates in %s, %d issued now\n", len(who), out, len(done))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&caDir, "ca", "", "the CA's directory (created when missing)")
	f.StringVar(&out, "out", "", "directory of the certificates, one subdirectory per id")
	f.StringSliceVar(&coordinators, "coordinator-ids", nil, "coordinator ids (their --id), comma separated")
	f.StringSliceVar(&workers, "worker-ids", nil, "worker ids (their --id), comma separated")
	f.StringSliceVar(&admins, "admins", nil, "admin names, comma separated")
	f.StringSliceVar(&readers, "readers", nil, "read-only reader names, comma separated")
	f.DurationVar(&validity, "validity", 90*24*time.Hour, "how long each certificate is valid")
	f.DurationVar(&renewBefore, "renew-before", 30*24*time.Hour, "issue again a certificate that expires sooner than this")
	requireFlags(cmd, "ca", "out")
	return cmd
}
