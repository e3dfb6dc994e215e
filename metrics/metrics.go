package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Worker is the set of instruments of one training worker. A nil *Worker is valid
// and records nothing.
type Worker struct {
	step              prometheus.Gauge
	loss              prometheus.Gauge
	tokens            prometheus.Counter
	stepDuration      prometheus.Histogram
	stepPhase         *prometheus.HistogramVec
	allReduceBytes    prometheus.Counter
	allReduceDuration prometheus.Histogram
	evalDuration      prometheus.Histogram
	generation        prometheus.Gauge
	worldSize         prometheus.Gauge
	rankCompute       prometheus.Gauge
	rankWait          prometheus.Gauge
	rewardAcc         prometheus.Gauge
	rewardMargin      prometheus.Gauge
	rewardChosen      prometheus.Gauge
	rewardRejected    prometheus.Gauge
	ppo               *prometheus.GaugeVec // PPO measures of the last step (ppo.go)
}

// NewWorker registers the instruments of the worker named id on reg, each with the
// constant label worker=id (so several workers of one process share reg).
func NewWorker(reg prometheus.Registerer, id string) (*Worker, error) {
	labels := prometheus.Labels{"worker": id}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels})
	}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels})
	}
	// 0.25 ms to 8 s: a phase of a small model's step is well under a millisecond.
	buckets := prometheus.ExponentialBuckets(0.00025, 2, 16)
	h := func(name, help string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, ConstLabels: labels, Buckets: buckets})
	}
	w := &Worker{
		step:         g("ringtrain_step", "Training steps applied by this worker."),
		loss:         g("ringtrain_train_loss", "Mean training loss of the last step (all ranks)."),
		tokens:       c("ringtrain_tokens_total", "Training tokens this worker computed gradients for."),
		stepDuration: h("ringtrain_step_duration_seconds", "Wall time of one training step: the sum of its phases."),
		stepPhase: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ringtrain_step_phase_seconds",
			Help: "Wall time of one phase of a training step: compute (forward and backward), allreduce (blocked " +
				"on the reductions after backward), optimizer (clipping and AdamW), waiting (data, state sync, other).",
			ConstLabels: labels, Buckets: buckets}, []string{"phase"}),
		allReduceBytes:    c("ringtrain_allreduce_bytes_total", "Payload bytes this worker reduced over the ring (gradients and loss)."),
		allReduceDuration: h("ringtrain_allreduce_duration_seconds", "Time the ring was busy reducing one step's gradient buckets and loss, overlapping backward."),
		evalDuration:      h("ringtrain_eval_duration_seconds", "Wall time of one validation evaluation (rank 0)."),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ringtrain_generation", Help: generationHelp,
			ConstLabels: prometheus.Labels{"worker": id, "replica": ""}}),
		worldSize: g("ringtrain_world_size", "Ring members of the current generation."),
		rankCompute: g("ringtrain_rank_compute_seconds", "Mean compute time (forward and backward) per step over this worker's "+
			"last steps (up to 20): the slowest rank has the largest."),
		rankWait: g("ringtrain_rank_wait_seconds", "Mean time per step this worker was blocked in the ring after its backward, "+
			"over its last steps (up to 20): what waiting for slower ranks costs it."),
		rewardAcc: g("ringtrain_reward_accuracy", "Share of the last step's preference pairs (all ranks) whose chosen answer has the "+
			"higher reward: the reward model's (objective reward) or the implicit reward beta*(logp - logp_ref) (objective dpo)."),
		rewardMargin: g("ringtrain_reward_margin", "Mean reward margin (chosen minus rejected) of the last step's preference pairs "+
			"(all ranks; objectives reward and dpo)."),
		rewardChosen: g("ringtrain_reward_chosen", "Mean reward of the chosen answers of the last step's preference pairs "+
			"(all ranks; objectives reward and dpo)."),
		rewardRejected: g("ringtrain_reward_rejected", "Mean reward of the rejected answers of the last step's preference pairs "+
			"(all ranks; objectives reward and dpo)."),
		ppo: newPPOGauges(labels),
	}
	for _, col := range []prometheus.Collector{w.step, w.loss, w.tokens, w.stepDuration, w.stepPhase,
		w.allReduceBytes, w.allReduceDuration, w.evalDuration, w.generation, w.worldSize, w.rankCompute, w.rankWait,
		w.rewardAcc, w.rewardMargin, w.rewardChosen, w.rewardRejected, w.ppo} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// SetGeneration records the generation being trained and its ring size.
