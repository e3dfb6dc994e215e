package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ringtrain/ringtrain/coordinator"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// register registers the worker. A worker held off after its peers reported it lost
// (a restarted process, or one cut off from its peers) waits and tries again, and
// once held off it registers only when it can reach a member of the newest plan,
// so that a worker cut off from its peers does not rejoin only to break the next
// ring.
func (w *Worker) register(ctx context.Context) (time.Duration, error) {
	heldOff := false
	for {
		if heldOff && !w.canReachPeers(ctx) {
			w.log.Info("held off and no member of the plan answers: waiting before registering again")
		} else {
			resp, err := w.cfg.Coordinators.Register(ctx, &pb.RegisterRequest{WorkerId: w.cfg.ID, Address: w.addr, Device: w.cfg.Device, Zone: w.cfg.Zone})
			switch {
			case errors.Is(err, coordinator.ErrHeldOff):
				if !heldOff {
					w.log.Info("held off by the coordinator: registering again later", "err", err)
				}
				heldOff = true
			case err != nil:
				return 0, fmt.Errorf("worker %s: register: %w", w.cfg.ID, err)
			default:
				return time.Duration(resp.GetLeaseMs()) * time.Millisecond, nil
			}
		}
		t := time.NewTimer(500 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, fmt.Errorf("worker %s: register: %w", w.cfg.ID, ctx.Err())
		case <-t.C:
		}
	}
}

// leave removes the worker from the cluster at once, so its peers need not wait for
// its lease to expire. It runs even when ctx has ended.
func (w *Worker) leave(ctx context.Context) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := w.cfg.Coordinators.Leave(lctx, &pb.LeaveRequest{WorkerId: w.cfg.ID}); err != nil {
		w.log.Warn("leave", "err", err)
		return
	}
	w.log.Info("left the cluster")
}

// heartbeat renews the lease every third of it until ctx ends, registering again if
// the coordinator has forgotten the worker.
func (w *Worker) heartbeat(ctx context.Context, lease time.Duration) {
	for {
		interval := max(lease/3, 50*time.Millisecond)
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		hctx, cancel := context.WithTimeout(ctx, lease)
		resp, err := w.cfg.Coordinators.Heartbeat(hctx, &pb.HeartbeatRequest{
			WorkerId: w.cfg.ID, Generation: w.curGen.Load(), Step: w.curStep.Load()})
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, coordinator.ErrUnknownWorker):
			w.log.Warn("lease lost: registering again")
			if l, err := w.register(ctx); err == nil {
				lease = l
			} else if ctx.Err() == nil {
				w.log.Warn("register again", "err", err)
			}
		case err != nil:
			w.log.Warn("heartbeat", "err", err)
		default:
			if l := time.Duration(resp.GetLeaseMs()) * time.Millisecond; l > 0 {
				lease = l
			}
		}
	}
}
