package worker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// reportUnreachable runs after a generation's ring failed without a newer plan: it
// health-checks every other member of plan at once (each within ProbeTimeout) and
// reports to the coordinator those that do not answer, so the leader can remove a
// dead, stopped or cut-off member long before its lease expires. A member that
// answers is not reported: the ring is then rebuilt with it.
func (w *Worker) reportUnreachable(ctx context.Context, plan *pb.Plan) {
	var wg sync.WaitGroup
	for _, peer := range plan.GetWorkers() {
		if peer.GetId() == w.cfg.ID {
			continue
		}
		wg.Go(func() {
			err := probe(ctx, peer.GetAddress(), w.cfg.ProbeTimeout)
			if err == nil || ctx.Err() != nil {
				return
			}
			w.log.Warn("peer unreachable: reporting it", "peer", peer.GetId(), "addr", peer.GetAddress(), "generation", plan.GetGeneration(), "err", err)
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

// probe checks the gRPC health service of the peer server at addr.
func probe(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
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

// canReachPeers reports whether some other member of the newest plan answers a
// health check (true when no plan with other members is known).
func (w *Worker) canReachPeers(ctx context.Context) bool {
	plan, _ := w.plans.get()
	var peers []*pb.Worker
	for _, p := range plan.GetWorkers() {
		if p.GetId() != w.cfg.ID {
			peers = append(peers, p)
		}
	}
	if len(peers) == 0 {
		return true
	}
	var wg sync.WaitGroup
	ok := make(chan struct{}, len(peers))
	for _, p := range peers {
		wg.Go(func() {
			if probe(ctx, p.GetAddress(), w.cfg.ProbeTimeout) == nil {
				ok <- struct{}{}
			}
		})
	}
	wg.Wait()
	return len(ok) > 0
}
