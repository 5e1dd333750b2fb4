package inspect_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/database/postgres/inspect"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const (
	interval = 20 * time.Minute
	batches  = 8
	legacy   = 2 // the first batches are scored without evidence, as before the feature
	// end: a range [start, start+end) holds every batch (window ends are
	// in [from, to)).
	end = (batches + 1) * interval
)

var start = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)

// scored builds a database from a synthetic network with fates, scores
// `legacy` batches without evidence and the others with it.
func scored(t *testing.T) (config.Postgres, *synthnet.Network) {
	t.Helper()
	ctx := context.Background()
	net := synthnet.Generate(synthnet.Params{Seed: 7, Producers: 150, Start: start, Duration: batches * interval, Fates: true})
	cfg, pool := pgtest.Seed(t, net.Verified(), start)
	store := &postgres.Database{Pool: pool}
	eng := &coordinator.Engine{Ledger: store, Source: store, Interval: interval, MiniBatches: 1, UptimeDays: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return start.Add(48 * time.Hour) }}
	for i := range batches {
		eng.NoEvidence = i < legacy
		if _, err := eng.RunBatch(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return cfg, net
}

// expected is the test's own account of a producer's batch, from what the
// generator recorded it did to the producer.
type expected struct {
	reason         string
	point          bool
	submissions    int
	valid          int
	invalidByClass map[string]int
	stateHashes    []string
}

func expect(net *synthnet.Network, key string, w coordinator.Window) expected {
	fate := net.Fates[key]
	var mine []synthnet.Submission
	for _, s := range net.Submissions {
		if s.Submitter == key && !s.SubmittedAt.Before(w.Start) && s.SubmittedAt.Before(w.End) {
			mine = append(mine, s)
		}
	}
	e := expected{submissions: len(mine), invalidByClass: map[string]int{}, stateHashes: []string{}}
	if len(mine) == 0 {
		e.reason = coordinator.OutcomeNoSubmission
		return e
	}
	hashes := map[string]bool{}
	for _, s := range mine {
		hashes[s.Block.Hash] = true
	}
	switch fate.Kind {
	case synthnet.FateOffline, synthnet.FateLate: // healthy when online: always on the chain
		e.reason, e.point, e.valid, e.stateHashes = coordinator.OutcomePoint, true, len(mine), slices.Sorted(maps.Keys(hashes))
	case synthnet.FateDeepFork:
		e.reason, e.valid, e.stateHashes = coordinator.OutcomeOffChain, len(mine), slices.Sorted(maps.Keys(hashes))
	case synthnet.FateUnverified:
		e.reason = coordinator.OutcomeUnverified
	case synthnet.FateFailing:
		e.reason, e.invalidByClass = coordinator.OutcomeInvalid, map[string]int{fate.Class: len(mine)}
	}
	return e
}

func got(b inspect.BatchReport) expected {
	return expected{reason: b.Reason, point: b.Point, submissions: b.Submissions, valid: b.Valid,
		invalidByClass: b.InvalidByClass, stateHashes: b.StateHashes}
}

func readOnly(t *testing.T, cfg config.Postgres) config.Postgres {
	t.Helper()
	ro := cfg
	ro.User, ro.Password = "ro_"+cfg.DB, "ro-secret"
	if _, err := postgres.CreateROUser(context.Background(), pgtest.Pool(t, cfg), cfg.DB, ro.User, ro.Password); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool, err := postgres.Open(context.Background(), cfg.ConnString(""))
		if err != nil {
			return
		}
		defer pool.Close()
		_, _ = pool.Exec(context.Background(), `DROP OWNED BY `+ro.User)
		_, _ = pool.Exec(context.Background(), `DROP ROLE `+ro.User)
	})
	return ro
}