func (w *Worker) SetGeneration(gen uint64, world int) {
	if w == nil {
		return
	}
	w.generation.Set(float64(gen))
	w.worldSize.Set(float64(world))
}

// SetStep records the step reached (after restoring or syncing state).
func (w *Worker) SetStep(step int64) {
	if w == nil {
		return
	}
	w.step.Set(float64(step))
}

// StepDone records one applied step: the step reached, its mean loss, the tokens
// this worker computed, its time split and the bytes it all-reduced.
func (w *Worker) StepDone(step int64, loss float64, tokens int64, t StepTimes, arBytes int64) {
	if w == nil {
		return
	}
	w.step.Set(float64(step))
	w.loss.Set(loss)
	w.tokens.Add(float64(tokens))
	w.stepDuration.Observe(t.Total().Seconds())
	for _, p := range t.phases() {
		w.stepPhase.WithLabelValues(p.name).Observe(p.d.Seconds())
	}
	w.allReduceBytes.Add(float64(arBytes))
	w.allReduceDuration.Observe(t.RingBusy.Seconds())
}

// Preference records the preference measures of the last step's global batch
// (objectives reward and dpo): the pair accuracy, the mean margin and the mean
// rewards of the chosen and the rejected answers.
func (w *Worker) Preference(acc, margin, chosen, rejected float64) {
	if w == nil {
		return
	}
	w.rewardAcc.Set(acc)
	w.rewardMargin.Set(margin)
	w.rewardChosen.Set(chosen)
	w.rewardRejected.Set(rejected)
}

// SetRankTimes records this worker's mean compute and ring wait per step over its
// last steps.
func (w *Worker) SetRankTimes(compute, wait time.Duration) {
	if w == nil {
		return
	}
	w.rankCompute.Set(compute.Seconds())
	w.rankWait.Set(wait.Seconds())
}

// EvalDone records one validation evaluation.
func (w *Worker) EvalDone(d time.Duration) {
	if w == nil {
		return
	}
	w.evalDuration.Observe(d.Seconds())
}

// ringtrain_generation is exported by workers and coordinator replicas, which may
// share a registry (ringtrain local): both carry the labels worker and replica, the
// one that does not apply empty, and the same help.
const generationHelp = "Plan generation: the one a worker trains in, or a coordinator replica's current plan."

// CoordinatorValues is a coordinator replica's view at one scrape.
type CoordinatorValues struct {
	RaftState     string // Follower, Candidate, Leader or Shutdown
	Term          uint64
	CommitIndex   uint64
	Generation    uint64 // generation of the current plan
	Workers       int    // registered workers
	CommittedStep int64  // step of the newest progress recorded in the replicated state
	JobState      string // the job's state, one of JobStates; any other value (no job) sets none
	// Slowest is the worker of the slowest rank in the newest progress ("" when the
	// progress carries no rank times), SlowestComputeS its mean compute per step and
	// OthersWaitS the other ranks' mean wait for it per step.
	Slowest                      string
	SlowestComputeS, OthersWaitS float64
}

// RaftStates are the values of the state label of ringtrain_raft_state.
var RaftStates = []string{"Follower", "Candidate", "Leader", "Shutdown"}

// JobStates are the values of the state label of ringtrain_job_state: the job's
// lifecycle as coordinator.JobStateName writes it.
var JobStates = []string{"running", "finished", "failed"}

