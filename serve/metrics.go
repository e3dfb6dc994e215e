package serve

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the server's Prometheus collectors. A nil *Metrics records nothing.
type Metrics struct {
	requests  *prometheus.CounterVec   // endpoint, code
	latency   *prometheus.HistogramVec // endpoint
	generated prometheus.Counter
	prompt    prometheus.Counter
	batch     prometheus.Histogram
	active    prometheus.Gauge
	waiting   prometheus.Gauge
}

// NewMetrics registers the serving collectors on reg:
//
//	ringtrain_serve_requests_total{endpoint,code}        requests answered
//	ringtrain_serve_request_duration_seconds{endpoint}   time to the last byte
//	ringtrain_serve_generated_tokens_total               tokens generated
//	ringtrain_serve_prompt_tokens_total                  prompt tokens processed
//	ringtrain_serve_batch_size                           sequences per decode step
//	ringtrain_serve_active_sequences                     sequences being decoded
//	ringtrain_serve_waiting_requests                     requests waiting for a free row
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringtrain_serve_requests_total", Help: "HTTP requests answered, by endpoint and status code.",
		}, []string{"endpoint", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ringtrain_serve_request_duration_seconds", Help: "Time from a request's arrival to its last byte.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"endpoint"}),
		generated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringtrain_serve_generated_tokens_total", Help: "Tokens generated.",
		}),
		prompt: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringtrain_serve_prompt_tokens_total", Help: "Prompt tokens processed.",
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ringtrain_serve_batch_size", Help: "Sequences decoded together per step.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
		}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ringtrain_serve_active_sequences", Help: "Sequences being decoded.",
		}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ringtrain_serve_waiting_requests", Help: "Requests waiting for a free row of the batch.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.generated, m.prompt, m.batch, m.active, m.waiting} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) step(rows int) {
	if m != nil {
		m.batch.Observe(float64(rows))
	}
}

func (m *Metrics) setActive(n int) {
	if m != nil {
		m.active.Set(float64(n))
	}
}

func (m *Metrics) addWaiting(delta int) {
	if m != nil {
		m.waiting.Add(float64(delta))
	}
}

func (m *Metrics) tokens(prompt, generated int) {
	if m != nil {
		m.prompt.Add(float64(prompt))
		m.generated.Add(float64(generated))
	}
}

func (m *Metrics) request(endpoint string, code int, seconds float64) {
	if m != nil {
		m.requests.WithLabelValues(endpoint, itoa(code)).Inc()
		m.latency.WithLabelValues(endpoint).Observe(seconds)
	}
}
