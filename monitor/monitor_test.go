package monitor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/internal/porttest"
	"github.com/delegation-program/uptime-coordinator/monitor"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var t0 = time.Date(2024, 6, 5, 12, 30, 0, 0, time.UTC)

// serve runs m on a fresh port of 127.0.0.1 and returns its base URL.
func serve(t *testing.T, m *monitor.Monitor) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.ServeListener(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeListener: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// scrape reads /metrics over HTTP into name{labels} -> value; histograms
// give name_count and name_sum.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			key := name + labels(m)
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[name+"_count"+labels(m)] = float64(m.GetHistogram().GetSampleCount())
				out[name+"_sum"+labels(m)] = m.GetHistogram().GetSampleSum()
			default:
				out[key] = m.GetUntyped().GetValue()
			}
		}
	}
	return out
}

func labels(m *dto.Metric) string {
	if len(m.GetLabel()) == 0 {
		return ""
	}
	parts := make([]string, 0, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

// summary builds a committed batch: valid submissions of which onChain earn
// a point, and invalid ones by reason.
func summary(end time.Time, valid, onChain int, invalid map[string]int, scored int64) *coordinator.Summary {
	r := &coordinator.Result{Invalid: invalid}
	total := valid
	for range valid {
		s := &coordinator.Submission{}
		r.Valid = append(r.Valid, s)
		if len(r.Points) < onChain {
			r.Points = append(r.Points, coordinator.Point{Submission: s})
		}
	}
	for _, n := range invalid {
		total += n
	}
	return &coordinator.Summary{
		Window:       coordinator.Window{Start: end.Add(-20 * time.Minute), End: end},
		Submissions:  total,
		Result:       r,
		Committed:    coordinator.Committed{Scoreboard: coordinator.Scoreboard{Scored: scored}},
		Verification: 45 * time.Second,
		Duration:     90 * time.Second,
	}
}

func check(t *testing.T, got map[string]float64, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: missing", k)
			continue
		}
		if g != v {
			t.Errorf("%s = %v, want %v", k, g, v)
		}
	}
}

