package worker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/security"
)

// reportUnreachable runs after a generation's ring failed without a newer plan: it
// health-checks every other member of plan at once (each within ProbeTimeout) and
// reports to the coordinator those that do not answer, so the leader can remove a
// dead, stopped or cut-off member long before its lease expires. A member that
// answers is not reported: the ring is then rebuilt with it.
func (w *Worker) reportUnreachable(ctx context.Context, plan *pb.Plan) {
	var wg sync.WaitGroup
	for peer, err := range w.probePeers(ctx, plan) {
		if err == nil || ctx.Err() != nil {
			continue
		}
		w.log.Warn("peer unreachable: reporting it", "peer", peer.GetId(), "addr", peer.GetAddress(), "generation", plan.GetGeneration(), "err", err)
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, 5*w.cfg.ProbeTimeout)
			defer cancel()
			if err := w.cfg.Coordinators.ReportPeerLost(rctx, &pb.ReportPeerLostRequest{
				WorkerId: w.cfg.ID, Generation: plan.GetGeneration(), PeerId: peer.GetId(), Error: err.Error(),
			}); err != nil && ctx.Err() == nil {
				w.log.Warn("report peer lost", "peer", peer.GetId(), "err", err)
			}
		})
	}
	wg.Wait()
}

// canReachPeers reports whether some other member of the newest plan answers a
// health check (true when no plan with other members is known).
func (w *Worker) canReachPeers(ctx context.Context) bool {
	plan, _ := w.plans.get()
	results := w.probePeers(ctx, plan)
	if len(results) == 0 {
		return true
	}
	for _, err := range results {
		if err == nil {
			return true
		}
	}
	return false
}

// probePeers health-checks every member of plan but this worker, all at once, each
// within ProbeTimeout, and returns what each check gave (nil: serving).
func (w *Worker) probePeers(ctx context.Context, plan *pb.Plan) map[*pb.Worker]error {
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		out = map[*pb.Worker]error{}
	)
	for _, peer := range plan.GetWorkers() {
		if peer.GetId() == w.cfg.ID {
			continue
		}
		wg.Go(func() {
			err := probe(ctx, peer.GetAddress(), w.cfg.ProbeTimeout, w.peerCredentials(peer.GetId()))
			mu.Lock()
			out[peer] = err
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// peerCredentials are the credentials of a call to the peer server of worker id:
// with TLS, this worker's certificate, and the peer must prove it is id.
func (w *Worker) peerCredentials(id string) credentials.TransportCredentials {
	if w.cfg.TLS == nil {
		return insecure.NewCredentials()
	}
	return w.cfg.TLS.ClientCredentials(security.Expect{Roles: []security.Role{security.RoleWorker}, ID: id})
}

// probe checks the gRPC health service of the peer server at addr. Like every
// ringtrain client it takes no service config from DNS, whose TXT lookup stalls
// for seconds on resolvers that drop it (Docker's embedded DNS).
func probe(ctx context.Context, addr string, timeout time.Duration, creds credentials.TransportCredentials) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds), grpc.WithDisableServiceConfig())
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer cc.Close()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return fmt.Errorf("health check %s: %w", addr, err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health check %s: %s", addr, resp.GetStatus())
	}
	return nil
}
