// Package monitor is the coordinator's HTTP listener for operators:
// /healthz (the process is alive), /readyz (the database answers and the
// loop is not stuck) and /metrics (Prometheus).
package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/workers"
)

// Worker launch modes, the values of the mode label.
const (
	ModeProcess    = "process"
	ModeKubernetes = "kubernetes"
)

// Defaults of a Monitor.
const (
	DefaultPingTimeout = 2 * time.Second
	shutdownTimeout    = 5 * time.Second
)

// Pinger is the database as readiness sees it (a *pgxpool.Pool).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Options configure a Monitor.
type Options struct {
	// DB is pinged by /readyz; nil leaves the database out of readiness.
	DB Pinger
	// PingTimeout bounds the ping (default DefaultPingTimeout).
	PingTimeout time.Duration
	// StallAfter: /readyz fails when no batch committed for that long since
	// the last commit or the loop's start (0 disables the check). Take
	// 2 × SURVEY_INTERVAL + the verification timeout + a grace period.
	StallAfter time.Duration
	Now        func() time.Time // default time.Now
	Logger     *slog.Logger
	// Build labels the uptime_coordinator_build_info series.
	Build BuildInfo
	// WorkerMode (ModeProcess, ModeKubernetes, or anything else for none)
	// is the only mode whose worker series exist before a worker event.
	WorkerMode string
}

// BuildInfo is the running build, as uptime_coordinator_build_info's labels.
type BuildInfo struct {
	Version, Revision, GoVersion string
}

// Monitor collects the coordinator's metrics from the engine hooks and
// serves them.
type Monitor struct {
	opts Options
	reg  *prometheus.Registry

	committed    prometheus.Counter
	failed       *prometheus.CounterVec
	batchTime    prometheus.Histogram
	verifyTime   prometheus.Histogram
	submissions  *prometheus.CounterVec
	invalidClass *prometheus.CounterVec
	points       prometheus.Counter
	scored       prometheus.Gauge
	workersStart *prometheus.CounterVec
	workersFail  *prometheus.CounterVec
	workersRetry *prometheus.CounterVec

	mu           sync.Mutex
	busy         string    // the loop's current step (Busy)
	busySince    time.Time // when it started
	busyUntil    time.Time // when it is overdue; zero: no bound
	progress     time.Time // the last commit, or the loop's start
	lastBatchEnd time.Time // zero until known
	srv          *http.Server
}

// durationBuckets cover seconds to the verifiers' two-hour timeout.
var durationBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200}

// New returns a Monitor with its own registry (the Go and process
// collectors included). The stall clock starts now.
func New(opts Options) *Monitor {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PingTimeout <= 0 {
		opts.PingTimeout = DefaultPingTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m := &Monitor{opts: opts, reg: prometheus.NewRegistry()}
	m.progress = opts.Now()
	f := promauto.With(m.reg)
	m.committed = f.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "batches_committed_total", Help: "Batches committed."})
	m.failed = f.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "batches_failed_total",
		Help: "Failed batch attempts; final=true when the batch was abandoned (after its retries, or at once for a permanent error)."}, []string{"final"})
	m.batchTime = f.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "batch_duration_seconds",
		Help: "Time from the start of a batch's processing to its commit.", Buckets: durationBuckets})
	m.verifyTime = f.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "verification_duration_seconds",
		Help: "Time the verifiers took on a committed batch.", Buckets: durationBuckets})
	m.submissions = f.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "submissions_total",
		Help: "Submissions of committed batches by outcome, which partition them (the series sum to every submission): " +
			"on_chain (valid, naming a state hash on the consensus chain: earns the point), off_chain (valid, not on the chain), " +
			"invalid (reason says why: unverified, verification_failed, validation_error, no_state_hash, malformed; empty for the valid outcomes)."},
		[]string{"outcome", "reason"})
	// The name is issue 11's contract (…_submissions_invalid_total{class}).
	m.invalidClass = f.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "submissions_invalid_total",
		Help: "Submissions of committed batches the verifier failed, by verifier error class (docs: error classes)."}, []string{"class"})
	m.points = f.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "points_awarded_total", Help: "Points awarded."})
	m.scored = f.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "producers_scored", Help: "Block producers with a score after the last committed batch."})
	m.workersStart = f.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "workers_started_total", Help: "Verifier workers started (processes or Kubernetes Jobs, as mode says)."}, []string{"mode"})
	m.workersFail = f.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "workers_failed_total", Help: "Verifier workers that failed."}, []string{"mode"})
	m.workersRetry = f.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "workers_retried_total", Help: "Verifier workers started again after a failure."}, []string{"mode"})
	f.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "build_info",
		Help: "Always 1; the labels say which build is running."}, []string{"version", "revision", "goversion"}).
		WithLabelValues(opts.Build.Version, opts.Build.Revision, opts.Build.GoVersion).Set(1)
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), batchClock{m})

	// Every series exists from the start, so rates and alerts see zeros.
	for _, final := range []string{"false", "true"} {
		m.failed.WithLabelValues(final)
	}
	m.submissions.WithLabelValues(OutcomeOnChain, "")
	m.submissions.WithLabelValues(OutcomeOffChain, "")
	for _, reason := range InvalidReasons {
		m.submissions.WithLabelValues(OutcomeInvalid, reason)
	}
	for _, class := range coordinator.ClassNames {
		m.invalidClass.WithLabelValues(class)
	}
	// Only the configured mode's worker series: none in process mode names
	// Kubernetes, none at all with WORKER_MODE=none.
	if opts.WorkerMode == ModeProcess || opts.WorkerMode == ModeKubernetes {
		m.workersStart.WithLabelValues(opts.WorkerMode)
		m.workersFail.WithLabelValues(opts.WorkerMode)
		m.workersRetry.WithLabelValues(opts.WorkerMode)
	}
	return m
}

