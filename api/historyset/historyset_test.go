package historyset_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/api/historyset"
	"github.com/delegation-program/uptime-coordinator/api/pointset"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const start = 1_717_200_000 // 2024-06-01T00:00:00Z

func batch(id int64) pointset.Batch {
	return pointset.Batch{ID: id, Start: start + (id-1)*1200, End: start + id*1200}
}

func update(t *testing.T, pool *pgxpool.Pool, prev *historyset.Set, ids ...int64) *historyset.Set {
	t.Helper()
	var batches []pointset.Batch
	for _, id := range ids {
		batches = append(batches, batch(id))
	}
	var s *historyset.Set
	err := pgx.BeginTxFunc(context.Background(), pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		s, err = historyset.Update(context.Background(), tx, prev, batches)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func lines(s *historyset.Set, node int64, from, to int64) []string {
	var out []string
	for _, p := range s.Points(node, time.Unix(from, 0), time.Unix(to, 0)) {
		pct := "null"
		if p.ScorePercent != nil {
			pct = fmt.Sprintf("%.2f", *p.ScorePercent)
		}
		out = append(out, fmt.Sprintf("%s|%d|%s", p.At.Format("15:04"), p.Score, pct))
	}
	return out
}

func TestPoints(t *testing.T) {
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	ctx := context.Background()
	// score_history at the ends of batches 1 to 6 for nodes 1 and 2 (node
	// 2 from batch 3 on; batch 4's score NULL for node 1, its percent NULL
	// for node 2).
	if _, err := pool.Exec(ctx, `INSERT INTO nodes (id, block_producer_key) VALUES (1, 'B62qa'), (2, 'B62qb')`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO score_history (node_id, score_at, score, score_percent)
		SELECT n, to_timestamp($1 + b * 1200) AT TIME ZONE 'UTC', CASE WHEN n = 1 AND b = 4 THEN NULL ELSE b * 10 + n END,
			CASE WHEN n = 2 AND b = 4 THEN NULL ELSE (b * 10 + n)::numeric / 7 END
		FROM generate_series(1, 6) b CROSS JOIN generate_series(1, 2) n WHERE n = 1 OR b >= 3`, start); err != nil {
		t.Fatal(err)
	}
	s := update(t, pool, nil, 2, 4, 5)
	if got, want := lines(s, 1, start, start+6*1200), []string{"00:40|21|3.00", "01:20|0|5.86", "01:40|51|7.29"}; !slices.Equal(got, want) {
		t.Errorf("node 1: %v, want %v", got, want)
	}
	if got, want := lines(s, 2, start, start+6*1200), []string{"01:20|42|null", "01:40|52|7.43"}; !slices.Equal(got, want) {
		t.Errorf("node 2: %v, want %v", got, want)
	}
	if got, want := lines(s, 1, start+4*1200, start+5*1200), []string{"01:20|0|5.86", "01:40|51|7.29"}; !slices.Equal(got, want) {
		t.Errorf("node 1 in [batch 4's end, batch 5's end]: %v, want %v", got, want)
	}
	// The next set keeps batches 4 and 5 without reading them again (their
	// rows are changed in the table, the set still has the old ones), reads
	// batch 6 and drops 2.
	if _, err := pool.Exec(ctx, `UPDATE score_history SET score = 999`); err != nil {
		t.Fatal(err)
	}
	next := update(t, pool, s, 4, 5, 6)
	if got, want := lines(next, 1, start, start+6*1200), []string{"01:20|0|5.86", "01:40|51|7.29", "02:00|999|8.71"}; !slices.Equal(got, want) {
		t.Errorf("next, node 1: %v, want %v", got, want)
	}
	if got := lines(next, 3, start, start+6*1200); got != nil {
		t.Errorf("node 3 (no row): %v", got)
	}
}
