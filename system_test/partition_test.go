package system_test

import (
	"fmt"
	"testing"
	"time"
)

// TestPartitions runs the partition scenarios of the fault suite: every process in
// its own network namespace, links cut with iptables (packets dropped silently), so
// that a worker can lose its ring neighbours but not the coordinator, or the
// reverse, and the coordinator leader can lose everyone. Each must end in one
// generation that all live workers train in; never two rings training apart.
func TestPartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process fault suite: skipped with -short")
	}
	ref := reference(t)
	runScenarios(t, "partition ", ref, []scenario{
		{"worker-from-ring", true, func(t *testing.T) (*cluster, time.Time) {
			lab := newNetLab(t)
			// w1 loses w0 and w2 but still reaches the coordinator: the peers report it,
			// it is removed and held off, and rejoins once the links heal.
			c := newClusterIn(t, lab, 1, 2, 3)
			at := c.trainUntil(3, faultSteps/4)
			lab.cut("w1", "w0")
			lab.cut("w1", "w2")
			c.waitRemoved("w1", 30*time.Second)
			c.waitStep(faultSteps/2, time.Minute)
			lab.heal()
			c.finish(3 * time.Minute)
			return c, at
		}},
		{"worker-from-coordinator", true, func(t *testing.T) (*cluster, time.Time) {
			lab := newNetLab(t)
			// w1 loses the coordinator but not its peers: it trains on until its lease
			// expires (1 s here, so that it does well before the job ends), then the
			// others go on without it; it rejoins once healed.
			c := newClusterIn(t, lab, 1, 2, 3, "--lease", "1s")
			at := c.trainUntil(3, faultSteps/8)
			lab.cut("w1", "c0")
			c.waitRemoved("w1", 30*time.Second)
			lab.heal()
			c.finish(3 * time.Minute)
			return c, at
		}},
		{"leader", false, func(t *testing.T) (*cluster, time.Time) {
			lab := newNetLab(t)
			// The coordinator leader loses the other replicas and every worker for 5 s:
			// the others elect a new leader, the workers never stop stepping.
			c := newClusterIn(t, lab, 3, 3, 3)
			startWorkers(c, 3)
			c.waitStep(faultSteps/4, time.Minute)
			l := fmt.Sprintf("c%d", c.leader())
			at := time.Now()
			for _, other := range []string{"c0", "c1", "c2", "w0", "w1", "w2"} {
				if other != l {
					lab.cut(l, other)
				}
			}
			time.Sleep(5 * time.Second)
			lab.heal()
			c.finish(3 * time.Minute)
			return c, at
		}},
	})
}
