package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/ringtrain/ringtrain/security"
)

// newHealthCmd is "health": one check of one process's standard gRPC health
// service, for container health checks (the image has no shell and no other
// program) and for scripts.
func newHealthCmd() *cobra.Command {
	var (
		addr, service string
		timeout       time.Duration
		tf            tlsFlags
	)
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Check one coordinator's or worker's gRPC health service (exit 0: serving)",
		Long: `Ask the standard gRPC health service (grpc.health.v1.Health) of one process about
--service and exit 0 when it answers SERVING, 1 otherwise: NOT_SERVING, a service it
does not know, or no answer within --timeout (the reason is printed). A coordinator
serves it on --grpc-addr and reports the whole server ("") and the service
ringtrain.v1.Coordinator; a worker serves it on --listen and reports the whole
server. This is the check of the compose file's healthcheck.`,
		Example: `  ringtrain health --addr 127.0.0.1:7001 --service ringtrain.v1.Coordinator
  ringtrain health --addr 127.0.0.1:7100`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, _, err := net.SplitHostPort(addr); err != nil {
				return usageErrorf("--addr %q: want host:port: %w", addr, err)
			}
			if timeout <= 0 {
				return usageErrorf("--timeout %v: must be positive", timeout)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			creds, err := tf.load(nil)
			if err != nil {
				return err
			}
			st, err := checkHealth(ctx, addr, service, creds)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s: %s\n", addr, serviceName(service), st)
			if st != healthpb.HealthCheckResponse_SERVING {
				return fmt.Errorf("health %s %s: %s", addr, serviceName(service), st)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:7001", "host:port of the process's gRPC server (a coordinator's --grpc-addr, a worker's --listen)")
	f.StringVar(&service, "service", "", `the service to ask about ("": the server as a whole)`)
	f.DurationVar(&timeout, "timeout", 3*time.Second, "how long to wait for the answer")
	addTLSFlags(cmd, &tf, clientInsecureHelp)
	return cmd
}

// checkHealth asks the gRPC health service at addr about service and returns its
// answer; an error when none came within ctx, with gRPC's reason ("connection
// refused", "unknown service") in its message. Like every ringtrain client it
// takes no service config from DNS. With creds the call is mutual TLS to a
// coordinator or a worker of creds' CA.
func checkHealth(ctx context.Context, addr, service string, creds *security.Store) (healthpb.HealthCheckResponse_ServingStatus, error) {
	tc := insecure.NewCredentials()
	if creds != nil {
		tc = creds.ClientCredentials(security.Expect{Roles: []security.Role{security.RoleCoordinator, security.RoleWorker}})
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(tc), grpc.WithDisableServiceConfig())
	if err != nil {
		return 0, fmt.Errorf("health %s: %w", addr, err)
	}
	defer cc.Close()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		s := status.Convert(err)
		return 0, fmt.Errorf("health %s %s: %s: %s", addr, serviceName(service), s.Code(), s.Message())
	}
	return resp.GetStatus(), nil
}

// serviceName is how a health-checked service is shown: "" is the whole server.
func serviceName(service string) string {
	if service == "" {
		return `(server)`
	}
	return service
}
