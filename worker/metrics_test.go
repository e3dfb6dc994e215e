package worker_test

import (
	"bufio"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringtrain/ringtrain/metrics"
)

// TestMetrics: after a two-worker run, /metrics over the shared registry shows every
// worker instrument with plausible values, and metrics.jsonl carries the generation
// and the world size.
func TestMetrics(t *testing.T) {
	data := prepareData(t)
	spec := tinySpec(data, t.TempDir())
	reg := prometheus.NewRegistry()
	res := runClusterMetrics(t, spec, 2, reg)

	srv := httptest.NewServer(metrics.Handler(reg))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	samples := map[string]float64{}
	for line := range strings.SplitSeq(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample line %q", line)
		}
		samples[line[:i]] = v
	}
	tokensPerWorker := float64(spec.Steps) * float64(spec.GlobalBatch()*spec.SeqLen) / 2
	for _, id := range []string{"w0", "w1"} {
		lbl := `{worker="` + id + `"}`
		want := map[string]func(float64) bool{
			"ringtrain_step":                                        func(v float64) bool { return v == float64(spec.Steps) },
			"ringtrain_train_loss":                                  func(v float64) bool { return v > 0 && v < 10 },
			"ringtrain_tokens_total":                                func(v float64) bool { return v == tokensPerWorker },
			"ringtrain_step_duration_seconds_count":                 func(v float64) bool { return v == float64(spec.Steps) },
			"ringtrain_step_duration_seconds_sum":                   func(v float64) bool { return v > 0 },
			"ringtrain_allreduce_bytes_total":                       func(v float64) bool { return v >= float64(spec.Steps*4*1000) },
			"ringtrain_allreduce_duration_seconds_count":            func(v float64) bool { return v == float64(spec.Steps) },
			`ringtrain_step_phase_seconds_count{phase="compute",`:   func(v float64) bool { return v == float64(spec.Steps) },
			`ringtrain_step_phase_seconds_sum{phase="compute",`:     func(v float64) bool { return v > 0 },
			`ringtrain_step_phase_seconds_count{phase="allreduce",`: func(v float64) bool { return v == float64(spec.Steps) },
			`ringtrain_step_phase_seconds_count{phase="optimizer",`: func(v float64) bool { return v == float64(spec.Steps) },
			`ringtrain_step_phase_seconds_count{phase="waiting",`:   func(v float64) bool { return v == float64(spec.Steps) },
			"ringtrain_generation":                                  func(v float64) bool { return v == float64(res[0].Generation) },
			"ringtrain_world_size":                                  func(v float64) bool { return v == 2 },
		}
		for name, ok := range want {
			key := name + lbl
			if strings.HasSuffix(name, ",") {
				key = name + `worker="` + id + `"}`
			}
			if name == "ringtrain_generation" {
				key = name + `{replica="",worker="` + id + `"}`
			}
			v, found := samples[key]
			if !found {
				t.Errorf("no sample %s in\n%s", key, body)
				continue
			}
			if !ok(v) {
				t.Errorf("%s = %v: implausible", key, v)
			}
		}
	}
	for r, x := range res {
		if m := x.Split.Mean(); x.Split.Steps != spec.Steps || m.Compute <= 0 || m.RingBusy <= 0 {
			t.Errorf("rank %d: time split %+v over %d steps", r, m, x.Split.Steps)
		}
	}
	if v := samples[`ringtrain_train_loss{worker="w0"}`]; v != res[0].Loss {
		t.Errorf("ringtrain_train_loss %v, result loss %v", v, res[0].Loss)
	}

	f, err := os.Open(filepath.Join(spec.Out, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	lines := 0
	for sc.Scan() {
		var rec struct {
			Step       int64   `json:"step"`
			Generation *uint64 `json:"generation"`
			WorldSize  *int    `json:"world_size"`
			StepS      float64 `json:"step_s"`
			ComputeS   float64 `json:"compute_s"`
			AllReduceS float64 `json:"allreduce_s"`
			BusyS      float64 `json:"allreduce_busy_s"`
			OptimizerS float64 `json:"optimizer_s"`
			WaitingS   float64 `json:"waiting_s"`
			ElapsedS   float64 `json:"elapsed_s"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Generation == nil || rec.WorldSize == nil || *rec.WorldSize != 2 {
			t.Errorf("record of step %d lacks the generation or world size 2: %s", rec.Step, sc.Text())
		}
		sum := rec.ComputeS + rec.AllReduceS + rec.OptimizerS + rec.WaitingS
		if rec.ComputeS <= 0 || rec.BusyS <= 0 || rec.ElapsedS <= 0 || math.Abs(sum-rec.StepS) > 1e-6 {
			t.Errorf("record of step %d: implausible time split: %s", rec.Step, sc.Text())
		}
		lines++
	}
	if lines != int(spec.Steps) {
		t.Errorf("metrics.jsonl has %d records, want %d", lines, spec.Steps)
	}
	checkTensorBoard(t, spec, res)
}