// Namespace prefixes every metric of the coordinator: uptime_coordinator_….
const Namespace = "uptime_coordinator"

// Outcomes of a submission, the values of submissions_total's outcome label.
const (
	OutcomeOnChain  = "on_chain"
	OutcomeOffChain = "off_chain"
	OutcomeInvalid  = "invalid"
)

// InvalidReasons are the reason label's values with outcome="invalid".
var InvalidReasons = []string{coordinator.ReasonUnverified, coordinator.ReasonRejected,
	coordinator.ReasonValidationError, coordinator.ReasonNoStateHash, coordinator.ReasonMalformed}

// Registry is the Monitor's registry, for more collectors.
func (m *Monitor) Registry() *prometheus.Registry { return m.reg }

// SetLastBatchEnd records the end of the latest batch already in the
// database, so that the lag is known before the first commit.
func (m *Monitor) SetLastBatchEnd(end time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if end.After(m.lastBatchEnd) {
		m.lastBatchEnd = end
	}
}

// AfterBatch records a committed batch (an engine hook).
func (m *Monitor) AfterBatch(_ context.Context, s *coordinator.Summary) {
	m.committed.Inc()
	m.batchTime.Observe(s.Duration.Seconds())
	m.verifyTime.Observe(s.Verification.Seconds())
	if r := s.Result; r != nil {
		m.submissions.WithLabelValues(OutcomeOnChain, "").Add(float64(len(r.Points)))
		m.submissions.WithLabelValues(OutcomeOffChain, "").Add(float64(r.OffChain()))
		for reason, n := range r.Invalid {
			m.submissions.WithLabelValues(OutcomeInvalid, reason).Add(float64(n))
		}
		m.points.Add(float64(len(r.Points)))
	}
	if ev := s.Evidence; ev != nil {
		for _, c := range ev.Classes {
			m.invalidClass.WithLabelValues(c.Class).Add(float64(c.Submissions))
		}
	}
	m.scored.Set(float64(s.Committed.Scoreboard.Scored))
	m.mu.Lock()
	m.progress = m.opts.Now()
	m.lastBatchEnd = s.Window.End
	m.mu.Unlock()
}

// OnFailure records a failed attempt (an engine hook).
func (m *Monitor) OnFailure(_ context.Context, f coordinator.Failure) {
	m.failed.WithLabelValues(strconv.FormatBool(f.Final)).Inc()
}

// Workers returns the worker event counters for the launchers.
func (m *Monitor) Workers() workers.Events { return workerEvents{m} }

type workerEvents struct{ m *Monitor }

func (w workerEvents) Started(mode string) { w.m.workersStart.WithLabelValues(mode).Inc() }
func (w workerEvents) Failed(mode string)  { w.m.workersFail.WithLabelValues(mode).Inc() }
func (w workerEvents) Retried(mode string) { w.m.workersRetry.WithLabelValues(mode).Inc() }

// Handler serves /healthz, /readyz and /metrics.
func (m *Monitor) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := m.Live(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintln(w, "not alive:", err)
			return
		}
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", m.readyz)
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(m.reg,
		promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, ErrorLog: slogPrinter{m.opts.Logger}})))
	return mux
}

func (m *Monitor) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := m.Ready(r.Context()); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintln(w, "not ready:", err)
		return
	}
	_, _ = fmt.Fprintln(w, "ready")
}

