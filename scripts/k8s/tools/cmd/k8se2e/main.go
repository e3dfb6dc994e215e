// Command k8se2e runs ringtrain's Kubernetes manifests (deploy/k8s) against a real
// control plane built from the Kubernetes sources: etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler on loopback, each with its own
// temporary directory, certificates made here. Phase 1 applies the base and the
// overlays with kubectl and checks what the API server and the controllers make of
// them; see docs/kubernetes.md ("Against a real API server").
//
//	k8se2e -bin DIR -repo DIR phase1
//
// Every process it starts dies with it (a process group each, and the parent-death
// signal), and the temporary directory is removed on every way out but -keep.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("bin", "", "directory with etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl")
	repo := flag.String("repo", ".", "the ringtrain repository (deploy/k8s under it)")
	keep := flag.Bool("keep", false, "keep the cluster's temporary directory (logs, etcd) after the run")
	images := flag.String("images", "", "phase2: directory with pause.tar and ringtrain.tar (docker save)")
	bins := flag.String("tools", "", "phase2: directory with the ringtrain and coredns binaries")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: k8se2e -bin DIR [-repo DIR] phase1\n       k8se2e -bin DIR [-repo DIR] -images DIR -tools DIR phase2\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	phase := flag.Arg(0)
	if flag.NArg() != 1 || (phase != "phase1" && phase != "phase2") || *bin == "" || phase == "phase2" && (*images == "" || *bins == "") {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var err error
	if phase == "phase1" {
		err = run(ctx, *bin, *repo, *keep)
	} else {
		err = run2(ctx, *bin, *repo, *images, *bins, *keep)
	}
	if err != nil {
		slog.Error("k8se2e failed", "phase", phase, "err", err)
		os.Exit(1)
	}
}

func run2(ctx context.Context, bin, repo, images, bins string, keep bool) error {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return fmt.Errorf("bin dir: %w", err)
	}
	if repo, err = filepath.Abs(repo); err != nil {
		return fmt.Errorf("repo dir: %w", err)
	}
	c, err := newCluster(bin, keep)
	if err != nil {
		return err
	}
	start := time.Now()
	defer func() {
		c.Close()
		slog.Info("phase 2: node and control plane stopped, the machine restored", "after", time.Since(start).Round(time.Millisecond))
	}()
	return runPhase2(ctx, c, repo, images, bins)
}

func run(ctx context.Context, bin, repo string, keep bool) (err error) {
	start := time.Now()
	if bin, err = filepath.Abs(bin); err != nil {
		return fmt.Errorf("bin dir: %w", err)
	}
	if repo, err = filepath.Abs(repo); err != nil {
		return fmt.Errorf("repo dir: %w", err)
	}
	c, err := newCluster(bin, keep)
	if err != nil {
		return err
	}
	defer func() {
		t0 := time.Now()
		c.Close()
		slog.Info("control plane stopped and removed", "took", time.Since(t0).Round(time.Millisecond))
	}()
	if err := c.controlPlane(ctx, nil); err != nil {
		fmt.Println("k8se2e: 0 passed, 1 failed")
		return fmt.Errorf("control plane: %w", err)
	}
	slog.Info("control plane up", "after", time.Since(start).Round(time.Millisecond))
	p, err := newPhase1(c, repo)
	if err != nil {
		return err
	}
	if err := p.run(ctx); err != nil {
		if herr := c.healthy(); herr != nil {
			err = errors.Join(err, herr)
		}
		fmt.Printf("k8se2e: %d passed, 1 failed\n", p.checks)
		return err
	}
	if err := c.healthy(); err != nil {
		return fmt.Errorf("after the checks: %w", err)
	}
	slog.Info("phase 1 passed", "checks", p.checks, "took", time.Since(start).Round(time.Millisecond))
	fmt.Printf("k8se2e: %d passed, 0 failed\n", p.checks)
	return nil
}
