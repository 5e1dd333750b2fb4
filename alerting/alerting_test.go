package alerting_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/alerting"
	"github.com/delegation-program/uptime-coordinator/alerting/channels"
	"github.com/delegation-program/uptime-coordinator/alerting/outbound"
	"github.com/delegation-program/uptime-coordinator/alerting/queue"
	"github.com/delegation-program/uptime-coordinator/alerting/rules"
	"github.com/delegation-program/uptime-coordinator/alerting/subscriptions"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const adminToken = "admin-token-for-tests-0123456789"

// receiver is an HTTPS webhook receiver. It checks every generic webhook's
// signature with the secret registered for its path, and counts deliveries
// per idempotency key. While failing is set it answers 503.
type receiver struct {
	t       *testing.T
	srv     *httptest.Server
	failing atomic.Bool
	refused atomic.Int64

	mu      sync.Mutex
	secrets map[string]string
	got     map[string][]channels.Message // by id
	texts   map[string][]string           // slack texts by path
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t, secrets: map[string]string{}, got: map[string][]channels.Message{}, texts: map[string][]string{}}
	r.srv = httptest.NewTLSServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		r.t.Errorf("reading a delivery: %v", err)
	}
	if r.failing.Load() {
		r.refused.Add(1)
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if strings.HasPrefix(req.URL.Path, "/slack") {
		var m struct{ Text string }
		if err := json.Unmarshal(body, &m); err != nil || m.Text == "" {
			r.t.Errorf("slack delivery %q is not {\"text\": ...}", body)
		}
		r.texts[req.URL.Path] = append(r.texts[req.URL.Path], m.Text)
		return
	}
	secret, ok := r.secrets[req.URL.Path]
	if !ok {
		r.t.Errorf("delivery to unknown path %s", req.URL.Path)
		return
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	if want := "sha256=" + hex.EncodeToString(mac.Sum(nil)); req.Header.Get("X-Signature-256") != want {
		r.t.Errorf("bad signature %q on %s", req.Header.Get("X-Signature-256"), body)
	}
	var m channels.Message
	if err := json.Unmarshal(body, &m); err != nil {
		r.t.Errorf("webhook body is not a message: %v", err)
	}
	if ts := req.Header.Get("X-Signature-Timestamp"); ts != strconv.FormatInt(m.Timestamp, 10) || m.Timestamp == 0 {
		r.t.Errorf("timestamp header %q, body timestamp %d", ts, m.Timestamp)
	}
	r.got[m.ID] = append(r.got[m.ID], m)
}

func (r *receiver) transport() *http.Transport {
	return r.srv.Client().Transport.(*http.Transport).Clone()
}

// event is what the model expects: one fired or resolved message.
type event struct {
	Event, Producer, Rule string
	BotLogID              int64
}

func (e event) String() string {
	return fmt.Sprintf("%s %s %s @%d", e.Event, e.Producer[:12], e.Rule, e.BotLogID)
}

type batch struct {
	id         int64
	start, end int64
}

// model computes, independently of the alerting code, the messages a
// missed_batches(count) and a score_below(window, percent) rule send for
// each producer, from what the coordinator wrote (bot_logs, points_summary)
// and from when each producer first had a valid submission.
func model(t *testing.T, pool *pgxpool.Pool, net *synthnet.Network, producers []string, count int, window time.Duration, percent float64) []event {
	ctx := context.Background()
	rows, _ := pool.Query(ctx, `SELECT id, batch_start_epoch, batch_end_epoch FROM bot_logs WHERE files_processed > -1 ORDER BY batch_end_epoch`)
	batches, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (batch, error) {
		var b batch
		return b, r.Scan(&b.id, &b.start, &b.end)
	})
	if err != nil {
		t.Fatal(err)
	}
	rows, _ = pool.Query(ctx, `SELECT ps.bot_log_id, n.block_producer_key FROM points_summary ps JOIN nodes n ON n.id = ps.node_id`)
	type pk struct {
		id int64
		p  string
	}
	points := map[pk]bool{}
	var id int64
	var p string
	if _, err := pgx.ForEachRow(rows, []any{&id, &p}, func() error { points[pk{id, p}] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	first := map[string]int64{} // first batch end with a valid submission
	for _, s := range net.Submissions {
		if s.Invalid != "" {
			continue
		}
		for _, b := range batches {
			if s.SubmittedAt.Unix() >= b.start && s.SubmittedAt.Unix() < b.end {
				if _, ok := first[s.Submitter]; !ok {
					first[s.Submitter] = b.end
				}
			}
		}
	}
	var out []event
	missKey, scoreKey := fmt.Sprintf("missed_batches:%d", count), fmt.Sprintf("score_below:24h:%g", percent)
	for _, p := range producers {
		f, ok := first[p]
		if !ok {
			continue
		}
		misses, missActive, scoreActive := 0, false, false
		for _, b := range batches {
			if b.end < f {
				continue
			}
			if points[pk{b.id, p}] {
				misses = 0
			} else {
				misses++
			}
			if !missActive && misses >= count {
				missActive = true
				out = append(out, event{"fired", p, missKey, b.id})
			} else if missActive && misses == 0 {
				missActive = false
				out = append(out, event{"resolved", p, missKey, b.id})
			}
			if percent > 0 {
				var n, surveys int64
				for _, c := range batches {
					if c.start >= b.end-int64(window/time.Second) && c.end <= b.end {
						surveys++
						if points[pk{c.id, p}] {
							n++
						}
					}
				}
				score := float64(n*10000/surveys) / 100
				if !scoreActive && score < percent {
					scoreActive = true
					out = append(out, event{"fired", p, scoreKey, b.id})
				} else if scoreActive && score >= percent {
					scoreActive = false
					out = append(out, event{"resolved", p, scoreKey, b.id})
				}
			}
		}
	}
	return out
}

func sortedStrings[T fmt.Stringer](xs []T) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = x.String()
	}
	slices.Sort(out)
	return out
}