func TestInvalidByClassMetric(t *testing.T) {
	t.Parallel()
	m := monitor.New(monitor.Options{})
	base := serve(t, m)
	// The metric's name is issue 11's contract: …_submissions_invalid_total{class}.
	zero := map[string]float64{}
	for _, class := range []string{"snark_invalid", "sok_digest_mismatch", "block_missing", "block_malformed",
		"signature_invalid", "timeout", "no_state_hash", "malformed", "other"} {
		zero["uptime_coordinator_submissions_invalid_total{class="+class+"}"] = 0
	}
	check(t, scrape(t, base), zero)
	ctx := context.Background()
	s := summary(t0, 10, 7, nil, 42)
	s.Evidence = &coordinator.BatchEvidence{Classes: []coordinator.ClassCount{
		{Class: "sok_digest_mismatch", Submissions: 23, Producers: 9}, {Class: "timeout", Submissions: 2, Producers: 1}}}
	m.AfterBatch(ctx, s)
	s.Evidence = &coordinator.BatchEvidence{Classes: []coordinator.ClassCount{{Class: "sok_digest_mismatch", Submissions: 4, Producers: 2}}}
	m.AfterBatch(ctx, s)
	check(t, scrape(t, base), map[string]float64{
		"uptime_coordinator_submissions_invalid_total{class=sok_digest_mismatch}": 27,
		"uptime_coordinator_submissions_invalid_total{class=timeout}":             2,
		"uptime_coordinator_submissions_invalid_total{class=snark_invalid}":       0,
	})
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	clk := &clock{now: t0}
	m := monitor.New(monitor.Options{Now: clk.Now, Build: monitor.BuildInfo{Version: "v1.2.3", Revision: "abc123", GoVersion: "go1.26.0"},
		WorkerMode: monitor.ModeKubernetes})
	base := serve(t, m)

	got := scrape(t, base)
	check(t, got, map[string]float64{
		"uptime_coordinator_build_info{goversion=go1.26.0,revision=abc123,version=v1.2.3}": 1,
		"uptime_coordinator_batches_committed_total":                                       0,
		"uptime_coordinator_batches_failed_total{final=false}":                             0,
		"uptime_coordinator_batches_failed_total{final=true}":                              0,
		"uptime_coordinator_submissions_total{outcome=on_chain,reason=}":                   0,
		"uptime_coordinator_submissions_total{outcome=off_chain,reason=}":                  0,
		"uptime_coordinator_submissions_total{outcome=invalid,reason=unverified}":          0,
		"uptime_coordinator_points_awarded_total":                                          0,
		"uptime_coordinator_producers_scored":                                              0,
		"uptime_coordinator_batch_duration_seconds_count":                                  0,
		"uptime_coordinator_verification_duration_seconds_count":                           0,
		"uptime_coordinator_workers_started_total{mode=kubernetes}":                        0,
		"uptime_coordinator_workers_failed_total{mode=kubernetes}":                         0,
		"uptime_coordinator_workers_retried_total{mode=kubernetes}":                        0,
		"uptime_coordinator_submissions_total{outcome=invalid,reason=no_state_hash}":       0,
		"uptime_coordinator_submissions_total{outcome=invalid,reason=validation_error}":    0,
	})
	for _, name := range []string{"uptime_coordinator_last_batch_end_timestamp_seconds", "uptime_coordinator_batch_lag_seconds"} {
		if _, ok := got[name]; ok {
			t.Errorf("%s is exported before any batch end is known", name)
		}
	}
	for _, name := range []string{"go_goroutines", "process_start_time_seconds"} {
		if _, ok := got[name]; !ok {
			t.Errorf("%s missing: the Go and process collectors are not registered", name)
		}
	}

	ctx := context.Background()
	prev := t0.Add(-40 * time.Minute)
	m.SetLastBatchEnd(prev)
	got = scrape(t, base)
	check(t, got, map[string]float64{
		"uptime_coordinator_last_batch_end_timestamp_seconds": float64(prev.Unix()),
		"uptime_coordinator_batch_lag_seconds":                (40 * time.Minute).Seconds(),
	})

	end := t0.Add(-20 * time.Minute)
	m.AfterBatch(ctx, summary(end, 10, 7, map[string]int{coordinator.ReasonUnverified: 2, coordinator.ReasonRejected: 1}, 42))
	clk.Add(30 * time.Second)
	got = scrape(t, base)
	check(t, got, map[string]float64{
		"uptime_coordinator_batches_committed_total":                                       1,
		"uptime_coordinator_submissions_total{outcome=on_chain,reason=}":                   7,
		"uptime_coordinator_submissions_total{outcome=off_chain,reason=}":                  3,
		"uptime_coordinator_submissions_total{outcome=invalid,reason=unverified}":          2,
		"uptime_coordinator_submissions_total{outcome=invalid,reason=verification_failed}": 1,
		"uptime_coordinator_points_awarded_total":                                          7,
		"uptime_coordinator_producers_scored":                                              42,
		"uptime_coordinator_batch_duration_seconds_count":                                  1,
		"uptime_coordinator_batch_duration_seconds_sum":                                    90,
		"uptime_coordinator_verification_duration_seconds_count":                           1,
		"uptime_coordinator_verification_duration_seconds_sum":                             45,
		"uptime_coordinator_last_batch_end_timestamp_seconds":                              float64(end.Unix()),
		"uptime_coordinator_batch_lag_seconds":                                             (20*time.Minute + 30*time.Second).Seconds(),
	})

	m.AfterBatch(ctx, summary(t0, 4, 4, map[string]int{coordinator.ReasonNoStateHash: 5}, 40))
	m.OnFailure(ctx, coordinator.Failure{Attempt: 0, Err: errors.New("boom")})
	m.OnFailure(ctx, coordinator.Failure{Attempt: 1, Err: errors.New("boom")})
	m.OnFailure(ctx, coordinator.Failure{Attempt: 2, Err: errors.New("boom"), Final: true})
	w := m.Workers()
	for range 3 {
		w.Started(monitor.ModeKubernetes)
	}
	w.Started(monitor.ModeProcess)
	w.Failed(monitor.ModeKubernetes)
	w.Retried(monitor.ModeKubernetes)
	w.Retried(monitor.ModeKubernetes)
	clk.Add(time.Minute)
	got = scrape(t, base)
	check(t, got, map[string]float64{
		"uptime_coordinator_batches_committed_total":                                       2,
		"uptime_coordinator_batches_failed_total{final=false}":                             2,
		"uptime_coordinator_batches_failed_total{final=true}":                              1,
		"uptime_coordinator_submissions_total{outcome=on_chain,reason=}":                   11,
		"uptime_coordinator_submissions_total{outcome=off_chain,reason=}":                  3,
		"uptime_coordinator_submissions_total{outcome=invalid,reason=unverified}":          2,
		"uptime_coordinator_submissions_total{outcome=invalid,reason=no_state_hash}":       5,
		"uptime_coordinator_submissions_total{outcome=invalid,reason=verification_failed}": 1,
		"uptime_coordinator_points_awarded_total":                                          11,
		"uptime_coordinator_producers_scored":                                              40,
		"uptime_coordinator_batch_duration_seconds_count":                                  2,
		"uptime_coordinator_batch_duration_seconds_sum":                                    180,
		"uptime_coordinator_verification_duration_seconds_count":                           2,
		"uptime_coordinator_last_batch_end_timestamp_seconds":                              float64(t0.Unix()),
		"uptime_coordinator_batch_lag_seconds":                                             (90 * time.Second).Seconds(),
		"uptime_coordinator_workers_started_total{mode=kubernetes}":                        3,
		"uptime_coordinator_workers_started_total{mode=process}":                           1,
		"uptime_coordinator_workers_failed_total{mode=kubernetes}":                         1,
		"uptime_coordinator_workers_retried_total{mode=kubernetes}":                        2,
	})

	// An older batch end from the database never moves the clock back.
	m.SetLastBatchEnd(prev)
	check(t, scrape(t, base), map[string]float64{"uptime_coordinator_last_batch_end_timestamp_seconds": float64(t0.Unix())})
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	m := monitor.New(monitor.Options{DB: deadDB(t), StallAfter: time.Nanosecond})
	base := serve(t, m)
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q, want 200 ok even when not ready", code, body)
	}
}