type coordinatorCollector struct {
	read                                                            func() CoordinatorValues
	state, term, commit, generation, workers, committedAt, jobState *prometheus.Desc
	slowestCompute, othersWait                                      *prometheus.Desc
}

// RegisterCoordinator registers on reg the gauges of a coordinator replica named id,
// read from read at every scrape.
func RegisterCoordinator(reg prometheus.Registerer, id string, read func() CoordinatorValues) error {
	labels := prometheus.Labels{"replica": id}
	d := func(name, help string, vars ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, vars, labels)
	}
	return reg.Register(&coordinatorCollector{
		read:        read,
		state:       d("ringtrain_raft_state", "1 for the replica's current Raft state, 0 for the others.", "state"),
		term:        d("ringtrain_raft_term", "Current Raft term."),
		commit:      d("ringtrain_raft_commit_index", "Raft commit index."),
		generation:  prometheus.NewDesc("ringtrain_generation", generationHelp, nil, prometheus.Labels{"replica": id, "worker": ""}),
		workers:     d("ringtrain_workers", "Registered workers."),
		committedAt: d("ringtrain_committed_step", "Newest training step recorded in the replicated state."),
		jobState: d("ringtrain_job_state", "1 for the job's current state in the replicated state (running, finished, failed), "+
			"0 for the others; all 0 when no job is submitted.", "state"),
		slowestCompute: d("ringtrain_straggler_compute_seconds", "Mean compute time per step of the slowest rank (labelled by its "+
			"worker) in the newest progress report; absent without one.", "worker"),
		othersWait: d("ringtrain_straggler_wait_seconds", "Mean time per step the other ranks waited in the ring for the slowest "+
			"rank (labelled by its worker), from the newest progress report; absent without one.", "worker"),
	})
}

func (c *coordinatorCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.state, c.term, c.commit, c.generation, c.workers, c.committedAt, c.jobState, c.slowestCompute, c.othersWait} {
		ch <- d
	}
}

func (c *coordinatorCollector) Collect(ch chan<- prometheus.Metric) {
	v := c.read()
	for _, s := range RaftStates {
		val := 0.0
		if s == v.RaftState {
			val = 1
		}
		ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, val, s)
	}
	ch <- prometheus.MustNewConstMetric(c.term, prometheus.GaugeValue, float64(v.Term))
	ch <- prometheus.MustNewConstMetric(c.commit, prometheus.GaugeValue, float64(v.CommitIndex))
	ch <- prometheus.MustNewConstMetric(c.generation, prometheus.GaugeValue, float64(v.Generation))
	ch <- prometheus.MustNewConstMetric(c.workers, prometheus.GaugeValue, float64(v.Workers))
	ch <- prometheus.MustNewConstMetric(c.committedAt, prometheus.GaugeValue, float64(v.CommittedStep))
	for _, s := range JobStates {
		val := 0.0
		if s == v.JobState {
			val = 1
		}
		ch <- prometheus.MustNewConstMetric(c.jobState, prometheus.GaugeValue, val, s)
	}
	if v.Slowest != "" {
		ch <- prometheus.MustNewConstMetric(c.slowestCompute, prometheus.GaugeValue, v.SlowestComputeS, v.Slowest)
		ch <- prometheus.MustNewConstMetric(c.othersWait, prometheus.GaugeValue, v.OthersWaitS, v.Slowest)
	}
}

// Handler serves reg's metrics in the Prometheus exposition format.
func Handler(reg prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// Serve serves reg on http://addr/metrics until ctx ends or the returned stop is
// called. It returns the bound address.
func Serve(ctx context.Context, addr string, reg prometheus.Gatherer, log *slog.Logger) (bound string, stop func(), err error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", Handler(reg))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) && log != nil {
			log.Warn("metrics server stopped", "err", err)
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
		defer c()
		srv.Shutdown(sctx)
	}()
	return lis.Addr().String(), func() { cancel(); <-done }, nil
}
