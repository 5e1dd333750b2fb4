package api

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/singleflight"
)

const day = 24 * 60 * 60

// ErrNotFound is returned for an unknown producer or batch.
var ErrNotFound = errors.New("not found")

// Reader answers the read API's questions from the coordinator's tables. It
// only reads (every query runs in a read-only transaction), so it works with
// the read-only role. Leaderboards are computed once per window and batch and
// kept in memory until the next batch lands; everything else is an indexed
// query per request.
type Reader struct {
	Pool *pgxpool.Pool
	// UptimeDays is UPTIME_DAYS_FOR_SCORE: the default leaderboard window.
	UptimeDays int

	mu     sync.Mutex
	boards map[int]*Board // by window days, for the batch in Board.Batch
	flight singleflight.Group
}

// maxCachedBoards bounds the leaderboards kept in memory (the standard
// windows plus a few arbitrary ones).
const maxCachedBoards = 12

// BatchRef names one bot_logs row.
type BatchRef struct {
	ID    int64     `json:"bot_log_id"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Latest is the newest bot_logs row (by batch end); ID 0 when there is none.
type Latest struct {
	ID  int64
	End time.Time
}

// ETag is the entity tag of everything derived from the database as of this
// batch.
func (l Latest) ETag() string { return "b" + strconv.FormatInt(l.ID, 10) }

type queryer interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Latest reads the newest bot_logs row.
func (r *Reader) Latest(ctx context.Context) (Latest, error) { return latest(ctx, r.Pool) }

func latest(ctx context.Context, q queryer) (Latest, error) {
	var l Latest
	var end int64
	err := q.QueryRow(ctx, `SELECT id, batch_end_epoch FROM bot_logs WHERE batch_end_epoch IS NOT NULL
		ORDER BY batch_end_epoch DESC, id DESC LIMIT 1`).Scan(&l.ID, &end)
	if errors.Is(err, pgx.ErrNoRows) {
		return Latest{}, nil
	}
	if err != nil {
		return Latest{}, fmt.Errorf("reading the latest batch: %w", err)
	}
	l.End = time.Unix(end, 0).UTC()
	return l, nil
}

// read runs f in one read-only repeatable-read transaction, so that every
// query of a response sees the same batches.
func (r *Reader) read(ctx context.Context, f func(tx pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, r.Pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, f)
}

// surveys counts the batches of the window of days ending at end, as the
// coordinator does: files_processed > -1, inside [end - days, end].
func surveys(ctx context.Context, q queryer, end time.Time, days int) (int, error) {
	var n int
	e := end.Unix()
	err := q.QueryRow(ctx, `SELECT count(*) FROM bot_logs
		WHERE files_processed > -1 AND batch_start_epoch >= $1 AND batch_end_epoch <= $2`, e-int64(days)*day, e).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting the surveys of %s: %w", WindowName(days), err)
	}
	return n, nil
}

// Board is a leaderboard: every scored producer, best first (points
// descending, then producer key).
type Board struct {
	Days    int
	Batch   Latest // the batch the board is as of
	Surveys int
	Rows    []BoardRow
	// FromNodes: read from the nodes table (the window is the coordinator's).
	FromNodes bool
	byKey     map[string]int
}

// BoardRow is one producer's line of a leaderboard.
type BoardRow struct {
	Producer          string
	Points            int
	ScorePercent      *float64 // NULL when the window has no survey
	ApplicationStatus *bool
}

// Row returns the producer's line and its position (0-based), or false.
func (b *Board) Row(key string) (BoardRow, int, bool) {
	i, ok := b.byKey[key]
	if !ok {
		return BoardRow{}, 0, false
	}
	return b.Rows[i], i, true
}

// Leaderboard returns the leaderboard of the window of days ending at the
// latest batch. For the coordinator's own window (UPTIME_DAYS_FOR_SCORE, when
// coordinator_scoreboard says nodes is exact for the latest batch) it is the
// nodes table; for any other window it is computed with the same rule:
// points = the producer's points_summary rows in the window's surveys,
// score_percent = trunc(points * 100 / surveys, 2). The producers listed are
// those the coordinator scores (nodes.score not NULL) and any with a point
// in the window.
func (r *Reader) Leaderboard(ctx context.Context, days int) (*Board, error) {
	l, err := r.Latest(ctx)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	b := r.boards[days]
	r.mu.Unlock()
	if b != nil && b.Batch == l {
		return b, nil
	}
	v, err, _ := r.flight.Do(strconv.Itoa(days), func() (any, error) {
		b, err := r.computeBoard(ctx, days)
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.boards == nil {
			r.boards = map[int]*Board{}
		}
		if len(r.boards) >= maxCachedBoards {
			for d, old := range r.boards {
				if old.Batch != b.Batch || !isStandard(d) {
					delete(r.boards, d)
				}
			}
		}
		r.boards[days] = b
		return b, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*Board), nil
}

func isStandard(days int) bool {
	for _, w := range StandardWindows {
		if d, _ := ParseWindow(w); d == days {
			return true
		}
	}
	return false
}

// Warm computes the standard windows' leaderboards (after a batch lands, so
// that requests find them ready).
func (r *Reader) Warm(ctx context.Context) error {
	for _, w := range StandardWindows {
		d, _ := ParseWindow(w)
		if _, err := r.Leaderboard(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

func (r *Reader) computeBoard(ctx context.Context, days int) (*Board, error) {
	b := &Board{Days: days}
	err := r.read(ctx, func(tx pgx.Tx) error {
		var err error
		if b.Batch, err = latest(ctx, tx); err != nil || b.Batch.ID == 0 {
			return err
		}
		if b.Surveys, err = surveys(ctx, tx, b.Batch.End, days); err != nil {
			return err
		}
		var stateEnd int64
		var stateDays int
		err = tx.QueryRow(ctx, `SELECT window_end_epoch, uptime_days FROM coordinator_scoreboard`).Scan(&stateEnd, &stateDays)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("reading the scoreboard state: %w", err)
		}
		b.FromNodes = err == nil && stateDays == days && stateEnd == b.Batch.End.Unix()
		var rows pgx.Rows
		if b.FromNodes {
			rows, err = tx.Query(ctx, `SELECT coalesce(block_producer_key, ''), score, score_percent::float8, application_status
				FROM nodes WHERE score IS NOT NULL ORDER BY score DESC, block_producer_key, id`)
		} else {
			e := b.Batch.End.Unix()
			rows, err = tx.Query(ctx, `WITH b AS (
					SELECT id FROM bot_logs WHERE files_processed > -1 AND batch_start_epoch >= $1 AND batch_end_epoch <= $2
				), c AS (
					SELECT ps.node_id, count(*)::int AS n FROM points_summary ps JOIN b ON b.id = ps.bot_log_id GROUP BY ps.node_id
				)
				SELECT coalesce(n.block_producer_key, ''), coalesce(c.n, 0),
					trunc(coalesce(c.n, 0)::numeric * 100 / NULLIF($3::bigint, 0), 2)::float8, n.application_status
				FROM nodes n LEFT JOIN c ON c.node_id = n.id
				WHERE n.score IS NOT NULL OR c.node_id IS NOT NULL
				ORDER BY 2 DESC, 1, n.id`, e-int64(days)*day, e, b.Surveys)
		}
		if err != nil {
			return fmt.Errorf("reading the %s leaderboard: %w", WindowName(days), err)
		}
		b.Rows, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (BoardRow, error) {
			var br BoardRow
			err := row.Scan(&br.Producer, &br.Points, &br.ScorePercent, &br.ApplicationStatus)
			return br, err
		})
		if err != nil {
			return fmt.Errorf("reading the %s leaderboard: %w", WindowName(days), err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The order is the SQL's; make it independent of the collation.
	sort.SliceStable(b.Rows, func(i, j int) bool {
		if b.Rows[i].Points != b.Rows[j].Points {
			return b.Rows[i].Points > b.Rows[j].Points
		}
		return b.Rows[i].Producer < b.Rows[j].Producer
	})
	b.byKey = make(map[string]int, len(b.Rows))
	for i, row := range b.Rows {
		if _, dup := b.byKey[row.Producer]; !dup {
			b.byKey[row.Producer] = i
		}
	}
	return b, nil
}
