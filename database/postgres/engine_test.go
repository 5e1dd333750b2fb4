package postgres_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/retrypolicy"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

// model is the test's own, deliberately naive, account of what the
// coordinator must write: per-hash submitter sets, weights by repeated
// relaxation until nothing changes, and scores recounted from scratch.
type model struct {
	days    int64
	prev    map[string]modelHash // the previous batch's shortlist
	batches []modelBatch
	scored  map[string]bool // producers that have ever had a score
}

type modelHash struct {
	parent string
	weight int
}

type modelBatch struct {
	start, end int64
	files      int
	fileTS     time.Time
	shortlist  map[string]modelHash
	points     []string        // "producer|hash|file_name"
	producers  map[string]bool // producers with a point
}

// modelFileNameLayout is pandas' text form of the batch's submitted_at
// column (verified rows without validation error): the fraction digits the
// most precise time needs, rounded up to 3, 6 or 9; the date alone when
// every time is a midnight.
func modelFileNameLayout(subs []coordinator.Submission) string {
	digits, midnights, rows := 0, true, 0
	for _, s := range subs {
		if s.Verified == nil || !*s.Verified || (s.ValidationError != nil && *s.ValidationError != "") {
			continue
		}
		rows++
		frac := strings.TrimRight(fmt.Sprintf("%09d", s.SubmittedAt.Nanosecond()), "0")
		digits = max(digits, (len(frac)+2)/3*3)
		if s.SubmittedAt.UTC().Format("15:04:05") != "00:00:00" || frac != "" {
			midnights = false
		}
	}
	if rows > 0 && midnights {
		return "2006-01-02"
	}
	if digits == 0 {
		return "2006-01-02 15:04:05"
	}
	return "2006-01-02 15:04:05." + strings.Repeat("0", digits)
}

func (m *model) batch(w coordinator.Window, subs []coordinator.Submission) modelBatch {
	b := modelBatch{start: w.Start.Unix(), end: w.End.Unix(), shortlist: map[string]modelHash{}, producers: map[string]bool{}}
	var valid []coordinator.Submission
	for _, s := range subs {
		if s.Verified != nil && *s.Verified && (s.ValidationError == nil || *s.ValidationError == "") && s.StateHash != nil && *s.StateHash != "" {
			valid = append(valid, s)
		}
	}
	b.files = len(valid)
	bySubmitter := map[string]map[string]bool{}
	all := map[string]bool{}
	for _, s := range valid {
		if bySubmitter[*s.StateHash] == nil {
			bySubmitter[*s.StateHash] = map[string]bool{}
		}
		bySubmitter[*s.StateHash][s.Submitter] = true
		all[s.Submitter] = true
	}
	const inf = 1 << 30
	w8 := map[string]int{}
	for h := range bySubmitter {
		w8[h] = inf
		if float64(len(bySubmitter[h])) >= math.Round(float64(len(all))*0.05*100)/100 { // round(n*0.05, 2)
			w8[h] = 0
		}
	}
	for h, p := range m.prev {
		if _, ok := w8[h]; !ok {
			w8[h] = inf
		}
		w8[h] = min(w8[h], p.weight)
	}
	type edge struct{ from, to string }
	var edges []edge
	for _, s := range valid {
		if s.Parent != nil {
			if _, ok := w8[*s.Parent]; ok {
				edges = append(edges, edge{*s.Parent, *s.StateHash})
			}
		}
	}
	for h, p := range m.prev {
		if _, ok := m.prev[p.parent]; ok {
			edges = append(edges, edge{p.parent, h})
		}
	}
	for changed := true; changed; {
		changed = false
		for _, e := range edges {
			if w8[e.from] < inf && w8[e.from]+1 < w8[e.to] {
				w8[e.to], changed = w8[e.from]+1, true
			}
		}
	}
	latest := map[string]coordinator.Submission{}
	for _, s := range valid {
		l, ok := latest[*s.StateHash]
		if !ok || s.SubmittedAt.After(l.SubmittedAt) || (s.SubmittedAt.Equal(l.SubmittedAt) && s.Submitter > l.Submitter) {
			latest[*s.StateHash] = s
		}
	}
	for h := range bySubmitter {
		if w8[h] <= 2 {
			parent := ""
			if p := latest[h].Parent; p != nil {
				parent = *p
			}
			b.shortlist[h] = modelHash{parent: parent, weight: w8[h]}
		}
	}
	layout := modelFileNameLayout(subs)
	for _, s := range valid {
		if w8[*s.StateHash] <= 2 {
			b.points = append(b.points, s.Submitter+"|"+*s.StateHash+"|"+s.SubmittedAt.UTC().Format(layout)+"-"+s.Submitter)
			b.producers[s.Submitter] = true
		}
	}
	// The earliest valid submission, pointed or not; the batch end when
	// nobody earned a point.
	b.fileTS = w.End
	if len(b.points) > 0 {
		b.fileTS = valid[0].SubmittedAt
		for _, s := range valid {
			if s.SubmittedAt.Before(b.fileTS) {
				b.fileTS = s.SubmittedAt
			}
		}
	}
	m.prev = b.shortlist
	m.batches = append(m.batches, b)
	return b
}