// TestExplainMatchesTheGenerator checks explain, run as the read-only user,
// for every designated producer and batch against what the generator did.
func TestExplainMatchesTheGenerator(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg, net := scored(t)
	ro := pgtest.Pool(t, readOnly(t, cfg))
	if _, err := ro.Exec(ctx, `CREATE TABLE ro_probe (x int)`); err == nil {
		t.Fatal("the read-only user could create a table")
	}
	if len(net.Fates) != 12 {
		t.Fatalf("%d designated producers, want 12", len(net.Fates))
	}
	reasons := map[string]bool{}
	for key, fate := range net.Fates {
		ex, err := inspect.Explain(ctx, ro, key, start, start.Add(end))
		if err != nil {
			t.Fatalf("%s (%s %s): %v", key, fate.Kind, fate.Class, err)
		}
		if len(ex.Batches) != batches {
			t.Fatalf("%s: %d batches, want %d", key, len(ex.Batches), batches)
		}
		points := 0
		for i, b := range ex.Batches {
			w := coordinator.Window{Start: start.Add(time.Duration(i) * interval), End: start.Add(time.Duration(i+1) * interval)}
			if !b.WindowStart.Equal(w.Start) || !b.WindowEnd.Equal(w.End) {
				t.Fatalf("%s: batch %d window %s - %s, want %s - %s", key, i, b.WindowStart, b.WindowEnd, w.Start, w.End)
			}
			if b.Derived != (i < legacy) {
				t.Errorf("%s: batch %d derived = %v, want %v", key, i, b.Derived, i < legacy)
			}
			want := expect(net, key, w)
			if !reflect.DeepEqual(got(b), want) {
				t.Errorf("%s (%s %s) batch %d:\n got %+v\nwant %+v", key, fate.Kind, fate.Class, i, got(b), want)
			}
			reasons[b.Reason] = true
			if want.point {
				points++
			}
		}
		// points equals the producer's points_summary rows for those batches.
		var summaryRows int
		if err := ro.QueryRow(ctx, `SELECT count(*) FROM points_summary ps JOIN nodes n ON n.id = ps.node_id
			JOIN bot_logs b ON b.id = ps.bot_log_id WHERE n.block_producer_key = $1 AND b.batch_end_epoch >= $2 AND b.batch_end_epoch < $3`,
			key, start.Unix(), start.Add(end).Unix()).Scan(&summaryRows); err != nil {
			t.Fatal(err)
		}
		if ex.Summary.Points != summaryRows || ex.Summary.Points != points || ex.Summary.Batches != batches ||
			ex.Summary.Missed != batches-points || ex.Summary.Derived != legacy {
			t.Errorf("%s: summary %+v; want %d batches, %d points (%d points_summary rows), %d derived", key, ex.Summary, batches, points, summaryRows, legacy)
		}
	}
	for _, r := range []string{"point", "off_chain", "invalid", "unverified", "no_submission"} {
		if !reasons[r] {
			t.Errorf("reason %s never occurred", r)
		}
	}
	// The late producer's batches before its first submission are listed,
	// as no_submission.
	late, err := inspect.Explain(ctx, ro, fateKey(t, net, synthnet.FateLate, ""), start, start.Add(end))
	if err != nil {
		t.Fatal(err)
	}
	if b := late.Batches; len(b) != batches || b[0].Reason != "no_submission" || b[batches/2-1].Reason != "no_submission" || b[batches/2].Reason != "point" {
		t.Errorf("late producer: %+v", b)
	}

	// An unknown key.
	if _, err := inspect.Explain(ctx, ro, "B62qnobody", start, start.Add(time.Hour)); !errors.Is(err, inspect.ErrUnknownProducer) {
		t.Errorf("unknown key: %v, want ErrUnknownProducer", err)
	}

	// The default-like range: batches whose window END is in [from, to).
	key := fateKey(t, net, synthnet.FateDeepFork, "")
	ex, err := inspect.Explain(ctx, ro, key, start.Add(interval), start.Add(3*interval))
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.Batches) != 2 || !ex.Batches[0].WindowEnd.Equal(start.Add(interval)) || !ex.Batches[1].WindowEnd.Equal(start.Add(2*interval)) {
		t.Errorf("range [end of batch 1, end of batch 3) gave %d batches: %+v", len(ex.Batches), ex.Batches)
	}
}

