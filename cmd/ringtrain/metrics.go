package main

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/metrics"
)

// metricsAddrHelp documents --metrics-addr on every command that has it.
const metricsAddrHelp = `serve Prometheus metrics on http://ADDR/metrics, e.g. ":9100" (empty: off)`

// newRegistry returns the process's registry, with the Go runtime and process
// collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// serveMetrics serves reg on addr until the command's context ends or the returned
// stop is called; with addr empty it does nothing.
func serveMetrics(cmd *cobra.Command, addr string, reg *prometheus.Registry, log *slog.Logger) (func(), error) {
	if addr == "" {
		return func() {}, nil
	}
	bound, stop, err := metrics.Serve(cmd.Context(), addr, reg, log)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	log.Info("serving metrics", "url", "http://"+bound+"/metrics")
	return stop, nil
}

// registerNode registers the gauges of a coordinator replica on reg.
func registerNode(reg prometheus.Registerer, node *coordinator.Node) error {
	return metrics.RegisterCoordinator(reg, node.ID(), func() metrics.CoordinatorValues {
		return metrics.CoordinatorValues(node.Gauges())
	})
}
