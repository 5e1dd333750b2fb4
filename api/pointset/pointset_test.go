package pointset_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/api/pointset"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const (
	start    = 1_717_200_000
	interval = 1200
)

// addBatches inserts n 20-minute batches after the latest (every 7th not
// scored: files_processed -1) and a point for each producer with its own
// probability, creating producers up to producers.
func addBatches(t *testing.T, pool *pgxpool.Pool, rng *rand.Rand, n, producers int) {
	t.Helper()
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `INSERT INTO nodes (block_producer_key) SELECT 'B62q' || i FROM generate_series((SELECT count(*) + 1 FROM nodes), $1) i`, producers); err != nil {
		t.Fatal(err)
	}
	for range n {
		var id int64
		if err := pool.QueryRow(ctx, `INSERT INTO bot_logs (files_processed, batch_start_epoch, batch_end_epoch)
			SELECT CASE WHEN count(*) % 7 = 3 THEN -1 ELSE 10 END, $1 + count(*) * $2, $1 + (count(*) + 1) * $2 FROM bot_logs RETURNING id`,
			start, interval).Scan(&id); err != nil {
			t.Fatal(err)
		}
		var nodes []int64
		for node := int64(1); node <= int64(producers); node++ {
			if rng.IntN(100) < int(node%10)*10+5 {
				nodes = append(nodes, node)
			}
		}
		if _, err := pool.Exec(ctx, `INSERT INTO points_summary (bot_log_id, node_id) SELECT $1, unnest($2::int8[])`, id, nodes); err != nil {
			t.Fatal(err)
		}
	}
}