// Busy records that the loop starts a step that may legitimately take up to
// limit (0: no bound), e.g. waiting for a window to close, verifying, or a
// database step (an engine hook). Liveness fails once the step has run for
// longer than limit plus a grace of min(limit, 1 minute) for cancellation.
func (m *Monitor) Busy(what string, limit time.Duration) {
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.busy, m.busySince, m.busyUntil = what, now, time.Time{}
	if limit > 0 {
		m.busyUntil = now.Add(limit + min(limit, time.Minute))
	}
}

// Live returns nil unless the loop has been in one step for longer than it
// may legitimately take (see Busy): then the process is wedged and should
// be restarted.
func (m *Monitor) Live() error {
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.busyUntil.IsZero() || !now.After(m.busyUntil) {
		return nil
	}
	return fmt.Errorf("the loop is stuck: %s since %s (%s), longer than it may take",
		m.busy, m.busySince.UTC().Format(time.RFC3339), now.Sub(m.busySince).Round(time.Second))
}

// Ready returns nil when the database answers a ping within the ping
// timeout and a batch committed (or the loop started) within StallAfter;
// otherwise an error saying which.
func (m *Monitor) Ready(ctx context.Context) error {
	var errs []error
	if m.opts.StallAfter > 0 {
		m.mu.Lock()
		since := m.opts.Now().Sub(m.progress)
		m.mu.Unlock()
		if since > m.opts.StallAfter {
			errs = append(errs, fmt.Errorf("loop stalled: no batch committed for %s (limit %s)",
				since.Round(time.Second), m.opts.StallAfter))
		}
	}
	if m.opts.DB != nil {
		pctx, cancel := context.WithTimeout(ctx, m.opts.PingTimeout)
		err := m.opts.DB.Ping(pctx)
		cancel()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				err = fmt.Errorf("no answer within %s", m.opts.PingTimeout)
			}
			errs = append(errs, fmt.Errorf("database: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Serve listens on addr and serves until ctx is done, then shuts down
// gracefully.
func (m *Monitor) Serve(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("monitor: listening on %s: %w", addr, err)
	}
	return m.ServeListener(ctx, ln)
}

// ServeListener serves on ln until ctx is done or Close is called; then it
// shuts down gracefully and returns nil.
func (m *Monitor) ServeListener(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           m.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(m.opts.Logger.Handler(), slog.LevelWarn),
	}
	m.mu.Lock()
	if m.srv != nil {
		m.mu.Unlock()
		ln.Close()
		return errors.New("monitor: already serving")
	}
	m.srv = srv
	m.mu.Unlock()

	done := make(chan struct{})
	stopped := make(chan error, 1)
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
			return
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		stopped <- srv.Shutdown(sctx)
	}()
	err := srv.Serve(ln)
	close(done)
	defer func() {
		m.mu.Lock()
		m.srv = nil
		m.mu.Unlock()
	}()
	if !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("monitor: serving on %s: %w", ln.Addr(), err)
	}
	if ctx.Err() != nil {
		if err := <-stopped; err != nil {
			return fmt.Errorf("monitor: shutting down: %w", err)
		}
	}
	return nil
}

// Close stops the listener at once.
func (m *Monitor) Close() error {
	m.mu.Lock()
	srv := m.srv
	m.mu.Unlock()
	if srv == nil {
		return nil
	}
	if err := srv.Close(); err != nil {
		return fmt.Errorf("monitor: closing: %w", err)
	}
	return nil
}

// batchClock exports the last committed batch's end and the lag behind the
// wall clock, computed at scrape time; nothing until a batch end is known.
type batchClock struct{ m *Monitor }

var (
	lastBatchEndDesc = prometheus.NewDesc(Namespace+"_last_batch_end_timestamp_seconds",
		"End of the last committed batch's window (Unix seconds).", nil, nil)
	batchLagDesc = prometheus.NewDesc(Namespace+"_batch_lag_seconds",
		"Wall clock minus the end of the last committed batch's window.", nil, nil)
)

func (c batchClock) Describe(ch chan<- *prometheus.Desc) {
	ch <- lastBatchEndDesc
	ch <- batchLagDesc
}

func (c batchClock) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	end := c.m.lastBatchEnd
	c.m.mu.Unlock()
	if end.IsZero() {
		return
	}
	ch <- prometheus.MustNewConstMetric(lastBatchEndDesc, prometheus.GaugeValue, float64(end.UnixNano())/1e9)
	lag := c.m.opts.Now().Sub(end).Seconds()
	ch <- prometheus.MustNewConstMetric(batchLagDesc, prometheus.GaugeValue, math.Max(lag, 0))
}

// slogPrinter adapts a slog.Logger to promhttp's error logger.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Error("serving metrics", "error", fmt.Sprint(v...)) }