type setup struct {
	pool  *pgxpool.Pool
	net   *synthnet.Network
	recv  *receiver
	queue *queue.Queue
	subs  *subscriptions.Store
	eng   *coordinator.Engine
}

func newSetup(t *testing.T, batches int) *setup {
	t.Helper()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	start := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	interval := 20 * time.Minute
	if err := postgres.InitDatabase(ctx, pool, start, false); err != nil {
		t.Fatal(err)
	}
	net := synthnet.Generate(synthnet.Params{Seed: 11, Producers: 40, Start: start, Duration: time.Duration(batches) * interval,
		OfflineShare: 0.4, InvalidShare: 0.05})
	if _, err := postgres.InsertSubmissions(ctx, pool, net.Verified()); err != nil {
		t.Fatal(err)
	}
	recv := newReceiver(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	q, err := queue.New(pool, true, queue.Options{Policy: outbound.Policy{AllowPrivate: true}, Transport: recv.transport(),
		RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, PollInterval: 50 * time.Millisecond,
		RatePerMinute: 60000, Burst: 1000, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = q.Stop(ctx)
	})
	store := &postgres.Store{Pool: pool}
	ev := &alerting.Evaluator{Queue: q, PublicURL: "https://uptime.example.org/", Logger: log}
	store.Steps = []postgres.Step{{Name: alerting.StepName, Run: ev.Step}}
	eng := &coordinator.Engine{Store: store, Source: store, Interval: interval, MiniBatches: 5, UptimeDays: 90,
		Logger: log, Now: func() time.Time { return start.Add(365 * 24 * time.Hour) }}
	return &setup{pool: pool, net: net, recv: recv, queue: q, eng: eng,
		subs: &subscriptions.Store{Pool: pool, Policy: outbound.Policy{AllowPrivate: true}, AdminToken: adminToken, Queue: q}}
}

func (s *setup) subscribe(t *testing.T, path string, spec subscriptions.Spec) subscriptions.Created {
	t.Helper()
	spec.URL = s.recv.srv.URL + path
	c, err := s.subs.Create(context.Background(), spec, adminToken)
	if err != nil {
		t.Fatal(err)
	}
	s.recv.mu.Lock()
	s.recv.secrets[path] = c.Secret
	s.recv.mu.Unlock()
	return c
}

func (s *setup) run(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		if _, err := s.eng.RunBatch(context.Background()); err != nil {
			t.Fatalf("batch %d: %v", i+1, err)
		}
	}
}