func inTx[T any](t *testing.T, pool *pgxpool.Pool, f func(tx pgx.Tx) (T, error)) T {
	t.Helper()
	var v T
	err := pgx.BeginTxFunc(context.Background(), pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		v, err = f(tx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// answers is everything the set answers, computed by SQL over the tables
// (want) or by the set (got), as lines to compare.
func sqlAnswers(t *testing.T, pool *pgxpool.Pool, windows [][2]int64) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	for _, w := range windows {
		rows, err := pool.Query(ctx, `SELECT format('window %s-%s surveys %s', $1::bigint, $2::bigint,
				(SELECT count(*) FROM bot_logs WHERE files_processed > -1 AND batch_start_epoch >= $1 AND batch_end_epoch <= $2))
			UNION ALL (
			SELECT format('window %s-%s node %s points %s last by the end %s', $1::bigint, $2::bigint, n.id,
				(SELECT count(*) FROM points_summary ps JOIN bot_logs b ON b.id = ps.bot_log_id
				 WHERE ps.node_id = n.id AND b.files_processed > -1 AND b.batch_start_epoch >= $1 AND b.batch_end_epoch <= $2),
				coalesce((SELECT b.id FROM points_summary ps JOIN bot_logs b ON b.id = ps.bot_log_id
				 WHERE ps.node_id = n.id AND b.files_processed > -1 AND b.batch_end_epoch <= $2
				 ORDER BY b.batch_end_epoch DESC, b.id DESC LIMIT 1)::text, 'none'))
			FROM nodes n ORDER BY n.id)`, w[0], w[1])
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, lines...)
	}
	rows, err := pool.Query(ctx, `SELECT format('node %s first %s last %s', n.id,
			coalesce((SELECT b.id FROM points_summary ps JOIN bot_logs b ON b.id = ps.bot_log_id
				WHERE ps.node_id = n.id AND b.files_processed > -1 ORDER BY b.batch_end_epoch, b.id LIMIT 1)::text, 'none'),
			coalesce((SELECT b.id FROM points_summary ps JOIN bot_logs b ON b.id = ps.bot_log_id
				WHERE ps.node_id = n.id AND b.files_processed > -1 ORDER BY b.batch_end_epoch DESC, b.id DESC LIMIT 1)::text, 'none'))
		FROM nodes n ORDER BY n.id`)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return append(out, lines...)
}

func setAnswers(s *pointset.Set, windows [][2]int64, producers int) []string {
	var out []string
	for _, w := range windows {
		m := s.Window(w[0], w[1])
		out = append(out, fmt.Sprintf("window %d-%d surveys %d", w[0], w[1], m.Surveys()))
		each := map[int64]int{}
		s.EachPoints(m, func(node int64, points int) { each[node] = points })
		for node := int64(1); node <= int64(producers); node++ {
			points := s.Points(node, m)
			if each[node] != points {
				points = -1000 - each[node] // EachPoints disagrees with Points
			}
			last := "none"
			if b, ok := s.Last(node, w[1]); ok {
				last = fmt.Sprint(b.ID)
			}
			out = append(out, fmt.Sprintf("window %d-%d node %d points %d last by the end %s", w[0], w[1], node, points, last))
		}
	}
	for node := int64(1); node <= int64(producers); node++ {
		first, last := "none", "none"
		if b, ok := s.First(node); ok {
			first = fmt.Sprint(b.ID)
		}
		if b, ok := s.Last(node, s.Latest().End); ok {
			last = fmt.Sprint(b.ID)
		}
		out = append(out, fmt.Sprintf("node %d first %s last %s", node, first, last))
	}
	return out
}

func diff(t *testing.T, label string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d answers, want %d", label, len(got), len(want))
	}
	bad := 0
	for i := range got {
		if got[i] != want[i] {
			if bad++; bad <= 10 {
				t.Errorf("%s: got %q, want %q", label, got[i], want[i])
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d answers differ", label, bad, len(got))
	}
}

// windows covers every batch, none, the edges (a window boundary inside a
// batch, on a batch boundary) and windows reaching past the latest batch.
func windows(batches int) [][2]int64 {
	end := int64(start + batches*interval)
	return [][2]int64{
		{start, end}, {0, 1 << 40}, {end - 86400, end}, {start + 5*interval, start + 17*interval},
		{start + 5*interval + 1, start + 17*interval - 1}, {end, end}, {end + interval, end + 2*interval},
		{start + 60*interval, start + 130*interval},
	}
}

// TestSetEqualsSQL loads a set, extends it past its bitmaps' room (so they
// are laid out again) with new producers, and compares every answer with
// SQL over the tables after each step; the set before an extension keeps
// its answers.
func TestSetEqualsSQL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	rng := rand.New(rand.NewPCG(3, 4))
	// Ids as a long-running database has them (ids times a prime overflow
	// 32 bits).
	if _, err := pool.Exec(ctx, `SELECT setval('bot_logs_id_seq', 1000000)`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO bot_logs (files_processed, batch_start_epoch, batch_end_epoch) VALUES (-1, $1, $1)`, start); err != nil {
		t.Fatal(err)
	}
	addBatches(t, pool, rng, 50, 40)
	ws := windows(50)

	s := inTx(t, pool, func(tx pgx.Tx) (*pointset.Set, error) { return pointset.Load(ctx, tx) })
	first := sqlAnswers(t, pool, ws)
	diff(t, "loaded", setAnswers(s, ws, 40), first)
	var rows int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM points_summary ps JOIN bot_logs b ON b.id = ps.bot_log_id WHERE b.files_processed > -1`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if s.Rows() != rows || rows < 500 || len(s.Batches()) != 43 { // 50 batches, 7 not scored
		t.Errorf("set of %d points and %d batches, want %d and 43", s.Rows(), len(s.Batches()), rows)
	}

	// Nothing new: the same set.
	same := inTx(t, pool, func(tx pgx.Tx) (*pointset.Set, error) {
		n, ok, err := s.Extend(ctx, tx)
		if !ok && err == nil {
			err = fmt.Errorf("extending with nothing new refused")
		}
		return n, err
	})
	diff(t, "extended by nothing", setAnswers(same, ws, 40), first)

	addBatches(t, pool, rng, 120, 55)
	ws = windows(170)
	next := inTx(t, pool, func(tx pgx.Tx) (*pointset.Set, error) {
		n, ok, err := s.Extend(ctx, tx)
		if !ok && err == nil {
			err = fmt.Errorf("extending by new batches refused")
		}
		return n, err
	})
	diff(t, "extended", setAnswers(next, ws, 55), sqlAnswers(t, pool, ws))
	diff(t, "the set before", setAnswers(s, windows(50), 40), first)
	if !next.Covers(s.Latest()) || s.Covers(next.Latest()) {
		t.Errorf("latest %v covers %v", next.Latest(), s.Latest())
	}

	// A batch removed (the original's cleanup): the set must be loaded anew.
	if _, err := pool.Exec(ctx, `DELETE FROM points_summary WHERE bot_log_id = 1000003; DELETE FROM bot_logs WHERE id = 1000003`); err != nil {
		t.Fatal(err)
	}
	inTx(t, pool, func(tx pgx.Tx) (*pointset.Set, error) {
		n, ok, err := next.Extend(ctx, tx)
		if ok {
			err = fmt.Errorf("extended over a removed batch")
		}
		return n, err
	})
	again := inTx(t, pool, func(tx pgx.Tx) (*pointset.Set, error) { return pointset.Load(ctx, tx) })
	diff(t, "loaded again", setAnswers(again, ws, 55), sqlAnswers(t, pool, ws))

	// A batch scored after all (a rescore), a batch's window changed: the
	// same.
	for _, change := range []string{
		`UPDATE bot_logs SET files_processed = 10 WHERE id = (SELECT min(id) FROM bot_logs WHERE files_processed = -1 AND id > 1)`,
		`UPDATE bot_logs SET batch_start_epoch = batch_start_epoch + 1 WHERE id = 1000020`,
	} {
		if _, err := pool.Exec(ctx, change); err != nil {
			t.Fatal(err)
		}
		inTx(t, pool, func(tx pgx.Tx) (*pointset.Set, error) {
			n, ok, err := again.Extend(ctx, tx)
			if ok {
				err = fmt.Errorf("extended over %s", change)
			}
			return n, err
		})
		again = inTx(t, pool, func(tx pgx.Tx) (*pointset.Set, error) { return pointset.Load(ctx, tx) })
	}
	diff(t, "loaded after the changes", setAnswers(again, ws, 55), sqlAnswers(t, pool, ws))
}
