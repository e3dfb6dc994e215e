package system_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// dockerLab runs each process of a cluster as a ringtrain container (the image of
// deploy/docker) on two private Docker networks: "control", which every container
// joins (workers reach the coordinators over it, and the test reaches the
// coordinators), and "ring", which only workers join and over which they dial each
// other. Faults are Docker's own: docker kill, docker pause, and docker network
// disconnect — from the ring network (a worker cut off from its peers but not from
// the coordinator) or from the control network (the reverse).
type dockerLab struct {
	t                   *testing.T
	tag, control, ring  string
	controlNet, ringNet string // "10.a.b."
	mu                  sync.Mutex
	hosts               map[string]int
	image               string
}

var (
	imageOnce sync.Once
	imageErr  error
)

const faultImage = "ringtrain:faults"

func dockerCmd(args ...string) (string, error) {
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// newDockerLab builds the image (once per test binary) and creates the networks;
// it skips the test when Docker is not installed or its daemon does not answer.
func newDockerLab(t *testing.T) *dockerLab {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("container scenarios need docker: not installed")
	}
	if _, err := dockerCmd("info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Skipf("container scenarios need a Docker daemon: %v", err)
	}
	imageOnce.Do(func() {
		cmd := exec.Command("../deploy/docker/build.sh", "--image", faultImage)
		if out, err := cmd.CombinedOutput(); err != nil {
			imageErr = fmt.Errorf("build the image: %v\n%s", err, out)
		}
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	b := make([]byte, 4)
	rand.Read(b)
	l := &dockerLab{t: t, tag: "rtf" + hex.EncodeToString(b)[:6], hosts: map[string]int{}, image: faultImage}
	l.control, l.ring = l.tag+"-control", l.tag+"-ring"
	t.Cleanup(l.close)
	for try := 0; ; try++ {
		rand.Read(b)
		l.controlNet = fmt.Sprintf("10.%d.%d.", 150+int(b[0])%50, int(b[1])%250)
		l.ringNet = fmt.Sprintf("10.%d.%d.", 200+int(b[2])%50, int(b[3])%250)
		_, err1 := dockerCmd("network", "create", "--subnet", l.controlNet+"0/24", l.control)
		_, err2 := dockerCmd("network", "create", "--subnet", l.ringNet+"0/24", l.ring)
		if err1 == nil && err2 == nil {
			break
		}
		dockerCmd("network", "rm", l.control, l.ring)
		if try == 5 {
			t.Fatalf("create the networks: %v; %v", err1, err2)
		}
	}
	return l
}

func (l *dockerLab) index(host string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, ok := l.hosts[host]
	if !ok {
		i = len(l.hosts)
		l.hosts[host] = i
	}
	return i
}

func (l *dockerLab) container(host string) string { return l.tag + "-" + host }
func (l *dockerLab) controlIP(host string) string {
	return fmt.Sprintf("%s%d", l.controlNet, 10+l.index(host))
}
func (l *dockerLab) ringIP(host string) string {
	return fmt.Sprintf("%s%d", l.ringNet, 10+l.index(host))
}

// launch (re)creates host's container and attaches to it: the returned process is
// `docker start -a`, which exits with the container. The cluster's directory and
// the shared data are mounted at the same paths as on the host.
func (l *dockerLab) launch(c *cluster, host, name string, env, args []string) *proc {
	l.t.Helper()
	ctr := l.container(host)
	dockerCmd("rm", "-f", "-v", ctr)
	create := []string{"create", "--name", ctr, "--hostname", host, "--network", l.control, "--ip", l.controlIP(host),
		"--user", "0:0", "-v", c.dir + ":" + c.dir, "-v", sharedDir + ":" + sharedDir}
	for _, e := range env {
		create = append(create, "-e", e)
	}
	create = append(create, l.image)
	create = append(create, args...)
	if _, err := dockerCmd(create...); err != nil {
		l.t.Fatal(err)
	}
	if strings.HasPrefix(host, "w") {
		if _, err := dockerCmd("network", "connect", "--ip", l.ringIP(host), l.ring, ctr); err != nil {
			l.t.Fatal(err)
		}
	}
	return startEnv(l.t, "docker", c.dir, name, nil, "start", "-a", ctr)
}

// signal maps signals to Docker: SIGKILL and SIGTERM are sent with docker kill,
// SIGSTOP and SIGCONT are docker pause and unpause (the cgroup freezer).
func (l *dockerLab) signal(host string, _ *proc, sig syscall.Signal) error {
	ctr := l.container(host)
	var err error
	switch sig {
	case syscall.SIGSTOP:
		_, err = dockerCmd("pause", ctr)
	case syscall.SIGCONT:
		_, err = dockerCmd("unpause", ctr)
	default:
		_, err = dockerCmd("kill", "--signal", fmt.Sprint(int(sig)), ctr)
	}
	return err
}

// disconnect takes host off one of the lab's networks (l.ring or l.control);
// connect puts it back at its address.
func (l *dockerLab) disconnect(host, network string) {
	l.t.Helper()
	if _, err := dockerCmd("network", "disconnect", network, l.container(host)); err != nil {
		l.t.Fatal(err)
	}
}

func (l *dockerLab) connect(host, network string) {
	l.t.Helper()
	ip := l.controlIP(host)
	if network == l.ring {
		ip = l.ringIP(host)
	}
	if _, err := dockerCmd("network", "connect", "--ip", ip, network, l.container(host)); err != nil {
		l.t.Fatal(err)
	}
}

// close removes every container of the lab and its networks, and checks that
// nothing is left behind.
func (l *dockerLab) close() {
	out, _ := dockerCmd("ps", "-aq", "--filter", "name="+l.tag)
	if ids := strings.Fields(out); len(ids) > 0 {
		dockerCmd(append([]string{"rm", "-f", "-v"}, ids...)...)
	}
	dockerCmd("network", "rm", l.control, l.ring)
	if out, _ := dockerCmd("ps", "-aq", "--filter", "name="+l.tag); strings.TrimSpace(out) != "" {
		l.t.Errorf("containers left behind: %s", out)
	}
}

// TestContainerFaults runs the fault scenarios with ringtrain containers on
// private Docker networks, when Docker is present.
func TestContainerFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("container fault suite: skipped with -short")
	}
	ref := reference(t)
	inContainers := func(t *testing.T, n, minWorkers, maxWorkers int, coordFlags ...string) *cluster {
		return newClusterIn(t, newDockerLab(t), n, minWorkers, maxWorkers, coordFlags...)
	}
	runScenarios(t, "container ", ref, append(commonScenarios(inContainers), []scenario{
		{"worker-from-ring", true, func(t *testing.T) (*cluster, time.Time) {
			lab := newDockerLab(t)
			c := newClusterIn(t, lab, 1, 2, 3)
			at := c.trainUntil(3, faultSteps/4)
			lab.disconnect("w1", lab.ring)
			c.waitRemoved("w1", 30*time.Second)
			c.waitStep(faultSteps/2, 2*time.Minute)
			lab.connect("w1", lab.ring)
			c.finish(3 * time.Minute)
			return c, at
		}},
		{"worker-from-coordinator", true, func(t *testing.T) (*cluster, time.Time) {
			lab := newDockerLab(t)
			c := newClusterIn(t, lab, 1, 2, 3, "--lease", "1s")
			at := c.trainUntil(3, faultSteps/8)
			lab.disconnect("w1", lab.control)
			c.waitRemoved("w1", 30*time.Second)
			lab.connect("w1", lab.control)
			c.finish(3 * time.Minute)
			return c, at
		}},
	}...))
}
