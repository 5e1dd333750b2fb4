package alerting_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/alerting"
	"github.com/delegation-program/uptime-coordinator/alerting/alertingtest"
	"github.com/delegation-program/uptime-coordinator/alerting/outbound"
	"github.com/delegation-program/uptime-coordinator/alerting/queue"
	"github.com/delegation-program/uptime-coordinator/alerting/rules"
	"github.com/delegation-program/uptime-coordinator/alerting/subscriptions"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

// lockedBuffer collects log lines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// take returns the lines written since the last call.
func (b *lockedBuffer) take() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.TrimSpace(b.buf.String())
	b.buf.Reset()
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// TestScoreWindowsIncremental: the score_below windows other than
// UPTIME_DAYS_FOR_SCORE are kept batch after batch by the batches entering
// and leaving them. With 3-hour batches the 24h window (8 batches) slides
// past old batches 16 times in 24 batches; half-way, a rescore takes points
// away from three earlier batches still inside it, which leaves the counts
// stale: the next batch counts in full, the ones after it incrementally
// again. After batch 18, cleanup_old_data deletes the oldest batches, inside
// the 7d window but before the 24h one: the 7d window is counted in full
// once, the 24h one stays incremental. After every batch the kept counts
// equal a count written here from bot_logs and points_summary, and the
// fired and resolved alerts equal those of a model of the rule fed with the
// scores of that count (the points as they were when each batch ran).
// The batches lie in the 4 days before today, where cleanup_old_data(4),
// which counts from now(), cuts between 1 and 8 of them.
func TestScoreWindowsIncremental(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const batches, half, cleanup = 24, 12, 18
	start := time.Now().UTC().Truncate(24 * time.Hour).Add(-4 * 24 * time.Hour)
	interval := 3 * time.Hour
	net := synthnet.Generate(synthnet.Params{Seed: 23, Producers: 30, Start: start, Duration: batches * interval,
		SubmitEvery: 30 * time.Minute, OfflineShare: 0.5, InvalidShare: 0.02})
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	if err := postgres.InitDatabase(ctx, pool, start, false); err != nil {
		t.Fatal(err)
	}
	if _, err := pgtest.InsertSubmissions(ctx, pool, net.Verified()); err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// Not started: the messages stay in the outbox, which is compared.
	q, err := queue.New(pool, true, queue.Options{Policy: outbound.Policy{AllowPrivate: true}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	st := &subscriptions.Service{Pool: pool, Policy: outbound.Policy{AllowPrivate: true}, AdminToken: adminToken, Queue: q}
	windows := map[string]struct {
		d       time.Duration
		percent float64
	}{"24h": {24 * time.Hour, 90}, "7d": {7 * 24 * time.Hour, 95}}
	var rs []rules.Rule
	for _, name := range slices.Sorted(maps.Keys(windows)) {
		rs = append(rs, rules.Rule{Kind: rules.ScoreBelow, Window: name, Percent: windows[name].percent})
	}
	sub, err := st.Create(ctx, subscriptions.Spec{URL: "https://127.0.0.1/hook", Producers: subscriptions.Producers{All: true},
		Channel: "webhook", Rules: rs}, adminToken)
	if err != nil {
		t.Fatal(err)
	}
	store := &postgres.Database{Pool: pool}
	ev := &alerting.Evaluator{Queue: q, Logger: log}
	store.Steps = []postgres.Step{{Name: alerting.StepName, Run: ev.Step}}
	eng := &coordinator.Engine{Ledger: store, Source: store, Interval: interval, MiniBatches: 2, UptimeDays: 90,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return start.Add(365 * 24 * time.Hour) }}

	// first: the end of the batch in which each producer first had a valid
	// submission (from then on it is in nodes and its rules are stepped).
	first := map[string]int64{}
	for _, s := range net.Submissions {
		if s.Invalid != "" {
			continue
		}
		end := start.Add((s.SubmittedAt.Sub(start)/interval + 1) * interval).Unix()
		if f, ok := first[s.Submitter]; !ok || end < f {
			first[s.Submitter] = end
		}
	}
	var want []string
	afterRescore := 0           // events of the 24h rule after the rescore
	active := map[string]bool{} // producer + " " + rule key
	modes := map[string][]string{}
	// step runs one batch, checks the kept counts against an independent
	// count of the database, and adds the model's events of the batch.
	step := func(i int) {
		t.Helper()
		if _, err := eng.RunBatch(ctx); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		for _, line := range logs.take() {
			var rec struct {
				Msg          string   `json:"msg"`
				ScoreWindows []string `json:"score_windows"`
			}
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			if rec.Msg == "alerts step" {
				for _, m := range rec.ScoreWindows {
					name, mode, _ := strings.Cut(m, "=")
					modes[name] = append(modes[name], mode)
				}
			}
		}
		db := readPoints(t, pool)
		last := db.batches[len(db.batches)-1]
		for _, name := range slices.Sorted(maps.Keys(windows)) {
			wnd := windows[name]
			counts, surveys := db.count(last.end, wnd.d)
			got := map[string]int64{}
			rows, err := pool.Query(ctx, `SELECT n.block_producer_key, sum(p.points)::int8 FROM alert_score_window_points p
				JOIN nodes n ON n.id = p.node_id WHERE p.window_seconds = $1 AND p.points <> 0 GROUP BY 1`, int64(wnd.d/time.Second))
			if err != nil {
				t.Fatal(err)
			}
			var key string
			var n int64
			if _, err := pgx.ForEachRow(rows, []any{&key, &n}, func() error { got[key] = n; return nil }); err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, counts) {
				t.Fatalf("batch %d, %s window: kept counts %v, want %v", i, name, got, counts)
			}
			var markID, markEnd int64
			if err := pool.QueryRow(ctx, `SELECT bot_log_id, window_end_epoch FROM alert_score_windows WHERE window_seconds = $1`,
				int64(wnd.d/time.Second)).Scan(&markID, &markEnd); err != nil || markID != last.id || markEnd != last.end {
				t.Fatalf("batch %d, %s window: marker (%d, %d) %v, want (%d, %d)", i, name, markID, markEnd, err, last.id, last.end)
			}
			key = rules.Rule{Kind: rules.ScoreBelow, Window: name, Percent: wnd.percent}.Key()
			at := time.Unix(last.end, 0).UTC()
			for _, p := range net.Producers {
				if f, ok := first[p]; !ok || f > last.end {
					continue // not in nodes yet
				}
				score := float64(counts[p]*10000/surveys) / 100
				k := p + " " + key
				event := ""
				if !active[k] && score < wnd.percent {
					event = "fired"
				} else if active[k] && score >= wnd.percent {
					event = "resolved"
				}
				if event == "" {
					continue
				}
				active[k] = event == "fired"
				want = append(want, alertingtest.Event{Event: event, Producer: p, Rule: key, WindowEnd: at}.String())
				if i > half && name == "24h" {
					afterRescore++
				}
			}
		}
	}
	for i := 1; i <= half; i++ {
		step(i)
	}

	// A rescore: a third of the producers lose their points of batches 6-8
	// (inside the 24h window of batch 12 and of the batches after it).
	var who []string
	var at []time.Time
	for _, s := range net.Verified() {
		b := int(s.SubmittedAt.Sub(start) / interval)
		if b >= 5 && b <= 7 && s.Submitter[len(s.Submitter)-1]%3 == 0 && first[s.Submitter] <= start.Add(5*interval).Unix() {
			who, at = append(who, s.Submitter), append(at, s.SubmittedAt)
		}
	}
	if _, err := pool.Exec(ctx, `UPDATE submissions s SET verified = false, validation_error = 'snark verification failed'
		FROM unnest($1::text[], $2::timestamp[]) AS u(who, at) WHERE s.submitter = u.who AND s.submitted_at = u.at`, who, at); err != nil {
		t.Fatal(err)
	}
	before := readPoints(t, pool)
	rep, err := postgres.Rescore(ctx, pool, postgres.RescoreOptions{From: start.Add(6 * interval), To: start.Add(8*interval + time.Second),
		Interval: interval, UptimeDays: 90})
	if err != nil {
		t.Fatal(err)
	}
	if rep.SummaryRemoved < 10 {
		t.Fatalf("the rescore removed %d points_summary rows: too few to test anything", rep.SummaryRemoved)
	}
	if lost := len(before.points) - len(readPoints(t, pool).points); lost != rep.SummaryRemoved-rep.SummaryAdded {
		t.Fatalf("the rescore changed %d points, its report says %d", lost, rep.SummaryRemoved-rep.SummaryAdded)
	}
	var marked int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM alert_score_windows`).Scan(&marked); err != nil || marked != 0 {
		t.Fatalf("%d score windows still marked exact after the rescore (%v)", marked, err)
	}
	for i := half + 1; i <= cleanup; i++ {
		step(i)
	}
	if _, err := pool.Exec(ctx, `SELECT cleanup_old_data(4)`); err != nil {
		t.Fatal(err)
	}
	if gone := len(before.batches) + (cleanup - half) - len(readPoints(t, pool).batches); gone < 2 {
		t.Fatalf("cleanup_old_data deleted %d bot_logs rows, want the starting row and at least one batch", gone)
	}
	for i := cleanup + 1; i <= batches; i++ {
		step(i)
	}

	// Each window counted in full on its first batch and on the first after
	// the rescore, the 7d one also after the cleanup, incrementally on every
	// other.
	for name := range windows {
		var wantModes []string
		for i := 1; i <= batches; i++ {
			if i == 1 || i == half+1 || i == cleanup+1 && name == "7d" {
				wantModes = append(wantModes, "full")
			} else {
				wantModes = append(wantModes, "incremental")
			}
		}
		if !slices.Equal(modes[name], wantModes) {
			t.Errorf("%s window counted %v, want %v", name, modes[name], wantModes)
		}
	}

	var fired, resolved int
	for _, e := range want {
		if strings.HasPrefix(e, "fired") {
			fired++
		} else {
			resolved++
		}
	}
	if fired < 5 || resolved < 3 || afterRescore < 2 {
		t.Fatalf("the model gives %d fired and %d resolved alerts, %d of the 24h rule after the rescore: too few to test anything",
			fired, resolved, afterRescore)
	}
	t.Logf("model: %d fired, %d resolved, %d of the 24h rule after the rescore", fired, resolved, afterRescore)
	var got []string
	rows, err := pool.Query(ctx, `SELECT payload FROM alert_outbox WHERE subscription_id = $1`, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	var payload []byte
	if _, err := pgx.ForEachRow(rows, []any{&payload}, func() error {
		var m struct {
			Event     string     `json:"event"`
			Producer  string     `json:"producer"`
			WindowEnd string     `json:"window_end"`
			Rule      rules.Rule `json:"rule"`
		}
		if err := json.Unmarshal(payload, &m); err != nil {
			return err
		}
		got = append(got, fmt.Sprintf("%s %s %s @%s", m.Event, m.Producer, m.Rule.Key(), m.WindowEnd))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("outbox has %d score alerts, the model expects %d:\ngot  %v\nwant %v", len(got), len(want), got, want)
	}
}

type pointsDB struct {
	batches []struct{ id, start, end, files int64 }
	points  map[[2]any]bool // (bot_log_id, producer)
}

func readPoints(t *testing.T, pool *pgxpool.Pool) pointsDB {
	t.Helper()
	ctx := context.Background()
	var db pointsDB
	rows, err := pool.Query(ctx, `SELECT id, batch_start_epoch, batch_end_epoch, files_processed FROM bot_logs ORDER BY batch_end_epoch, id`)
	if err != nil {
		t.Fatal(err)
	}
	var b struct{ id, start, end, files int64 }
	if _, err := pgx.ForEachRow(rows, []any{&b.id, &b.start, &b.end, &b.files}, func() error { db.batches = append(db.batches, b); return nil }); err != nil {
		t.Fatal(err)
	}
	db.points = map[[2]any]bool{}
	rows, err = pool.Query(ctx, `SELECT ps.bot_log_id::int8, n.block_producer_key FROM points_summary ps JOIN nodes n ON n.id = ps.node_id`)
	if err != nil {
		t.Fatal(err)
	}
	var id int64
	var p string
	if _, err := pgx.ForEachRow(rows, []any{&id, &p}, func() error { db.points[[2]any{id, p}] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	return db
}

// count counts, for the window of length d ending at end, each producer's
// points in the batches lying inside it and the surveys (those batches that
// are not the starting row).
func (db pointsDB) count(end int64, d time.Duration) (map[string]int64, int64) {
	in := map[int64]bool{}
	var surveys int64
	for _, b := range db.batches {
		if b.start >= end-int64(d/time.Second) && b.end <= end {
			in[b.id] = true
			if b.files > -1 {
				surveys++
			}
		}
	}
	counts := map[string]int64{}
	for k := range db.points {
		if in[k[0].(int64)] {
			counts[k[1].(string)]++
		}
	}
	return counts, surveys
}
