package coordinator

import (
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/security"
)

// Policy is who may call what on a coordinator replica when it serves TLS. The
// rules (security.Policy says how a table reads):
//
//   - A worker acts only for itself: it registers, heartbeats, leaves, watches
//     plans, reports lost peers, progress and failures, and commits checkpoints
//     under the worker_id of its certificate.
//   - SubmitJob (and so replacing a job) and RemoveServer need an admin.
//   - AddVoter is the call of a replica joining (or recording its address): only
//     a coordinator certificate, and only for the id it names.
//   - Status, Leader and the health service are open to every member, the
//     read-only reader role included.
//   - FailJob is also open to an admin, who may stop a job by hand.
//
// Any other method is refused.
func Policy() security.Policy {
	self := func(field string) security.Rule { return security.Rule{security.RoleWorker: field} }
	svc := "/" + pb.Coordinator_ServiceDesc.ServiceName + "/"
	health := "/" + healthpb.Health_ServiceDesc.ServiceName + "/"
	return security.Policy{
		svc + "Register":         self("worker_id"),
		svc + "Heartbeat":        self("worker_id"),
		svc + "Leave":            self("worker_id"),
		svc + "ReportPeerLost":   self("worker_id"),
		svc + "ReportProgress":   self("worker_id"),
		svc + "CommitCheckpoint": self("worker_id"),
		svc + "WatchPlan": {security.RoleWorker: "worker_id", security.RoleCoordinator: "",
			security.RoleAdmin: "", security.RoleReader: ""},
		svc + "FailJob":      {security.RoleWorker: "worker_id", security.RoleAdmin: ""},
		svc + "SubmitJob":    {security.RoleAdmin: ""},
		svc + "RemoveServer": {security.RoleAdmin: ""},
		svc + "AddVoter":     {security.RoleCoordinator: "id"},
		svc + "Status":       security.Anyone(),
		svc + "Leader":       security.Anyone(),
		health + "Check":     security.Anyone(),
		health + "Watch":     security.Anyone(),
		health + "List":      security.Anyone(),
	}
}