// scores returns producer -> "score|percent" for the window ending at the
// latest batch, for every producer that has ever had a score.
func (m *model) scores() map[string]string {
	end := m.batches[len(m.batches)-1].end
	start := end - m.days*86400
	surveys := 0
	count := map[string]int{}
	for _, b := range m.batches {
		if b.start >= start && b.end <= end {
			surveys++
			for p := range b.producers {
				count[p]++
			}
		}
	}
	out := map[string]string{}
	for p := range count {
		m.scored[p] = true
	}
	for p := range m.scored {
		hundredths := count[p] * 10000 / surveys
		out[p] = fmt.Sprintf("%d|%d.%02d", count[p], hundredths/100, hundredths%100)
	}
	return out
}

func TestEngineEndToEnd(t *testing.T) {
	t.Parallel()
	for _, bulk := range []bool{false, true} {
		t.Run(fmt.Sprintf("bulk_points=%v", bulk), func(t *testing.T) {
			t.Parallel()
			testEngineEndToEnd(t, bulk)
		})
	}
}

func testEngineEndToEnd(t *testing.T, bulk bool) {
	ctx := context.Background()
	const interval = 2 * time.Hour // 26 batches of 2 h: 52 h, so a 1-day window slides
	start := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	net := synthnet.Generate(synthnet.Params{Seed: 7, Producers: 120, Start: start, Duration: 26 * interval, DepartShare: 0.05})
	subs := net.Verified()
	_, pool := pgtest.Seed(t, subs, start)
	if ok, why, err := postgres.CanBulkWritePoints(ctx, pool); err != nil || (bulk && !ok) {
		t.Fatalf("bulk points path unavailable to the test's superuser: %v %s", err, why)
	}
	store := &postgres.Database{Pool: pool, BulkPoints: bulk}
	eng := &coordinator.Engine{Ledger: store, Source: store, Interval: interval, MiniBatches: 5, UptimeDays: 1,
		Retries: 0, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}

	m := &model{days: 1, scored: map[string]bool{}}
	for i := range 26 {
		if i == 13 { // lose the scoreboard state: batch 13 recomputes the window in full
			exec(t, pool, `DELETE FROM coordinator_scoreboard`)
		}
		s, err := eng.RunBatch(ctx)
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		w := coordinator.Window{Start: start.Add(time.Duration(i) * interval), End: start.Add(time.Duration(i+1) * interval)}
		if !s.Window.Start.Equal(w.Start) || !s.Window.End.Equal(w.End) {
			t.Fatalf("batch %d window %v, want %v", i, s.Window, w)
		}
		want := m.batch(w, synthnet.Window(subs, w))
		checkBatch(t, ctx, pool, i, s.Committed.BotLogID, want)
		checkScores(t, ctx, pool, i, w, m.scores())
		if wantIncremental := i != 0 && i != 13; s.Committed.Scoreboard.Incremental != wantIncremental {
			t.Errorf("batch %d: incremental scoreboard %v, want %v", i, s.Committed.Scoreboard.Incremental, wantIncremental)
		}
	}
	// Every reference is intact: the fast path skips the foreign-key checks.
	for _, q := range []string{
		`SELECT count(*) FROM points p WHERE NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = p.node_id)
			OR NOT EXISTS (SELECT 1 FROM statehash s WHERE s.id = p.statehash_id) OR NOT EXISTS (SELECT 1 FROM bot_logs b WHERE b.id = p.bot_log_id)`,
		`SELECT count(*) FROM (SELECT DISTINCT bot_log_id, node_id FROM points EXCEPT SELECT bot_log_id, node_id FROM points_summary) x`,
		`SELECT count(*) FROM (SELECT bot_log_id, node_id FROM points_summary EXCEPT SELECT bot_log_id, node_id FROM points) x`,
	} {
		var n int
		if err := pool.QueryRow(ctx, q).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s = %d (%v), want 0", q, n, err)
		}
	}
	var setting string
	if err := pool.QueryRow(ctx, `SHOW session_replication_role`).Scan(&setting); err != nil || setting != "origin" {
		t.Errorf("session_replication_role = %q after the batches (%v), want origin", setting, err)
	}
	// The data must have exercised what it is meant to: forks off the
	// chain, producers that lost every point of the window.
	var offChain, zeroed int
	for _, b := range m.batches {
		offChain += b.files - len(b.points)
	}
	for _, v := range m.scores() {
		if strings.HasPrefix(v, "0|") {
			zeroed++
		}
	}
	if offChain == 0 || zeroed == 0 {
		t.Errorf("weak test data: %d off-chain submissions, %d producers scored to zero", offChain, zeroed)
	}
}

