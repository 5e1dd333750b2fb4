package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

func ptr[T any](v T) *T { return &v }

// flippedNet returns a network's verified submissions and the same with
// the verification of windows [from, to) changed: the submissions of one
// producer in seven made invalid in part of the range, every rejected one
// made valid, a producer that only ever submitted in the range (and alone
// named a fork) made invalid throughout, and one that was always rejected
// made valid.
func flippedNet(batches, producers, from, to int) (orig, flipped []coordinator.Submission) {
	net := synthnet.Generate(synthnet.Params{Seed: 33, Producers: producers, Start: rangeStart,
		Duration: time.Duration(batches) * rangeInterval, InvalidShare: 0.05, ForkShare: 0.06})
	orig = net.Verified()
	window := func(s coordinator.Submission) int { return int(s.SubmittedAt.Sub(rangeStart) / rangeInterval) }
	// The two producers of the range only, named after the first valid
	// submission of each of their windows.
	lonely, latecomer := "B62qLONELYPRODUCERxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx01", "B62qLATECOMERxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx02"
	var extra []coordinator.Submission
	for b := from + 2; b < from+7; b++ {
		var model *coordinator.Submission
		for i := range orig {
			if window(orig[i]) == b && orig[i].Verified != nil && *orig[i].Verified {
				model = &orig[i]
				break
			}
		}
		at := rangeStart.Add(time.Duration(b)*rangeInterval + 7*time.Minute + 123*time.Microsecond)
		l := *model
		l.Submitter, l.SubmittedAt, l.CreatedAt = lonely, at, ptr(at.Add(-time.Second))
		if b == from+4 { // a fork only it names
			l.StateHash = ptr("3NLxneLyFxrkxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
			l.Parent = model.StateHash
		}
		late := l
		late.Submitter, late.StateHash, late.Parent = latecomer, model.StateHash, model.Parent
		late.Verified, late.ValidationError = ptr(false), ptr("block not found")
		late.Height, late.Slot = nil, nil
		extra = append(extra, l, late)
	}
	orig = append(orig, extra...)
	slices.SortFunc(orig, func(a, b coordinator.Submission) int {
		if c := a.SubmittedAt.Compare(b.SubmittedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Submitter, b.Submitter)
	})
	blocks := map[string]*synthnet.Submission{}
	for i := range net.Submissions {
		s := &net.Submissions[i]
		blocks[s.Submitter+s.SubmittedAt.String()] = s
	}
	for _, s := range orig {
		b := window(s)
		if b >= from && b < to {
			switch {
			case s.Submitter == lonely:
				s.Verified, s.ValidationError = ptr(false), ptr("snark verification failed")
			case s.Submitter == latecomer:
				s.Verified, s.ValidationError = ptr(true), nil
				s.Height, s.Slot = ptr(int64(100000+b)), ptr(int64(200000+b))
			case s.Verified != nil && !*s.Verified:
				g := blocks[s.Submitter+s.SubmittedAt.String()]
				s.Verified, s.ValidationError = ptr(true), nil
				s.StateHash, s.Parent, s.Height, s.Slot = ptr(g.Block.Hash), ptr(g.Block.Parent), ptr(g.Block.Height), ptr(g.Block.Slot)
			case b >= from+5 && b < from+9 && s.Submitter[len(s.Submitter)-1]%7 == 0:
				s.Verified, s.ValidationError = ptr(false), ptr("snark verification failed")
			}
		}
		flipped = append(flipped, s)
	}
	return orig, flipped
}

// storeVerification overwrites the verification columns of subs.
func storeVerification(t *testing.T, pool *pgxpool.Pool, subs []coordinator.Submission) {
	t.Helper()
	n := len(subs)
	who, at := make([]string, n), make([]time.Time, n)
	sh, par, ve := make([]*string, n), make([]*string, n), make([]*string, n)
	h, sl := make([]*int64, n), make([]*int64, n)
	v := make([]*bool, n)
	for i, s := range subs {
		who[i], at[i], sh[i], par[i], ve[i], h[i], sl[i], v[i] = s.Submitter, s.SubmittedAt, s.StateHash, s.Parent, s.ValidationError, s.Height, s.Slot, s.Verified
	}
	exec(t, pool, `UPDATE submissions s SET state_hash = u.sh, parent = u.par, validation_error = u.ve, height = u.h, slot = u.sl, verified = u.v
		FROM unnest($1::text[], $2::timestamp[], $3::text[], $4::text[], $5::text[], $6::int4[], $7::int4[], $8::bool[]) AS u(who, at, sh, par, ve, h, sl, v)
		WHERE s.submitter = u.who AND s.submitted_at = u.at`, who, at, sh, par, ve, h, sl, v)
}

// rawDigest is every byte of the coordinator's tables that a query can
// see (ids, created_at, physical row positions) and the sequences.
func rawDigest(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var out []string
	for _, table := range []string{"bot_logs", "statehash", "bot_logs_statehash", "nodes", "points", "points_summary", "score_history", "submissions", "coordinator_scoreboard"} {
		var d string
		if err := pool.QueryRow(context.Background(), `SELECT coalesce(md5(string_agg(ctid::text || xmin::text || t::text, ',' ORDER BY ctid)), '-') FROM `+table+` t`).Scan(&d); err != nil {
			t.Fatal(err)
		}
		out = append(out, table+"="+d)
	}
	for _, seq := range []string{"bot_logs_id_seq", "statehash_id_seq", "nodes_id_seq", "points_id_seq", "score_history_id_seq", "bot_logs_statehash_id_seq"} {
		var v int64
		if err := pool.QueryRow(context.Background(), `SELECT last_value FROM `+seq).Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s=%d", seq, v))
	}
	return strings.Join(out, "\n")
}

// expectedChanges derives, from the snapshots of the database before the
// rescore and of a scratch run on the changed data, which producers gain or
// lose points in the range [from, to) of batch ends and how their
// score_percent changes.
func expectedChanges(before, after pgtest.Snapshot, from, to time.Time) []postgres.ProducerChange {
	inRange := func(rows []string) map[string][]time.Time {
		out := map[string][]time.Time{}
		for _, r := range rows { // batch_end_epoch|producer
			var end int64
			var who string
			f := strings.SplitN(r, "|", 2)
			fmt.Sscan(f[0], &end)
			who = f[1]
			at := time.Unix(end, 0).UTC()
			if !at.Before(from) && at.Before(to) {
				out[who] = append(out[who], at)
			}
		}
		return out
	}
	pct := func(rows []string) map[string]*string {
		out := map[string]*string{}
		for _, r := range rows { // key|score|percent|...
			f := strings.Split(r, "|")
			if f[2] != "NULL" {
				out[f[0]] = ptr(f[2])
			} else {
				out[f[0]] = nil
			}
		}
		return out
	}
	b, a := inRange(before["points_summary"]), inRange(after["points_summary"])
	pb, pa := pct(before["nodes"]), pct(after["nodes"])
	who := map[string]bool{}
	for _, m := range []map[string][]time.Time{a, b} {
		for k := range m {
			who[k] = true
		}
	}
	for _, m := range []map[string]*string{pa, pb} {
		for k := range m {
			who[k] = true
		}
	}
	var out []postgres.ProducerChange
	for k := range who {
		c := postgres.ProducerChange{Producer: k, PointsBefore: len(b[k]), PointsAfter: len(a[k]),
			ScorePercentBefore: pb[k], ScorePercentAfter: pa[k], BatchesGained: []time.Time{}, BatchesLost: []time.Time{}}
		for _, t := range a[k] {
			if !slices.ContainsFunc(b[k], t.Equal) {
				c.BatchesGained = append(c.BatchesGained, t)
			}
		}
		for _, t := range b[k] {
			if !slices.ContainsFunc(a[k], t.Equal) {
				c.BatchesLost = append(c.BatchesLost, t)
			}
		}
		slices.SortFunc(c.BatchesGained, time.Time.Compare)
		slices.SortFunc(c.BatchesLost, time.Time.Compare)
		same := func(x, y *string) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
		if len(c.BatchesGained) == 0 && len(c.BatchesLost) == 0 && same(c.ScorePercentBefore, c.ScorePercentAfter) {
			continue
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(x, y postgres.ProducerChange) int { return strings.Compare(x.Producer, y.Producer) })
	return out
}

func describe(c []postgres.ProducerChange) string {
	var out []string
	s := func(p *string) string {
		if p == nil {
			return "null"
		}
		return *p
	}
	for _, x := range c {
		slices.SortFunc(x.BatchesGained, time.Time.Compare)
		slices.SortFunc(x.BatchesLost, time.Time.Compare)
		out = append(out, fmt.Sprintf("%s points %d->%d percent %s->%s gained %v lost %v", x.Producer, x.PointsBefore, x.PointsAfter,
			s(x.ScorePercentBefore), s(x.ScorePercentAfter), x.BatchesGained, x.BatchesLost))
	}
	return strings.Join(out, "\n")
}

// TestRescoreMatchesScratch: after the verification of middle windows
// changed, a dry run reports exactly the producers whose outcome changes
// (derived from a scratch run on the changed data) and leaves every byte
// as it was; rescore then makes the database identical, table by table, to
// the scratch run; a second rescore finds nothing to change.
func TestRescoreMatchesScratch(t *testing.T) {
	t.Parallel()
	const batches, from, to = 90, 30, 50
	orig, flipped := flippedNet(batches, 80, from, to)
	for _, bulk := range []bool{false, true} {
		t.Run(fmt.Sprintf("bulk_points=%v", bulk), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			scratch := seedDB(t, flipped)
			if err := rangeEngine(scratch, bulk, 1, 0, 0).Run(ctx, batches); err != nil {
				t.Fatal(err)
			}
			want := pgtest.TakeSnapshot(t, scratch)

			pool := seedDB(t, orig)
			if err := rangeEngine(pool, bulk, 1, 0, 0).Run(ctx, batches); err != nil {
				t.Fatal(err)
			}
			storeVerification(t, pool, flipped)
			before := pgtest.TakeSnapshot(t, pool)
			if d := want.Diff(before); d == "" {
				t.Fatal("weak test: the changed verification changes nothing")
			}
			raw := rawDigest(t, pool)
			opts := postgres.RescoreOptions{From: rangeStart.Add((from + 1) * rangeInterval), To: rangeStart.Add((to + 1) * rangeInterval),
				Interval: rangeInterval, UptimeDays: 1, Bulk: bulk, DryRun: true, ChunkBatches: 7, HistoryFlushRows: 1}

			dry, err := postgres.Rescore(ctx, pool, opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := rawDigest(t, pool); got != raw {
				t.Fatalf("the dry run changed the database:\n%s\nvs\n%s", got, raw)
			}
			wantChanges := expectedChanges(before, want, opts.From, opts.To)
			if g, w := describe(dry.Producers), describe(wantChanges); g != w {
				t.Fatalf("dry run reports:\n%s\nwant:\n%s", g, w)
			}
			for _, must := range []string{"B62qLONELY", "B62qLATECOMER"} {
				if !strings.Contains(describe(dry.Producers), must) {
					t.Errorf("weak test: %s is not among the changes", must)
				}
			}
			if dry.Batches != to-from+dry.Extended {
				t.Errorf("dry run re-scored %d batches (%d extended), want %d", dry.Batches, dry.Extended, to-from)
			}

			opts.DryRun = false
			rep, err := postgres.Rescore(ctx, pool, opts)
			if err != nil {
				t.Fatal(err)
			}
			if d := want.Diff(pgtest.TakeSnapshot(t, pool)); d != "" {
				t.Fatalf("rescored database differs from a scratch run:\n%s", d)
			}
			if g, w := describe(rep.Producers), describe(wantChanges); g != w {
				t.Errorf("rescore reports:\n%s\nwant:\n%s", g, w)
			}
			if rep.NodesRemoved != 1 || rep.StateHashesRemoved < 1 {
				t.Errorf("nodes removed %d, state hashes removed %d; want 1 and at least 1", rep.NodesRemoved, rep.StateHashesRemoved)
			}

			// Nothing left to change: no producer, no write.
			raw = rawDigest(t, pool)
			opts.DryRun = true
			again, err := postgres.Rescore(ctx, pool, opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(again.Producers) != 0 || again.Changed() {
				t.Fatalf("a second dry run still finds changes: %+v", again)
			}
			if got := rawDigest(t, pool); got != raw {
				t.Fatalf("a dry run with nothing to change changed the database")
			}
			opts.DryRun = false
			if _, err := postgres.Rescore(ctx, pool, opts); err != nil {
				t.Fatal(err)
			}
			if d := want.Diff(pgtest.TakeSnapshot(t, pool)); d != "" {
				t.Fatalf("a second rescore changed the result:\n%s", d)
			}
			// The loop goes on exactly from the rescored database.
			for _, p := range []*pgxpool.Pool{scratch, pool} {
				if _, err := pgtest.InsertSubmissions(ctx, p, synthnet.Generate(synthnet.Params{Seed: 34, Producers: 30,
					Start: rangeStart.Add(batches * rangeInterval), Duration: 2 * rangeInterval}).Verified()); err != nil {
					t.Fatal(err)
				}
				if err := rangeEngine(p, bulk, 1, 0, 0).Run(ctx, 2); err != nil {
					t.Fatal(err)
				}
			}
			if d := pgtest.TakeSnapshot(t, scratch).Diff(pgtest.TakeSnapshot(t, pool)); d != "" {
				t.Fatalf("batches after a rescore differ:\n%s", d)
			}
		})
	}
}

func TestRescoreRefusesTheLoopsWindow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := seedDB(t, nil)
	if err := rangeEngine(pool, false, 1, 0, 0).Run(ctx, 3); err != nil {
		t.Fatal(err)
	}
	// The loop works on the window ending at start + 4 intervals.
	_, err := postgres.Rescore(ctx, pool, postgres.RescoreOptions{From: rangeStart, To: rangeStart.Add(4*rangeInterval + time.Second),
		Interval: rangeInterval, UptimeDays: 1})
	if err == nil || !strings.Contains(err.Error(), "window the survey loop is working on") {
		t.Fatalf("rescore into the loop's window: %v", err)
	}
	rep, err := postgres.Rescore(ctx, pool, postgres.RescoreOptions{From: rangeStart, To: rangeStart.Add(4 * rangeInterval),
		Interval: rangeInterval, UptimeDays: 1})
	if err != nil || rep.Batches != 3 || rep.Changed() {
		t.Fatalf("rescore of every committed batch: %+v, %v", rep, err)
	}
}
