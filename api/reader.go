package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/singleflight"

	"github.com/delegation-program/uptime-coordinator/api/pointset"
)

const day = 24 * 60 * 60

// ErrNotFound is returned for an unknown producer or batch.
var ErrNotFound = errors.New("not found")

// Reader answers the read API's questions from the coordinator's tables. It
// only reads (every query runs in a read-only transaction), so it works with
// the read-only role. Each producer's batches with a point are kept in
// memory (see points.go); leaderboards are computed from them once per
// window and batch and kept until the next batch lands; everything else is
// an indexed query per request.
type Reader struct {
	Pool *pgxpool.Pool
	// UptimeDays is UPTIME_DAYS_FOR_SCORE: the default leaderboard window.
	UptimeDays int
	Logger     *slog.Logger
	// ChartStep: a producer's score chart shows score_history at every
	// ChartStep-th scored batch (and the latest) of the UptimeDays window;
	// 0: chosen at load so that the window fits in ChartPoints points.
	ChartStep int

	mu     sync.Mutex
	boards map[int]*Board // by window days, for the batch in Board.Batch
	model  *model
	gen    int // counts reloads of the model
	snap   *snapshot
	flight singleflight.Group
}

func (r *Reader) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
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

// endOrNow is the end of the batch, or now when there is none.
func (l Latest) endOrNow() time.Time {
	if l.ID == 0 {
		return time.Now().UTC()
	}
	return l.End
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

// Board is a leaderboard: every scored producer, best first (points
// descending, then producer key).
type Board struct {
	Days    int
	Batch   Latest // the batch the board is as of
	Surveys int
	Rows    []BoardRow
	// FromNodes: read from the nodes table (the window is the coordinator's).
	FromNodes bool

	// Computed from the point set: the set's version, the window's mask
	// and each producer's points by slot, from which the board of a later
	// batch is computed by difference (see windowCounts).
	set    pointset.Version
	mask   pointset.Mask
	counts []int32
}

// BoardRow is one producer's line of a leaderboard.
type BoardRow struct {
	Producer          string
	Points            int
	ScorePercent      *float64 // NULL when the window has no survey
	ApplicationStatus *bool
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
	return r.LeaderboardAt(ctx, days, l)
}

// LeaderboardAt is Leaderboard as of the bot_logs row l (just read) or a
// later one.
func (r *Reader) LeaderboardAt(ctx context.Context, days int, l Latest) (*Board, error) {
	r.mu.Lock()
	b := r.boards[days]
	r.mu.Unlock()
	if b != nil && b.Batch == l {
		return b, nil
	}
	// Keyed by the batch too: a request never joins the computation of
	// an older batch's board.
	v, err, _ := r.flight.Do(strconv.Itoa(days)+"@"+strconv.FormatInt(l.ID, 10), func() (any, error) {
		b, err := r.computeBoard(ctx, days, l)
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

// WarmLoop computes the standard windows' leaderboards (loading the points
// first) at once and again after each signal on batches (a batch landed),
// until ctx ends; a failure is logged and retried in 10 seconds.
func (r *Reader) WarmLoop(ctx context.Context, batches <-chan struct{}) {
	for {
		var retry <-chan time.Time
		if err := r.Warm(ctx); err != nil && ctx.Err() == nil {
			r.logger().Error("computing the leaderboards failed; retrying in 10 s", "err", err)
			retry = time.After(10 * time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-batches:
		case <-retry:
		}
	}
}

// Warm computes the standard windows' leaderboards and brings the
// producers' evidence and history up to date (after a batch lands, so that
// requests find them ready).
func (r *Reader) Warm(ctx context.Context) error {
	l, err := r.Latest(ctx)
	if err != nil {
		return err
	}
	for _, w := range StandardWindows {
		d, _ := ParseWindow(w)
		if _, err := r.LeaderboardAt(ctx, d, l); err != nil {
			return err
		}
	}
	// Then the evidence and history the producers' answers read.
	_, err = r.followedModel(ctx, l)
	return err
}

func (r *Reader) computeBoard(ctx context.Context, days int, l Latest) (*Board, error) {
	snap, err := r.snapshotOf(ctx, l)
	if err != nil {
		return nil, err
	}
	b := &Board{Days: days, Batch: snap.batch}
	if b.Batch.ID == 0 {
		return b, nil
	}
	end := b.Batch.End.Unix()
	mask := snap.points.Window(end-int64(days)*day, end)
	b.Surveys = mask.Surveys()
	b.FromNodes = snap.scoreboardDays == days && snap.scoreboardEnd == end
	if !b.FromNodes {
		r.mu.Lock()
		prev := r.boards[days]
		r.mu.Unlock()
		b.set, b.mask, b.counts = snap.points.Version(), mask, windowCounts(snap.points, mask, prev)
	}
	b.Rows = make([]BoardRow, 0, len(snap.rows))
	var pcts []float64 // the rows' score_percent (one allocation)
	if !b.FromNodes && b.Surveys > 0 {
		pcts = make([]float64, len(snap.rows))
	}
	for i, row := range snap.rows { // by key, then id
		n := row.node
		if b.FromNodes {
			if n.score != nil {
				b.Rows = append(b.Rows, BoardRow{Producer: row.key, Points: int(*n.score), ScorePercent: n.scorePercent,
					ApplicationStatus: n.status})
			}
			continue
		}
		points := 0
		if row.slot >= 0 {
			points = int(b.counts[row.slot])
		}
		if n.score != nil || points > 0 {
			var pct *float64
			if pcts != nil {
				pcts[i] = truncPercent(points, b.Surveys)
				pct = &pcts[i]
			}
			b.Rows = append(b.Rows, BoardRow{Producer: row.key, Points: points, ScorePercent: pct, ApplicationStatus: n.status})
		}
	}
	// Best first, then by key (then by nodes id, for a key held twice):
	// the rows are in key order, so a stable counting sort by points.
	b.Rows = byPoints(b.Rows)
	return b, nil
}

// windowCounts counts each producer's points in the mask (by slot): from
// the previous board of the window when the set was extended from its set
// (its counts, plus the batches that entered the window, minus those that
// left it: a few words per producer instead of the whole window), else in
// full.
func windowCounts(set *pointset.Set, mask pointset.Mask, prev *Board) []int32 {
	counts := make([]int32, set.Slots())
	from := 0
	if prev != nil && prev.counts != nil && set.Follows(prev.set) {
		add, rem := mask.Minus(prev.mask), prev.mask.Minus(mask)
		from = len(prev.counts)
		for slot := range int32(from) {
			c := prev.counts[slot]
			if add.Surveys() > 0 {
				c += int32(set.Count(slot, add))
			}
			if rem.Surveys() > 0 {
				c -= int32(set.Count(slot, rem))
			}
			counts[slot] = c
		}
	}
	for slot := from; slot < len(counts); slot++ {
		counts[slot] = int32(set.Count(int32(slot), mask))
	}
	return counts
}

// byPoints sorts rows by points, most first, keeping the order of rows
// with the same points.
func byPoints(rows []BoardRow) []BoardRow {
	most := 0
	for _, r := range rows {
		most = max(most, r.Points)
	}
	start := make([]int, most+2) // start[most-p]: where rows with p points begin
	for _, r := range rows {
		start[most-r.Points+1]++
	}
	for i := 1; i < len(start); i++ {
		start[i] += start[i-1]
	}
	out := make([]BoardRow, len(rows))
	for _, r := range rows {
		out[start[most-r.Points]] = r
		start[most-r.Points]++
	}
	return out
}