type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func strs(t *testing.T, ctx context.Context, pool queryer, sql string, args ...any) []string {
	t.Helper()
	r, err := pool.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer r.Close()
	var out []string
	for r.Next() {
		var s string
		if err := r.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func checkBatch(t *testing.T, ctx context.Context, pool queryer, i int, botLogID int64, want modelBatch) {
	t.Helper()
	got := strs(t, ctx, pool, `SELECT concat_ws('|', batch_start_epoch, batch_end_epoch, files_processed, (extract(epoch FROM file_timestamps) * 1000000)::bigint)
		FROM bot_logs WHERE id = $1`, botLogID)
	wantRow := fmt.Sprintf("%d|%d|%d|%d", want.start, want.end, want.files, want.fileTS.UnixMicro())
	if len(got) != 1 || got[0] != wantRow {
		t.Errorf("batch %d bot_logs %v, want %s", i, got, wantRow)
	}
	var wantShort []string
	for h, v := range want.shortlist {
		p := v.parent
		if p == "" {
			p = "-"
		}
		wantShort = append(wantShort, fmt.Sprintf("%s|%s|%d", h, p, v.weight))
	}
	slices.Sort(wantShort)
	gotShort := strs(t, ctx, pool, `SELECT concat_ws('|', s.value, coalesce(p.value, '-'), b.weight) FROM bot_logs_statehash b
		JOIN statehash s ON s.id = b.statehash_id LEFT JOIN statehash p ON p.id = b.parent_statehash_id WHERE b.bot_log_id = $1`, botLogID)
	if !slices.Equal(gotShort, wantShort) {
		t.Errorf("batch %d bot_logs_statehash:\n got %v\nwant %v", i, gotShort, wantShort)
	}
	wantPoints := slices.Clone(want.points)
	slices.Sort(wantPoints)
	gotPoints := strs(t, ctx, pool, `SELECT concat_ws('|', n.block_producer_key, s.value, p.file_name) FROM points p
		JOIN nodes n ON n.id = p.node_id JOIN statehash s ON s.id = p.statehash_id WHERE p.bot_log_id = $1 AND p.amount = 1`, botLogID)
	if !slices.Equal(gotPoints, wantPoints) {
		t.Errorf("batch %d: %d points, want %d", i, len(gotPoints), len(wantPoints))
	}
	var wantSummary []string
	for p := range want.producers {
		wantSummary = append(wantSummary, p)
	}
	slices.Sort(wantSummary)
	gotSummary := strs(t, ctx, pool, `SELECT n.block_producer_key FROM points_summary ps JOIN nodes n ON n.id = ps.node_id WHERE ps.bot_log_id = $1`, botLogID)
	if !slices.Equal(gotSummary, wantSummary) {
		t.Errorf("batch %d: points_summary has %d producers, want %d", i, len(gotSummary), len(wantSummary))
	}
}

func checkScores(t *testing.T, ctx context.Context, pool queryer, i int, w coordinator.Window, want map[string]string) {
	t.Helper()
	var wantNodes, wantHistory []string
	for p, v := range want {
		wantNodes = append(wantNodes, p+"|"+v)
		wantHistory = append(wantHistory, p+"|"+w.End.Format("2006-01-02 15:04:05")+"|"+v)
	}
	slices.Sort(wantNodes)
	slices.Sort(wantHistory)
	gotNodes := strs(t, ctx, pool, `SELECT concat_ws('|', block_producer_key, score, score_percent) FROM nodes WHERE score IS NOT NULL`)
	if !slices.Equal(gotNodes, wantNodes) {
		t.Errorf("batch %d nodes scores differ:\n%s", i, listDiff(gotNodes, wantNodes))
	}
	gotHistory := strs(t, ctx, pool, `SELECT concat_ws('|', n.block_producer_key, h.score_at, h.score, h.score_percent)
		FROM score_history h JOIN nodes n ON n.id = h.node_id WHERE h.score_at = $1`, w.End.UTC())
	if !slices.Equal(gotHistory, wantHistory) {
		t.Errorf("batch %d score_history differs:\n%s", i, listDiff(gotHistory, wantHistory))
	}
}

func listDiff(got, want []string) string {
	var out []string
	for _, g := range got {
		if !slices.Contains(want, g) && len(out) < 5 {
			out = append(out, "  got  "+g)
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) && len(out) < 10 {
			out = append(out, "  want "+w)
		}
	}
	return strings.Join(out, "\n")
}

// failingLauncher fails its first failures calls.
type failingLauncher struct{ failures, calls int }

func (f *failingLauncher) Verify(ctx context.Context, batch coordinator.Window, parts []coordinator.Window) error {
	f.calls++
	if f.calls <= f.failures {
		return fmt.Errorf("verifier crashed (call %d)", f.calls)
	}
	return nil
}

func TestEngineRetriesThenGivesUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	start := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	net := synthnet.Generate(synthnet.Params{Seed: 3, Producers: 30, Start: start, Duration: time.Hour})
	_, pool := pgtest.Seed(t, net.Verified(), start)
	store := &postgres.Database{Pool: pool}
	var failures []bool
	v := &failingLauncher{failures: 2}
	eng := &coordinator.Engine{Ledger: store, Source: store, Launcher: v, Interval: 20 * time.Minute, MiniBatches: 5,
		UptimeDays: 90, Retries: 3, Retry: retrypolicy.Policy{First: 10 * time.Millisecond, Max: 40 * time.Millisecond},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnFailure: func(_ context.Context, f coordinator.Failure) {
			failures = append(failures, f.Final)
		}}
	// Two failures, then success: the batch commits once.
	if _, err := eng.RunBatch(ctx); err != nil {
		t.Fatalf("batch with two transient failures: %v", err)
	}
	if v.calls != 3 || len(failures) != 2 || failures[0] || failures[1] {
		t.Fatalf("calls %d, failures %v; want 3 calls and 2 non-final failures", v.calls, failures)
	}
	// A batch that keeps failing is abandoned after 1 + RETRY_COUNT attempts
	// and leaves nothing behind.
	before := pgtest.TakeSnapshot(t, pool)
	v.failures, v.calls, failures = 1000, 0, nil
	_, err := eng.RunBatch(ctx)
	if err == nil || !strings.Contains(err.Error(), "giving up after 4 attempts") || !strings.Contains(err.Error(), "verifier crashed") {
		t.Fatalf("abandoned batch: %v", err)
	}
	if v.calls != 4 || len(failures) != 4 || !failures[3] {
		t.Fatalf("calls %d, failures %v; want 4 calls, the last failure final", v.calls, failures)
	}
	if d := before.Diff(pgtest.TakeSnapshot(t, pool)); d != "" {
		t.Fatalf("an abandoned batch changed the database:\n%s", d)
	}
}

func TestEngineEmptyBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	start := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	// Submissions for the first batch only; the second is empty.
	net := synthnet.Generate(synthnet.Params{Seed: 4, Producers: 30, Start: start, Duration: 20 * time.Minute})
	_, pool := pgtest.Seed(t, net.Verified(), start)
	store := &postgres.Database{Pool: pool}
	eng := &coordinator.Engine{Ledger: store, Source: store, Interval: 20 * time.Minute, MiniBatches: 5, UptimeDays: 90,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for range 2 {
		if _, err := eng.RunBatch(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var files int
	var fileTS time.Time
	if err := pool.QueryRow(ctx, `SELECT files_processed, file_timestamps FROM bot_logs ORDER BY batch_end_epoch DESC LIMIT 1`).Scan(&files, &fileTS); err != nil {
		t.Fatal(err)
	}
	if files != 0 || !fileTS.Equal(start.Add(40*time.Minute)) {
		t.Errorf("empty batch's bot_logs: files %d, file_timestamps %v; want 0 and the batch end", files, fileTS)
	}
	// The scoreboard moved on: a producer scored in the first batch now has
	// 1 point of 2 surveys.
	var top string
	if err := pool.QueryRow(ctx, `SELECT max(score_percent)::text FROM nodes`).Scan(&top); err != nil || top != "50.00" {
		t.Errorf("best score after an empty batch = %s (%v), want 50.00", top, err)
	}
}