func fateKey(t *testing.T, net *synthnet.Network, kind, class string) string {
	t.Helper()
	for k, f := range net.Fates {
		if f.Kind == kind && f.Class == class {
			return k
		}
	}
	t.Fatalf("no producer with fate %s %s", kind, class)
	return ""
}

// TestExplainUnknownWhenSubmissionsAreGone: a batch scored before evidence
// whose submissions were cleaned up says unknown, except where
// points_summary still shows a point.
func TestExplainUnknownWhenSubmissionsAreGone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg, net := scored(t)
	pool := pgtest.Pool(t, cfg)
	if _, err := pool.Exec(ctx, `DELETE FROM submissions WHERE submitted_at < $1`, start.Add(interval)); err != nil {
		t.Fatal(err)
	}
	for kind, want := range map[string]string{synthnet.FateDeepFork: "unknown", synthnet.FateUnverified: "unknown", synthnet.FateOffline: "point"} {
		ex, err := inspect.Explain(ctx, pool, fateKey(t, net, kind, ""), start, start.Add(end))
		if err != nil {
			t.Fatal(err)
		}
		b := ex.Batches[0]
		if b.Reason != want || !b.Derived || b.Submissions != 0 || b.Point != (want == "point") {
			t.Errorf("%s: first batch %+v, want reason %s, derived, no counts", kind, b, want)
		}
		if ex.Batches[1].Reason == "unknown" {
			t.Errorf("%s: second batch unknown although its submissions are kept", kind)
		}
	}
}

// TestExplainJSONContract checks the JSON shape the issue fixes.
func TestExplainJSONContract(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg, net := scored(t)
	ex, err := inspect.Explain(ctx, pgtest.Pool(t, cfg), fateKey(t, net, synthnet.FateFailing, "sok_digest_mismatch"), start, start.Add(end))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := inspect.WriteJSON(&out, ex); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(out.String()), &doc); err != nil {
		t.Fatal(err)
	}
	rfc3339Z := func(v any) bool {
		s, ok := v.(string)
		if !ok || !strings.HasSuffix(s, "Z") {
			return false
		}
		_, err := time.Parse(time.RFC3339, s)
		return err == nil
	}
	if doc["producer"] != ex.Producer || doc["from"] != "2024-06-01T00:00:00Z" || doc["to"] != "2024-06-01T03:00:00Z" {
		t.Errorf("producer/from/to: %v %v %v", doc["producer"], doc["from"], doc["to"])
	}
	bs, _ := doc["batches"].([]any)
	if len(bs) != batches {
		t.Fatalf("batches: %v", doc["batches"])
	}
	for _, raw := range bs {
		b := raw.(map[string]any)
		for field, ok := range map[string]bool{
			"bot_log_id": isNumber(b["bot_log_id"]), "window_start": rfc3339Z(b["window_start"]), "window_end": rfc3339Z(b["window_end"]),
			"point": isBool(b["point"]), "reason": isReason(b["reason"]), "submissions": isNumber(b["submissions"]),
			"valid": isNumber(b["valid"]), "invalid_by_class": isObject(b["invalid_by_class"]), "state_hashes": isArray(b["state_hashes"]),
		} {
			if !ok {
				t.Errorf("batch field %s = %#v", field, b[field])
			}
		}
	}
	last := bs[batches-1].(map[string]any)
	if last["reason"] != "invalid" || !reflect.DeepEqual(last["invalid_by_class"], map[string]any{"sok_digest_mismatch": float64(last["submissions"].(float64))}) {
		t.Errorf("last batch %v", last)
	}
	s, _ := doc["summary"].(map[string]any)
	if s["batches"] != float64(batches) || s["points"] != float64(0) || s["missed"] != float64(batches) || !isObject(s["by_reason"]) {
		t.Errorf("summary %v", s)
	}
}