// deadDB is a pool on a port where nothing listens.
func deadDB(t *testing.T) *pgxpool.Pool {
	t.Helper()
	cfg := pgtest.NewDatabase(t)
	cfg.Port = porttest.Port(t)
	return lazyPool(t, cfg.ConnString(""))
}

func lazyPool(t *testing.T, conn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	clk := &clock{now: t0}
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	const stall = 2*20*time.Minute + 2*time.Hour + 5*time.Minute
	m := monitor.New(monitor.Options{DB: pool, StallAfter: stall, Now: clk.Now})
	base := serve(t, m)
	ready := func(wantCode int, wantText string) {
		t.Helper()
		code, body := get(t, base+"/readyz")
		if code != wantCode || !strings.Contains(body, wantText) {
			t.Errorf("/readyz = %d %q, want %d with %q", code, body, wantCode, wantText)
		}
	}

	ready(http.StatusOK, "ready")
	clk.Add(stall) // at the bound: still ready
	ready(http.StatusOK, "ready")
	clk.Add(time.Second)
	ready(http.StatusServiceUnavailable, "loop stalled: no batch committed for 2h45m1s")

	m.AfterBatch(context.Background(), summary(clk.Now(), 1, 1, nil, 1))
	ready(http.StatusOK, "ready")
	clk.Add(stall + time.Minute)
	ready(http.StatusServiceUnavailable, "loop stalled")
}

func TestReadyzDatabaseDown(t *testing.T) {
	t.Parallel()
	m := monitor.New(monitor.Options{DB: deadDB(t)})
	base := serve(t, m)
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "database:") {
		t.Errorf("/readyz = %d %q, want 503 naming the database", code, body)
	}
}

