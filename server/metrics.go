package server

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bootpilot/bootpilot/internal/host"
)

// metrics are the server's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	boots     *prometheus.CounterVec
	callbacks *prometheus.CounterVec
	tlsFull   prometheus.Counter // TLS handshakes with a signature
	tlsResume prometheus.Counter // TLS handshakes resumed from a ticket
}

func newMetrics(st Store) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bootpilot_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bootpilot_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}, []string{"route"}),
		boots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bootpilot_boot_scripts_total", Help: "Boot script answers by action (localboot, install, clean, hold, error, unauthorized, refused).",
		}, []string{"action"}),
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bootpilot_callbacks_total", Help: "Applied installer and agent callbacks by event.",
		}, []string{"event"}),
	}
	handshakes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bootpilot_tls_handshakes_total", Help: "TLS handshakes by whether they resumed a session (false: a full handshake with an RSA signature).",
	}, []string{"resumed"})
	m.tlsFull, m.tlsResume = handshakes.WithLabelValues("false"), handshakes.WithLabelValues("true")
	hosts := prometheus.NewDesc("bootpilot_hosts", "Hosts by lifecycle state.", []string{"state"}, nil)
	m.reg.MustRegister(m.requests, m.latency, m.boots, m.callbacks, handshakes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectorFunc{desc: hosts, collect: func(ch chan<- prometheus.Metric) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			counts, err := st.CountHosts(ctx)
			if err != nil {
				return
			}
			for _, s := range host.States {
				ch <- prometheus.MustNewConstMetric(hosts, prometheus.GaugeValue, float64(counts[s]), string(s))
			}
		}})
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *metrics) observe(route string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}

func (m *metrics) boot(action string)    { m.boots.WithLabelValues(action).Inc() }
func (m *metrics) callback(event string) { m.callbacks.WithLabelValues(event).Inc() }

// handshake counts one TLS handshake.
func (m *metrics) handshake(resumed bool) {
	if resumed {
		m.tlsResume.Inc()
	} else {
		m.tlsFull.Inc()
	}
}

// collectorFunc is a one-metric collector computed at scrape time.
type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