func isNumber(v any) bool { _, ok := v.(float64); return ok }
func isBool(v any) bool   { _, ok := v.(bool); return ok }
func isObject(v any) bool { _, ok := v.(map[string]any); return ok }
func isArray(v any) bool  { _, ok := v.([]any); return ok }
func isReason(v any) bool {
	return slices.Contains([]string{"point", "off_chain", "invalid", "unverified", "no_submission", "unknown"}, v.(string))
}

// TestStatus reads the status as the read-only user while a coordinator
// lock is held.
func TestStatus(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg, _ := scored(t)
	store := &postgres.Database{Pool: pgtest.Pool(t, cfg)}
	w := coordinator.Window{Start: start.Add(batches * interval), End: start.Add((batches + 1) * interval)}
	if err := store.RecordFailure(ctx, start.Add(50*time.Hour), coordinator.Failure{Window: &w, Attempt: 1, Err: errors.New("loading submissions: connection reset")}); err != nil {
		t.Fatal(err)
	}
	release, err := postgres.Lock(ctx, pgtest.Pool(t, cfg), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	ro := pgtest.Pool(t, readOnly(t, cfg))
	lastEnd := start.Add(batches * interval)
	now := lastEnd.Add(2*time.Minute + 45*time.Minute) // two more windows are over, grace included
	st, err := inspect.ReadStatus(ctx, ro, now)
	if err != nil {
		t.Fatal(err)
	}
	if st.LastBatch == nil || !st.LastBatch.WindowEnd.Equal(lastEnd) || !st.LastBatch.WindowStart.Equal(lastEnd.Add(-interval)) {
		t.Fatalf("last batch %+v, want the window ending %s", st.LastBatch, lastEnd)
	}
	if st.BatchesToCatchUp != 2 || st.BehindSeconds != (47*time.Minute).Seconds() {
		t.Errorf("behind %vs, %d batches; want 2820s, 2", st.BehindSeconds, st.BatchesToCatchUp)
	}
	f := st.LastFailure
	if f == nil || f.Attempt != 2 || f.Final || f.Error != "loading submissions: connection reset" || !f.WindowStart.Equal(w.Start) {
		t.Errorf("last failure %+v", f)
	}
	host, _ := os.Hostname()
	if h := st.LockHolder; h == nil || h.PID == 0 || h.ApplicationName != "coordinator pid="+strconv.Itoa(os.Getpid())+" host="+host {
		t.Errorf("lock holder %+v, want this process (pid %d, host %s)", st.LockHolder, os.Getpid(), host)
	}
	if len(st.Recent) != batches {
		t.Fatalf("%d recent batches, want %d", len(st.Recent), batches)
	}
	for i, b := range st.Recent {
		if b.Evidence != (i < batches-legacy) {
			t.Errorf("recent batch %d: evidence %v", i, b.Evidence)
		}
	}
	// Every failing class occurs in the last batch: 8 classes, each with
	// the designated producer's submissions of the batch.
	if got := len(st.Recent[0].InvalidByClass); got != 8 {
		t.Errorf("last batch classes %v, want 8", st.Recent[0].InvalidByClass)
	}
	// The migrator's own account of the version (a no-op run).
	res, err := postgres.Migrate(ctx, pgtest.Pool(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Applied) != 0 || st.SchemaVersion != res.Current {
		t.Errorf("schema version %d, want %d (applied %v)", st.SchemaVersion, res.Current, res.Applied)
	}
	var text strings.Builder
	if err := inspect.WriteStatus(&text, st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Last batch: #", "2 batches to catch up", "attempt 2: loading submissions: connection reset",
		"coordinator pid=" + strconv.Itoa(os.Getpid()), "(scored before evidence was recorded)", "sok_digest_mismatch"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("status text lacks %q:\n%s", want, text.String())
		}
	}
}