func TestReadyzDatabaseGoesAway(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := pgtest.NewDatabase(t)
	admin := pgtest.Pool(t, pgtest.Server(t)) // on the maintenance database
	// The monitored pool connects as an application that is then cut off.
	pool := lazyPool(t, cfg.ConnString("")+" application_name=monitored")
	m := monitor.New(monitor.Options{DB: pool})
	base := serve(t, m)
	if code, body := get(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz = %d %q with the database up", code, body)
	}
	// Forbid new connections to the database, then end the open ones.
	if _, err := admin.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %q ALLOW_CONNECTIONS false`, cfg.DB)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), fmt.Sprintf(`ALTER DATABASE %q ALLOW_CONNECTIONS true`, cfg.DB))
	})
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'monitored'`); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the first ping may find the broken connection, the second a refused new one
		if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "database:") {
			t.Errorf("/readyz = %d %q after the database went away, want 503", code, body)
		}
	}
	if _, err := admin.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %q ALLOW_CONNECTIONS true`, cfg.DB)); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d %q after the database came back, want 200", code, body)
	}
}

func TestReadyzDatabaseHangs(t *testing.T) {
	t.Parallel()
	// A server that accepts connections and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { _, _ = io.Copy(io.Discard, c); c.Close() })
		}
	}()
	t.Cleanup(func() { ln.Close() })
	cfg := pgtest.NewDatabase(t)
	cfg.Port = ln.Addr().(*net.TCPAddr).Port
	pool := lazyPool(t, cfg.ConnString(""))
	m := monitor.New(monitor.Options{DB: pool, PingTimeout: 200 * time.Millisecond})
	base := serve(t, m)
	start := time.Now()
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "database: no answer within 200ms") {
		t.Errorf("/readyz = %d %q, want 503 with the ping timeout", code, body)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("/readyz took %v with a 200ms ping timeout", el)
	}
	pool.Close()
}

func TestServeShutsDown(t *testing.T) {
	t.Parallel()
	m := monitor.New(monitor.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.ServeListener(ctx, ln) }()
	if code, _ := get(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ServeListener after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeListener did not return after its context was cancelled")
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Error("the listener still answers after shutdown")
	}

	// Close stops a listener at once.
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- m.ServeListener(context.Background(), ln) }()
	if code, _ := get(t, "http://"+ln.Addr().String()+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d", code)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("ServeListener after Close: %v", err)
	}
}

func TestServeBadAddress(t *testing.T) {
	t.Parallel()
	err := monitor.New(monitor.Options{}).Serve(context.Background(), "127.0.0.1:notaport")
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:notaport") {
		t.Fatalf("Serve = %v, want an error naming the address", err)
	}
}

// Issue 10 item 5: /healthz fails once the loop has been in one step for
// longer than the step may take (plus min(limit, 1 minute)); waiting for a
// window is such a step, so a long wait is alive.
func TestHealthzLiveness(t *testing.T) {
	t.Parallel()
	clk := &clock{now: t0}
	m := monitor.New(monitor.Options{Now: clk.Now})
	base := serve(t, m)
	live := func(wantCode int, wantText string) {
		t.Helper()
		code, body := get(t, base+"/healthz")
		if code != wantCode || !strings.Contains(body, wantText) {
			t.Errorf("/healthz = %d %q, want %d with %q", code, body, wantCode, wantText)
		}
	}
	live(http.StatusOK, "ok") // nothing started yet
	m.Busy("waiting for the batch window to close", 19*time.Minute)
	clk.Add(19*time.Minute + time.Minute) // at the bound
	live(http.StatusOK, "ok")
	clk.Add(time.Second)
	live(http.StatusServiceUnavailable, "the loop is stuck: waiting for the batch window to close since 2024-06-05T12:30:00Z (20m1s)")
	m.Busy("committing the batch", 10*time.Second) // progress: a new step
	live(http.StatusOK, "ok")
	clk.Add(20 * time.Second)
	live(http.StatusOK, "ok")
	clk.Add(time.Second)
	live(http.StatusServiceUnavailable, "the loop is stuck: committing the batch since")
	m.Busy("verifying submissions", 0) // unbounded
	clk.Add(1000 * time.Hour)
	live(http.StatusOK, "ok")
}

// TestSubmissionOutcomesSum: the outcome series partition the submissions
// of committed batches: they sum to every submission, whatever the mix.
func TestSubmissionOutcomesSum(t *testing.T) {
	t.Parallel()
	m := monitor.New(monitor.Options{})
	base := serve(t, m)
	ctx := context.Background()
	// 10 valid (7 on chain) + 3 invalid = 13; 4 valid (all on chain) + 5 + 1 invalid = 10.
	m.AfterBatch(ctx, summary(t0, 10, 7, map[string]int{coordinator.ReasonUnverified: 2, coordinator.ReasonMalformed: 1}, 42))
	m.AfterBatch(ctx, summary(t0.Add(20*time.Minute), 4, 4, map[string]int{coordinator.ReasonNoStateHash: 5, coordinator.ReasonValidationError: 1}, 42))
	got := scrape(t, base)
	sum := 0.0
	for k, v := range got {
		if strings.HasPrefix(k, "uptime_coordinator_submissions_total{") {
			sum += v
		}
	}
	if sum != 23 {
		t.Errorf("submissions_total series sum to %v, want 23 (13 + 10 submissions)", sum)
	}
	check(t, got, map[string]float64{
		"uptime_coordinator_submissions_total{outcome=on_chain,reason=}":                11,
		"uptime_coordinator_submissions_total{outcome=off_chain,reason=}":               3,
		"uptime_coordinator_submissions_total{outcome=invalid,reason=unverified}":       2,
		"uptime_coordinator_submissions_total{outcome=invalid,reason=malformed}":        1,
		"uptime_coordinator_submissions_total{outcome=invalid,reason=no_state_hash}":    5,
		"uptime_coordinator_submissions_total{outcome=invalid,reason=validation_error}": 1,
	})
}

// TestWorkerSeriesOfTheModeOnly: process mode exports no kubernetes series,
// and no worker mode exports no worker series.
func TestWorkerSeriesOfTheModeOnly(t *testing.T) {
	t.Parallel()
	for mode, want := range map[string][]string{monitor.ModeProcess: {"process"}, monitor.ModeKubernetes: {"kubernetes"}, "none": nil} {
		got := scrape(t, serve(t, monitor.New(monitor.Options{WorkerMode: mode})))
		var modes []string
		for k := range got {
			if strings.HasPrefix(k, "uptime_coordinator_workers_") {
				modes = append(modes, k)
			}
		}
		if len(modes) != 3*len(want) {
			t.Errorf("WorkerMode %s: worker series %v, want started, failed and retried of %v only", mode, modes, want)
		}
		for _, k := range modes {
			if len(want) == 0 || !strings.Contains(k, "{mode="+want[0]+"}") {
				t.Errorf("WorkerMode %s exports %s", mode, k)
			}
		}
	}
}