// TestProducersOfflineAndBack: a network where some producers go offline
// for hours and come back; a webhook subscribed to every producer gets
// exactly the fired and resolved messages an independent model expects,
// each once, signed, and a Slack subscription to three producers gets
// their texts.
func TestProducersOfflineAndBack(t *testing.T) {
	t.Parallel()
	const batches = 24
	s := newSetup(t, batches)
	all := s.subscribe(t, "/all", subscriptions.Spec{Producers: subscriptions.Producers{All: true}, Channel: "webhook",
		Rules: []rules.Rule{{Kind: rules.MissedBatches}, {Kind: rules.ScoreBelow, Window: "24h", Percent: 80}}})
	// Three producers with at least one miss streak, on Slack.
	s.run(t, batches)
	if left, err := s.queue.Drain(context.Background(), 30*time.Second); err != nil || left != 0 {
		t.Fatalf("drain: %d left, %v", left, err)
	}

	want := model(t, s.pool, s.net, s.net.Producers, 3, 24*time.Hour, 80)
	var fired, resolved int
	for _, e := range want {
		if e.Event == "fired" {
			fired++
		} else {
			resolved++
		}
	}
	if fired < 5 || resolved < 3 {
		t.Fatalf("the network gives %d fired and %d resolved alerts: too few to test anything", fired, resolved)
	}
	t.Logf("model: %d fired, %d resolved", fired, resolved)
	s.recv.mu.Lock()
	var got []event
	for id, ms := range s.recv.got {
		if len(ms) != 1 {
			t.Errorf("message %s delivered %d times", id, len(ms))
		}
		m := ms[0]
		if m.Rule == nil {
			t.Fatalf("message %s without a rule: %+v", id, m)
		}
		got = append(got, event{m.Event, m.Producer, m.Rule.Key(), m.BotLogID})
		if !strings.Contains(m.Text, m.Producer) || !strings.Contains(m.Text, "https://uptime.example.org/producers/"+m.Producer) {
			t.Errorf("message text %q does not name and link the producer", m.Text)
		}
		if m.Event == "fired" && m.Rule.Kind == rules.MissedBatches && !strings.Contains(m.Text, "no point in the last 3 consecutive batches; this batch: ") {
			t.Errorf("fired missed_batches text %q lacks the reason", m.Text)
		}
		if !strings.HasSuffix(m.WindowEnd, "Z") {
			t.Errorf("window_end %q is not UTC RFC 3339", m.WindowEnd)
		}
	}
	s.recv.mu.Unlock()
	if g, w := sortedStrings(got), sortedStrings(want); !slices.Equal(g, w) {
		t.Fatalf("received %d messages, model expects %d:\nreceived %v\nexpected %v", len(g), len(w), g, w)
	}

	// The state left: exactly the alerts the model leaves firing.
	firing := map[string]bool{}
	for _, e := range want {
		firing[e.Producer+" "+e.Rule] = e.Event == "fired"
	}
	var wantState []string
	for k, on := range firing {
		if on {
			wantState = append(wantState, k)
		}
	}
	slices.Sort(wantState)
	rows, _ := s.pool.Query(context.Background(), `SELECT producer || ' ' || rule_key FROM alert_state WHERE subscription_id = $1 ORDER BY 1`, all.ID)
	gotState, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gotState, wantState) {
		t.Errorf("alert_state %v, want %v", gotState, wantState)
	}
}
