package api_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/api/apitest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
)

// pointAnswers compares what serve answers from its points in memory (the
// leaderboards of 24h, the default 2d and 7d; each producer's window scores
// and first and last batch with a point) with the test's own computation
// from the tables, and returns the differences.
func pointAnswers(t *testing.T, base string, pool *pgxpool.Pool, keys []string) []string {
	t.Helper()
	var diffs []string
	lines := map[int]map[string]string{}
	for _, w := range []struct {
		name string
		days int
	}{{"24h", 1}, {"2d", 2}, {"7d", 7}, {"30d", 30}, {"90d", 90}} {
		surveys, want := expectedBoard(t, pool, w.days)
		lines[w.days] = map[string]string{}
		for _, l := range want {
			f := strings.SplitN(l, "|", 3)
			lines[w.days][f[1]] = f[2]
		}
		if w.days > 7 {
			continue
		}
		b := getJSON[board](t, base+"/leaderboard?limit=1000&window="+w.name)
		var got []string
		for _, it := range b.Items {
			got = append(got, it.line())
		}
		if b.Surveys != surveys || !slices.Equal(got, want) {
			diffs = append(diffs, fmt.Sprintf("leaderboard %s: %d surveys, want %d\n got %v\nwant %v", w.name, b.Surveys, surveys, got, want))
		}
	}
	ctx := context.Background()
	for _, key := range keys {
		var first, last *int64
		err := pool.QueryRow(ctx, `SELECT
			(SELECT b.id FROM points_summary ps JOIN bot_logs b ON b.id = ps.bot_log_id
			 WHERE ps.node_id = n.id AND b.files_processed > -1 ORDER BY b.batch_end_epoch, b.id LIMIT 1),
			(SELECT b.id FROM points_summary ps JOIN bot_logs b ON b.id = ps.bot_log_id
			 WHERE ps.node_id = n.id AND b.files_processed > -1 ORDER BY b.batch_end_epoch DESC, b.id DESC LIMIT 1)
			FROM nodes n WHERE n.block_producer_key = $1`, key).Scan(&first, &last)
		if err == pgx.ErrNoRows {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		p := getJSON[producerPoints](t, base+"/producers/"+key)
		for i, d := range []int{1, 7, 30, 90} {
			want, ok := lines[d][key]
			if !ok {
				want = "0|0.00"
			}
			if got := fmt.Sprintf("%d|%s", p.Scores[i].Points, pct(p.Scores[i].ScorePercent)); got != want {
				diffs = append(diffs, fmt.Sprintf("%s %s: %s, want %s", key, p.Scores[i].Window, got, want))
			}
		}
		if str(id(p.First)) != str(first) || str(id(p.Last)) != str(last) {
			diffs = append(diffs, fmt.Sprintf("%s: first and last point batches %s %s, want %s %s", key, str(id(p.First)), str(id(p.Last)), str(first), str(last)))
		}
	}
	return diffs
}

type batchID struct {
	ID int64 `json:"bot_log_id"`
}

type producerPoints struct {
	Scores []struct {
		Window       string   `json:"window"`
		Points       int      `json:"points"`
		ScorePercent *float64 `json:"score_percent"`
	} `json:"scores"`
	First *batchID `json:"first_point_batch"`
	Last  *batchID `json:"last_point_batch"`
}

func id(b *batchID) *int64 {
	if b == nil {
		return nil
	}
	return &b.ID
}

func str(p *int64) string {
	if p == nil {
		return "none"
	}
	return fmt.Sprint(*p)
}

// TestPointsFollowBatchesAndRescores: serve's points in memory, loaded at
// the first request, give the same answers as the tables after more batches
// are committed (extended) and after a rescore rewrites committed batches
// (loaded anew on the rescore's notification).
func TestPointsFollowBatchesAndRescores(t *testing.T) {
	t.Parallel()
	s := seed(t, 30)
	ctx := context.Background()
	ts, _ := serve(t, s.Cfg, s.Pool)
	base := ts.URL + "/api/v1"
	keys := s.Net.Producers[:40]

	if d := pointAnswers(t, base, s.Pool, keys); len(d) > 0 {
		t.Fatalf("after the load:\n%s", strings.Join(d, "\n"))
	}
	s.Next(t, 4)
	if d := pointAnswers(t, base, s.Pool, keys); len(d) > 0 {
		t.Fatalf("after 4 more batches:\n%s", strings.Join(d, "\n"))
	}

	// Producers lose their submissions of batches 20 to 26 (of 34); a
	// rescore takes their points away.
	from, to := apitest.Start.Add(19*apitest.Interval), apitest.Start.Add(26*apitest.Interval)
	if _, err := s.Pool.Exec(ctx, `DELETE FROM submissions WHERE submitter = ANY($1) AND submitted_at >= $2 AND submitted_at < $3`,
		keys[:20], from, to); err != nil {
		t.Fatal(err)
	}
	rep, err := postgres.Rescore(ctx, s.Pool, postgres.RescoreOptions{From: from.Add(apitest.Interval), To: to.Add(apitest.Interval),
		Interval: apitest.Interval, UptimeDays: uptimeDays, Bulk: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.SummaryRemoved < 20 {
		t.Fatalf("weak test: the rescore removed %d points", rep.SummaryRemoved)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		d := pointAnswers(t, base, s.Pool, keys)
		if len(d) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("20 s after a rescore removed %d points:\n%s", rep.SummaryRemoved, strings.Join(d, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
