package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/delegation-program/uptime-coordinator/coordinator"
)

// ErrOverlapsLoop is returned when a range reaches into the window the loop
// is working on.
var ErrOverlapsLoop = errors.New("the range reaches into the window the survey loop is working on")

// RescoreOptions select and shape a rescore.
type RescoreOptions struct {
	// From and To select the committed batches whose window end lies in
	// [From, To).
	From, To time.Time
	// Interval is SURVEY_INTERVAL_MINUTES: the loop works on the window
	// ending one interval after the latest batch, and To may not pass it.
	Interval   time.Duration
	UptimeDays int
	DryRun     bool
	// Bulk writes points with the fast path (see CanBulkWritePoints).
	Bulk bool
	// Now is created_at of new points and updated_at of new nodes.
	Now time.Time
	// ChunkBatches is how many batches are read and scored at a time
	// (memory); default 72, a day of 20-minute batches.
	ChunkBatches int
	// HistoryFlushRows is how many score_history changes are collected
	// before they are written (memory); default 100,000.
	HistoryFlushRows int
	// Checkpoint, when set, is reached between the steps of the rescore
	// transaction; fault-injection tests only.
	Checkpoint coordinator.Checkpoint
}

// ProducerChange is how a rescore changes one producer's outcome.
type ProducerChange struct {
	Producer string `json:"producer"`
	// PointsBefore and PointsAfter count the batches of the range in which
	// the producer has a point (points_summary rows: what the score counts).
	PointsBefore int `json:"points_before"`
	PointsAfter  int `json:"points_after"`
	// ScorePercentBefore is nodes.score_percent now; ScorePercentAfter what
	// it becomes (null: no score).
	ScorePercentBefore *string `json:"score_percent_before"`
	ScorePercentAfter  *string `json:"score_percent_after"`
	// BatchesGained and BatchesLost are the window ends of the batches in
	// which the producer gains or loses its point.
	BatchesGained []time.Time `json:"batches_gained"`
	BatchesLost   []time.Time `json:"batches_lost"`
}

// RescoreReport summarises a rescore (or what a dry run would do).
type RescoreReport struct {
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	DryRun bool      `json:"dry_run"`
	// Batches is the number of batches re-scored: those of the range, plus
	// the following ones re-scored because the shortlist they start from
	// changed.
	Batches       int       `json:"batches"`
	Extended      int       `json:"extended_batches"`
	FirstBatchEnd time.Time `json:"first_batch_end"`
	LastBatchEnd  time.Time `json:"last_batch_end"`

	PointsAdded        int   `json:"points_added"`
	PointsRemoved      int   `json:"points_removed"`
	SummaryAdded       int   `json:"points_summary_added"`
	SummaryRemoved     int   `json:"points_summary_removed"`
	ShortlistsReplaced int   `json:"shortlists_replaced"`
	BotLogsUpdated     int   `json:"bot_logs_updated"`
	HistoryDeleted     int   `json:"score_history_deleted"`
	HistoryInserted    int   `json:"score_history_inserted"`
	ScoresChanged      int64 `json:"scores_changed"`
	NodesRemoved       int64 `json:"nodes_removed"`
	StateHashesRemoved int64 `json:"statehash_removed"`

	Producers []ProducerChange `json:"producers"`
}

// Changed reports whether the rescore changes (or changed) anything.
func (r *RescoreReport) Changed() bool {
	return r.PointsAdded+r.PointsRemoved+r.SummaryAdded+r.SummaryRemoved+r.ShortlistsReplaced+r.BotLogsUpdated+
		r.HistoryDeleted+r.HistoryInserted > 0 || r.ScoresChanged+r.NodesRemoved+r.StateHashesRemoved > 0 || len(r.Producers) > 0
}

// Rescore re-scores the committed batches whose window end lies in
// [From, To) from the submissions as they are now, in window order,
// carrying each batch's shortlist into the next exactly as the loop does,
// and writes only what differs: points, points_summary, bot_logs_statehash,
// bot_logs.files_processed / file_timestamps. When the last batch's
// shortlist changed, the following batches are re-scored too until one's is
// unchanged (their input changed). Then score_history is recomputed for
// every batch from the first re-scored one to the latest, and nodes' scores;
// state hashes and nodes that a scratch run would not have created any more
// are removed. All in one transaction, under the batch lock, so the loop
// waits and a crash leaves the old result. With DryRun nothing is written.
func Rescore(ctx context.Context, pool *pgxpool.Pool, opts RescoreOptions) (*RescoreReport, error) {
	if opts.ChunkBatches <= 0 {
		opts.ChunkBatches = 72
	}
	if opts.HistoryFlushRows <= 0 {
		opts.HistoryFlushRows = 100_000
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	rep := &RescoreReport{From: opts.From.UTC(), To: opts.To.UTC(), DryRun: opts.DryRun}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		*rep = RescoreReport{From: opts.From.UTC(), To: opts.To.UTC(), DryRun: opts.DryRun}
		if err := rescore(ctx, pool, tx, opts, rep); err != nil {
			return err
		}
		if opts.DryRun || !rep.Changed() {
			return nil
		}
		// The alert rules' score windows counted points that changed:
		// their next batch counts them in full.
		if _, err := tx.Exec(ctx, `DELETE FROM alert_score_windows`); err != nil {
			return fmt.Errorf("resetting the alert score windows: %w", err)
		}
		// coordinator serve keeps the points in memory: it reloads them.
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, RescoreChannel); err != nil {
			return fmt.Errorf("announcing the rescore: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rep, nil
}

type producerTally struct {
	before, after int
	gained, lost  []time.Time
}

func rescore(ctx context.Context, pool *pgxpool.Pool, tx pgx.Tx, opts RescoreOptions, rep *RescoreReport) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(batchLockKey)); err != nil {
		return fmt.Errorf("taking the batch lock: %w", err)
	}
	if _, err := rangeWindows(ctx, tx, opts.From, opts.To, opts.Interval); err != nil {
		return err
	}
	logs, err := readBotLogs(ctx, tx)
	if err != nil {
		return err
	}
	latest := logs[len(logs)-1]
	first, last := -1, -1
	for i, b := range logs {
		if b.End >= opts.From.Unix() && b.End < opts.To.Unix() && b.Files > -1 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return nil
	}
	var prev []coordinator.ShortlistedHash
	if first > 0 {
		if prev, err = shortlist(ctx, tx, logs[first-1].ID); err != nil {
			return err
		}
	}
	opts.Checkpoint.Reach(ctx, "tx_begin")
	nodes, hashes := newKeyIDs(), newKeyIDs()
	if err := nodes.loadNodes(ctx, tx); err != nil {
		return err
	}
	cur, err := nodeScores(ctx, tx)
	if err != nil {
		return err
	}
	overlay := map[int64][]int64{}
	tally := map[int64]*producerTally{}
	oldHashes, oldNodes := map[int64]bool{}, map[int64]bool{}
	newHashes, newNodes := map[string]bool{}, map[string]bool{}
	submitters, named := map[string]bool{}, map[string]bool{}

	// The chunks of the range, read ahead on a second connection in this
	// transaction's snapshot while the previous chunk is scored and written.
	var chunks [][2]int
	for i := first; i <= last; i += opts.ChunkBatches {
		chunks = append(chunks, [2]int{i, min(i+opts.ChunkBatches, last+1)})
	}
	inputs, stop, err := readChunksAhead(ctx, pool, tx, logs, chunks)
	if err != nil {
		return err
	}
	defer stop()

	// scoreChunk re-scores logs[i:j] from in (nil: read here), in memory:
	// no database work, so that it runs while the previous chunk is written.
	scoreChunk := func(ctx context.Context, i, j int, in *chunkInput) (*scoredChunk, error) {
		if in == nil {
			var err error
			if in, err = readChunk(ctx, tx, logs, i, j); err != nil {
				return nil, err
			}
		}
		subs := in.subs
		opts.Checkpoint.Reach(ctx, "load")
		sc := &scoredChunk{in: in}
		for _, b := range logs[i:j] {
			if b.Files < 0 { // a starting row: the next batch starts afresh
				prev = nil
				continue
			}
			w := coordinator.Window{Start: time.Unix(b.Start, 0).UTC(), End: time.Unix(b.End, 0).UTC()}
			lo := sort.Search(len(subs), func(k int) bool { return !subs[k].SubmittedAt.Before(w.Start) })
			hi := sort.Search(len(subs), func(k int) bool { return !subs[k].SubmittedAt.Before(w.End) })
			res := coordinator.Score(subs[lo:hi], prev)
			prev = res.Shortlist
			rec := &coordinator.Record{Window: w, Result: res, UptimeDays: opts.UptimeDays, Now: opts.Now}
			sc.batch = append(sc.batch, scoredBatch{b, rec, coordinator.Evidence(subs[lo:hi], res)})
			sc.hashes = append(sc.hashes, rec.StateHashes()...)
			sc.producers = append(sc.producers, rec.Producers()...)
			for _, s := range subs[lo:hi] {
				submitters[s.Submitter] = true
				if s.StateHash != nil && *s.StateHash != "" {
					named[*s.StateHash] = true
				}
				if s.Parent != nil && *s.Parent != "" {
					named[*s.Parent] = true
				}
			}
		}
		slices.Sort(sc.hashes)
		sc.hashes = slices.Compact(sc.hashes)
		slices.Sort(sc.producers)
		sc.producers = slices.Compact(sc.producers)
		return sc, nil
	}

	// writeChunk compares a scored chunk with the rows its batches hold,
	// writes the difference (not in a dry run) and reports whether the last
	// batch's shortlist changed.
	writeChunk := func(ctx context.Context, sc *scoredChunk) (bool, error) {
		batch := sc.batch
		for _, h := range sc.hashes {
			newHashes[h] = true
		}
		for _, p := range sc.producers {
			newNodes[p] = true
		}
		if opts.DryRun {
			if err := hashes.loadHashes(ctx, tx, sc.hashes); err != nil {
				return false, err
			}
			hashes.invent(sc.hashes)
			nodes.invent(sc.producers)
		} else {
			if err := hashes.ensureHashes(ctx, tx, sc.hashes); err != nil {
				return false, err
			}
			opts.Checkpoint.Reach(ctx, "tx_statehash")
			if _, err := nodes.ensureNodes(ctx, tx, sc.producers, opts.Now); err != nil {
				return false, err
			}
			opts.Checkpoint.Reach(ctx, "tx_nodes")
		}
		ids := make([]int64, len(batch))
		for k, b := range batch {
			ids[k] = b.log.ID
		}
		in := sc.in
		if !slices.Equal(ids, in.ids) {
			return false, fmt.Errorf("rescore: read batches %v, scored %v", in.ids, ids)
		}
		ex := in.ex
		for _, v := range ex.points {
			for _, p := range v {
				oldHashes[p.Hash], oldNodes[p.Node] = true, true
			}
		}
		for _, v := range ex.short {
			for _, s := range v {
				oldHashes[s.Hash], oldHashes[s.Parent] = true, true
			}
		}
		for _, v := range ex.summary {
			for _, n := range v {
				oldNodes[n] = true
			}
		}
		d := &rangeDiff{}
		for _, b := range batch {
			nb := toRows(b.rec, hashes, nodes)
			d.diffBatch(b.log.ID, nb, ex)
			overlay[b.log.ID] = nb.Summary
			end := time.Unix(b.log.End, 0).UTC()
			was := ex.summary[b.log.ID]
			for _, n := range was {
				t := tallyOf(tally, n)
				t.before++
				if _, ok := slices.BinarySearch(nb.Summary, n); !ok {
					t.lost = append(t.lost, end)
				}
			}
			for _, n := range nb.Summary {
				t := tallyOf(tally, n)
				t.after++
				if _, ok := slices.BinarySearch(was, n); !ok {
					t.gained = append(t.gained, end)
				}
			}
		}
		rep.Batches += len(batch)
		rep.PointsAdded += len(d.insPoints)
		rep.PointsRemoved += len(d.delPoints)
		rep.SummaryAdded += len(d.insSummary)
		rep.SummaryRemoved += len(d.delSummary)
		rep.ShortlistsReplaced += len(d.shortBatch)
		rep.BotLogsUpdated += len(d.updBatch)
		changed := len(batch) > 0 && slices.Contains(d.shortBatch, batch[len(batch)-1].log.ID)
		if !opts.DryRun {
			if !d.empty() {
				if err := d.apply(ctx, tx, opts.Now, opts.Bulk, opts.Checkpoint); err != nil {
					return false, err
				}
			}
			evs := make([]*coordinator.BatchEvidence, len(batch))
			for k, b := range batch {
				evs[k] = b.ev
			}
			if err := replaceEvidenceRows(ctx, tx, ids, evs, in.evidence); err != nil {
				return false, err
			}
			opts.Checkpoint.Reach(ctx, "tx_evidence")
		}
		return changed, nil
	}

	// Three stages on the two cores: the reader reads chunk k+2 (its own
	// connection), this goroutine scores chunk k+1 (pure Go), the writer
	// compares and writes chunk k (the transaction's connection).
	changed := false
	scored := make(chan *scoredChunk, 1)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		for sc := range scored {
			c, err := writeChunk(gctx, sc)
			if err != nil {
				return err
			}
			changed = c
		}
		return nil
	})
	g.Go(func() error {
		defer close(scored)
		for _, c := range chunks {
			var in *chunkInput
			select {
			case in = <-inputs:
			case <-gctx.Done():
				return gctx.Err()
			}
			if in.err != nil {
				return in.err
			}
			sc, err := scoreChunk(gctx, c[0], c[1], in)
			if err != nil {
				return err
			}
			select {
			case scored <- sc:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}
	stop()
	// The batches after the range start from the last one's shortlist: when
	// it changed, so did their input.
	for k := last + 1; changed && k < len(logs) && logs[k].Files > -1; k++ {
		sc, err := scoreChunk(ctx, k, k+1, nil)
		if err != nil {
			return err
		}
		if changed, err = writeChunk(ctx, sc); err != nil {
			return err
		}
		last = k
		rep.Extended++
	}
	rep.FirstBatchEnd = time.Unix(logs[first].End, 0).UTC()
	rep.LastBatchEnd = time.Unix(logs[last].End, 0).UTC()

	// The score history from the first re-scored batch to the latest, read
	// a block of batches at a time as the timeline reaches it, on a
	// connection of its own in this transaction's snapshot (score_history
	// is not written before); the differences are written on this
	// transaction's connection, a block at a time, while the timeline goes
	// on (score_at of one block is never another's: the blocks' rows are
	// disjoint).
	hist := &historyReader{q: tx, block: opts.ChunkBatches}
	for _, b := range logs[first:] {
		hist.ends = append(hist.ends, time.Unix(b.End, 0).UTC())
	}
	hw := &historyWriter{tx: tx, bulk: opts.Bulk}
	if !opts.DryRun && pool.Config().MaxConns >= 2 {
		snap, err := exportSnapshot(ctx, tx)
		if err != nil {
			return err
		}
		htx, release, err := snapshotReaders(ctx, pool, snap, 1)
		if err != nil {
			return err
		}
		defer release()
		hist.q = htx[0]
		hw.start(ctx)
		defer hw.stop()
	}
	hd := &historyDiff{}
	have := map[int64]score{}
	final, err := scoreTimeline(ctx, tx, logs, first, opts.UptimeDays, baseHistory, overlay,
		func(b botLog, _ int, scores map[int64]score) error {
			if opts.DryRun {
				return nil
			}
			at := time.Unix(b.End, 0).UTC()
			if len(hd.del)+len(hd.ins) >= opts.HistoryFlushRows {
				rep.HistoryDeleted, rep.HistoryInserted = rep.HistoryDeleted+len(hd.del), rep.HistoryInserted+len(hd.ins)
				if err := hw.write(ctx, hd); err != nil {
					return err
				}
				hd = &historyDiff{}
			}
			if err := hist.upTo(ctx, at); err != nil {
				return err
			}
			existing := hist.rows
			pos := 0
			for pos < len(existing) && existing[pos].At.Before(at) {
				hd.del = append(hd.del, existing[pos]) // a score_at that is no batch end any more
				pos++
			}
			clear(have)
			for ; pos < len(existing) && existing[pos].At.Equal(at); pos++ {
				have[existing[pos].Node] = existing[pos].score
			}
			hist.rows = existing[pos:]
			for n, s := range scores {
				if h, ok := have[n]; ok && h == s {
					continue
				} else if ok {
					hd.del = append(hd.del, historyRow{Node: n, At: at})
				}
				hd.ins = append(hd.ins, historyRow{Node: n, At: at, score: s})
			}
			for n := range have {
				if _, ok := scores[n]; !ok {
					hd.del = append(hd.del, historyRow{Node: n, At: at})
				}
			}
			return nil
		})
	if err != nil {
		return err
	}
	rep.HistoryDeleted, rep.HistoryInserted = rep.HistoryDeleted+len(hd.del), rep.HistoryInserted+len(hd.ins)
	if err := hw.write(ctx, hd); err != nil {
		return err
	}
	if err := hw.stop(); err != nil {
		return err
	}

	// Producers whose outcome changes.
	for n, t := range tally {
		if len(t.gained) == 0 && len(t.lost) == 0 {
			delete(tally, n)
		}
	}
	for n, s := range final {
		if c, ok := cur[n]; !ok || c != s {
			tallyOf(tally, n)
		}
	}
	for n := range cur {
		if _, ok := final[n]; !ok {
			tallyOf(tally, n)
		}
	}
	for n, t := range tally {
		pc := ProducerChange{Producer: nodes.keys[n], PointsBefore: t.before, PointsAfter: t.after,
			BatchesGained: t.gained, BatchesLost: t.lost}
		if c, ok := cur[n]; ok && c.Valid {
			v := formatPercent(c.Percent)
			pc.ScorePercentBefore = &v
		}
		if f, ok := final[n]; ok && f.Valid {
			v := formatPercent(f.Percent)
			pc.ScorePercentAfter = &v
		}
		if pc.BatchesGained == nil {
			pc.BatchesGained = []time.Time{}
		}
		if pc.BatchesLost == nil {
			pc.BatchesLost = []time.Time{}
		}
		rep.Producers = append(rep.Producers, pc)
	}
	slices.SortFunc(rep.Producers, func(a, b ProducerChange) int { return strings.Compare(a.Producer, b.Producer) })
	if opts.DryRun {
		return nil
	}

	if rep.ScoresChanged, err = writeNodeScores(ctx, tx, cur, final); err != nil {
		return err
	}
	opts.Checkpoint.Reach(ctx, "tx_scores")

	// What a scratch run would not have created: state hashes and nodes that
	// only the old results needed.
	if err := hashes.loadHashes(ctx, tx, keys(named)); err != nil {
		return err
	}
	for h := range named {
		if id, ok := hashes.ids[h]; ok && id > 0 {
			oldHashes[id] = true
		}
	}
	for p := range submitters {
		if id, ok := nodes.ids[p]; ok {
			oldNodes[id] = true
		}
	}
	span := coordinator.Window{Start: time.Unix(firstReal(logs).Start, 0).UTC(), End: time.Unix(latest.End, 0).UTC()}
	if rep.StateHashesRemoved, err = removeUnneededHashes(ctx, tx, oldHashes, newHashes, hashes, span); err != nil {
		return err
	}
	if rep.NodesRemoved, err = removeUnneededNodes(ctx, tx, oldNodes, newNodes, nodes, span); err != nil {
		return err
	}
	if err := setScoreboardState(ctx, tx, latest.End, opts.UptimeDays); err != nil {
		return err
	}
	opts.Checkpoint.Reach(ctx, "tx_scoreboard")
	return nil
}

// scoredBatch is a batch re-scored in memory.
type scoredBatch struct {
	log botLog
	rec *coordinator.Record
	ev  *coordinator.BatchEvidence
}

// scoredChunk is a chunk of batches re-scored in memory, with what was
// read for it and the state hashes and producers its results name.
type scoredChunk struct {
	in                *chunkInput
	batch             []scoredBatch
	hashes, producers []string // sorted, distinct
}

// chunkInput is what re-scoring a chunk of batches reads: its submissions
// and the rows its batches hold.
type chunkInput struct {
	ids      []int64 // the chunk's batches (not starting rows), in order
	subs     []coordinator.Submission
	ex       *existingRows
	evidence map[evidenceKey]oldEvidence
	err      error
}

// readChunk reads the input of logs[i:j] with q.
func readChunk(ctx context.Context, q queryer, logs []botLog, i, j int) (*chunkInput, error) {
	in := newChunkInput(logs, i, j)
	if err := readChunkSubmissions(ctx, q, in, logs, i, j); err != nil {
		return nil, err
	}
	if err := readChunkRows(ctx, q, in); err != nil {
		return nil, err
	}
	return in, nil
}

func newChunkInput(logs []botLog, i, j int) *chunkInput {
	in := &chunkInput{}
	for _, b := range logs[i:j] {
		if b.Files > -1 {
			in.ids = append(in.ids, b.ID)
		}
	}
	return in
}

// readChunkSubmissions reads the submissions of logs[i:j] into in, ordered
// by submitted_at (scoring does not depend on the order within a window).
func readChunkSubmissions(ctx context.Context, q queryer, in *chunkInput, logs []botLog, i, j int) error {
	start, end := time.Unix(logs[i].Start, 0).UTC(), time.Unix(logs[j-1].End, 0).UTC()
	var err error
	in.subs, err = readSubmissions(ctx, q, `SELECT `+submissionColumns+`
		FROM submissions WHERE submitted_at >= $1 AND submitted_at < $2 ORDER BY submitted_at`, start, end)
	return err
}

// readChunkRows reads the rows the batches of in hold.
func readChunkRows(ctx context.Context, q queryer, in *chunkInput) error {
	var err error
	if in.ex, err = readExisting(ctx, q, in.ids); err != nil {
		return err
	}
	in.evidence, err = readEvidence(ctx, q, in.ids)
	return err
}

// snapshotID is what pg_export_snapshot returns.
var snapshotID = regexp.MustCompile(`^[0-9A-Fa-f-]+$`)

// exportSnapshot exports tx's snapshot for snapshotReaders.
func exportSnapshot(ctx context.Context, tx pgx.Tx) (string, error) {
	var snap string
	if err := tx.QueryRow(ctx, `SELECT pg_export_snapshot()`).Scan(&snap); err != nil {
		return "", fmt.Errorf("exporting the snapshot: %w", err)
	}
	if !snapshotID.MatchString(snap) {
		return "", fmt.Errorf("exporting the snapshot: unexpected id %q", snap)
	}
	return snap, nil
}

// snapshotReaders opens n read-only transactions on connections of their
// own in the exported snapshot snap; release ends them.
func snapshotReaders(ctx context.Context, pool *pgxpool.Pool, snap string, n int) ([]pgx.Tx, func(), error) {
	var conns []*pgxpool.Conn
	var txs []pgx.Tx
	release := func() {
		for _, t := range txs {
			_ = t.Rollback(context.Background())
		}
		for _, c := range conns {
			c.Release()
		}
	}
	for range n {
		conn, err := pool.Acquire(ctx)
		if err != nil {
			release()
			return nil, nil, fmt.Errorf("opening a reading connection: %w", err)
		}
		conns = append(conns, conn)
		rtx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			release()
			return nil, nil, fmt.Errorf("opening a reading transaction: %w", err)
		}
		txs = append(txs, rtx)
		if _, err := rtx.Exec(ctx, `SET TRANSACTION SNAPSHOT '`+snap+`'`); err != nil {
			release()
			return nil, nil, fmt.Errorf("importing the snapshot: %w", err)
		}
	}
	return txs, release, nil
}

// readChunksAhead reads the input of each chunk (logs[c[0]:c[1]]) in order,
// in tx's snapshot (exported: it sees what tx sees now), one chunk ahead of
// the caller, who receives them from the channel (an input with err set
// ends it). The submissions are read on a connection of their own and the
// batches' rows on another, at the same time, when the pool allows two
// more connections; else both on one. stop ends the reading and releases
// the connections; it may be called more than once.
func readChunksAhead(ctx context.Context, pool *pgxpool.Pool, tx pgx.Tx, logs []botLog, chunks [][2]int) (<-chan *chunkInput, func(), error) {
	snap, err := exportSnapshot(ctx, tx)
	if err != nil {
		return nil, nil, err
	}
	readers := 2
	if pool.Config().MaxConns < 3 { // this transaction's connection and two
		readers = 1
	}
	txs, release, err := snapshotReaders(ctx, pool, snap, readers)
	if err != nil {
		return nil, nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	// each reader sends its part of every chunk, in order
	read := func(part func(in *chunkInput, c [2]int) error) <-chan *chunkInput {
		ch := make(chan *chunkInput, 1)
		go func() {
			defer close(ch)
			for _, c := range chunks {
				in := newChunkInput(logs, c[0], c[1])
				err := part(in, c)
				in.err = err
				select {
				case ch <- in:
				case <-rctx.Done():
					return
				}
				if err != nil {
					return
				}
			}
		}()
		return ch
	}
	var subs, rows <-chan *chunkInput
	if readers == 2 {
		subs = read(func(in *chunkInput, c [2]int) error { return readChunkSubmissions(rctx, txs[0], in, logs, c[0], c[1]) })
		rows = read(func(in *chunkInput, c [2]int) error { return readChunkRows(rctx, txs[1], in) })
	} else {
		subs = read(func(in *chunkInput, c [2]int) error {
			if err := readChunkSubmissions(rctx, txs[0], in, logs, c[0], c[1]); err != nil {
				return err
			}
			return readChunkRows(rctx, txs[0], in)
		})
	}
	out := make(chan *chunkInput)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range chunks {
			in, ok := <-subs
			if !ok {
				return
			}
			if rows != nil && in.err == nil {
				r, ok := <-rows
				if !ok {
					return
				}
				in.ex, in.evidence, in.err = r.ex, r.evidence, r.err
			}
			err := in.err
			select {
			case out <- in:
			case <-rctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			// the readers end once cancelled: drain what they hold
			for range subs {
			}
			if rows != nil {
				for range rows {
				}
			}
			release()
		})
	}
	return out, stop, nil
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func tallyOf(m map[int64]*producerTally, n int64) *producerTally {
	t := m[n]
	if t == nil {
		t = &producerTally{}
		m[n] = t
	}
	return t
}

func dedupe(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

func firstReal(logs []botLog) botLog {
	for _, b := range logs {
		if b.Files > -1 {
			return b
		}
	}
	return logs[0]
}

// historyWriter writes historyDiffs on tx: on the caller's goroutine, or
// once started, on a goroutine of its own while the caller goes on (the
// caller must not use tx until stop returns).
type historyWriter struct {
	tx   pgx.Tx
	bulk bool
	in   chan *historyDiff
	done chan error
}

func (w *historyWriter) start(ctx context.Context) {
	in, done := make(chan *historyDiff, 1), make(chan error, 1)
	w.in, w.done = in, done
	tx, bulk := w.tx, w.bulk
	go func() {
		var err error
		for d := range in {
			if err == nil {
				err = writeHistory(ctx, tx, d, bulk)
			}
		}
		done <- err
	}()
}

// write writes d, or hands it to the writer's goroutine; it returns the
// error of an earlier write that failed.
func (w *historyWriter) write(ctx context.Context, d *historyDiff) error {
	if len(d.del)+len(d.ins) == 0 {
		return nil
	}
	sortHistory(d.del)
	sortHistory(d.ins)
	if w.in == nil {
		return writeHistory(ctx, w.tx, d, w.bulk)
	}
	select {
	case w.in <- d:
		return nil
	case err := <-w.done:
		w.in = nil
		if err == nil {
			err = errors.New("writing score history: the writer stopped")
		}
		return err
	}
}

// stop waits for the writes handed over and returns the first error; it
// may be called more than once.
func (w *historyWriter) stop() error {
	if w.in == nil {
		return nil
	}
	close(w.in)
	w.in = nil
	return <-w.done
}

// sortHistory orders rows by node, then time: the order of the unique
// index, so that the deletes and inserts walk it instead of jumping.
func sortHistory(rows []historyRow) {
	slices.SortFunc(rows, func(a, b historyRow) int {
		if a.Node != b.Node {
			return cmp.Compare(a.Node, b.Node)
		}
		return a.At.Compare(b.At)
	})
}

// historyReader reads the score_history rows from ends[0] on, ordered by
// score_at and node, a block of batch ends at a time.
type historyReader struct {
	q      queryer
	ends   []time.Time // the batch ends, in order
	block  int         // batch ends per read
	next   int         // ends[next] is where the next read starts
	loaded bool        // the last block (to the end of time) is read
	rows   []historyRow
}

// upTo reads blocks until every row at or before at is in rows.
func (h *historyReader) upTo(ctx context.Context, at time.Time) error {
	for !h.loaded && !h.ends[h.next].After(at) {
		from := h.ends[h.next]
		h.next += h.block
		args := []any{from}
		q := `SELECT node_id, score_at, coalesce(score, 0), (score_percent * 100)::int8 FROM score_history
			WHERE score_at >= $1`
		if h.next < len(h.ends) {
			q += ` AND score_at < $2`
			args = append(args, h.ends[h.next])
		} else {
			h.loaded = true
		}
		rows, err := h.q.Query(ctx, q+` ORDER BY score_at, node_id`, args...)
		if err != nil {
			return fmt.Errorf("reading score history: %w", err)
		}
		var r historyRow
		var sc int32
		var pct pgtype.Int8
		if _, err := pgx.ForEachRow(rows, []any{&r.Node, &r.At, &sc, &pct}, func() error {
			r.Score, r.Percent, r.Valid = int(sc), pct.Int64, pct.Valid
			h.rows = append(h.rows, r)
			return nil
		}); err != nil {
			return fmt.Errorf("reading score history: %w", err)
		}
	}
	return nil
}

// removeUnneededHashes deletes the candidate state hashes (ids in old, not
// needed by the new results) that nothing references and that no valid
// submission of a committed window names: a scratch run would not have
// created them.
func removeUnneededHashes(ctx context.Context, tx pgx.Tx, old map[int64]bool, needed map[string]bool, ids *keyIDs, span coordinator.Window) (int64, error) {
	var cand []int64
	for id := range old {
		if id > 0 && !needed[ids.keys[id]] {
			cand = append(cand, id)
		}
	}
	if len(cand) == 0 {
		return 0, nil
	}
	tag, err := tx.Exec(ctx, `DELETE FROM statehash s WHERE s.id = ANY($1::int8[])
		AND NOT EXISTS (SELECT 1 FROM bot_logs_statehash b WHERE b.statehash_id = s.id)
		AND NOT EXISTS (SELECT 1 FROM bot_logs_statehash b WHERE b.parent_statehash_id = s.id)
		AND NOT EXISTS (SELECT 1 FROM points p WHERE p.statehash_id = s.id)
		AND NOT EXISTS (SELECT 1 FROM submissions x WHERE x.state_hash = s.value AND x.verified
			AND coalesce(x.validation_error, '') = '' AND x.submitted_at >= $2 AND x.submitted_at < $3)
		AND NOT EXISTS (SELECT 1 FROM submissions x WHERE x.parent = s.value AND x.verified
			AND coalesce(x.validation_error, '') = '' AND coalesce(x.state_hash, '') <> '' AND x.submitted_at >= $2 AND x.submitted_at < $3)`,
		cand, span.Start, span.End)
	if err != nil {
		return 0, fmt.Errorf("removing state hashes no batch needs any more: %w", err)
	}
	return tag.RowsAffected(), nil
}

// removeUnneededNodes deletes the candidate nodes (ids in old, not needed
// by the new results) that nothing references, that carry no application
// data and that have no valid submission in a committed window.
func removeUnneededNodes(ctx context.Context, tx pgx.Tx, old map[int64]bool, needed map[string]bool, ids *keyIDs, span coordinator.Window) (int64, error) {
	var cand []int64
	for id := range old {
		if id > 0 && !needed[ids.keys[id]] {
			cand = append(cand, id)
		}
	}
	if len(cand) == 0 {
		return 0, nil
	}
	tag, err := tx.Exec(ctx, `DELETE FROM nodes n WHERE n.id = ANY($1::int8[])
		AND n.discord_id IS NULL AND n.email_id IS NULL AND n.application_status IS NULL AND n.score IS NULL
		AND NOT EXISTS (SELECT 1 FROM points p WHERE p.node_id = n.id)
		AND NOT EXISTS (SELECT 1 FROM points_summary ps WHERE ps.node_id = n.id)
		AND NOT EXISTS (SELECT 1 FROM score_history h WHERE h.node_id = n.id)
		AND NOT EXISTS (SELECT 1 FROM submissions x WHERE x.submitter = n.block_producer_key AND x.verified
			AND coalesce(x.validation_error, '') = '' AND coalesce(x.state_hash, '') <> '' AND x.submitted_at >= $2 AND x.submitted_at < $3)`,
		cand, span.Start, span.End)
	if err != nil {
		return 0, fmt.Errorf("removing nodes no batch needs any more: %w", err)
	}
	return tag.RowsAffected(), nil
}

// RangeWindows returns the windows of the committed batches whose end lies
// in [from, to), in order, refusing a range that reaches into the window
// the loop is working on (see RescoreOptions.Interval).
func RangeWindows(ctx context.Context, pool *pgxpool.Pool, from, to time.Time, interval time.Duration) ([]coordinator.Window, error) {
	var out []coordinator.Window
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var err error
		out, err = rangeWindows(ctx, tx, from, to, interval)
		return err
	})
	return out, err
}

func rangeWindows(ctx context.Context, tx pgx.Tx, from, to time.Time, interval time.Duration) ([]coordinator.Window, error) {
	logs, err := readBotLogs(ctx, tx)
	if err != nil {
		return nil, err
	}
	if len(logs) == 0 {
		return nil, coordinator.ErrNoBatch
	}
	latest := logs[len(logs)-1]
	working := time.Unix(latest.End, 0).Add(interval).UTC()
	if to.After(working) {
		return nil, fmt.Errorf("%w: --to %s is after %s, the end of the window being worked on (the latest batch ends %s)",
			ErrOverlapsLoop, to.UTC().Format(time.DateTime), working.Format(time.DateTime), time.Unix(latest.End, 0).UTC().Format(time.DateTime))
	}
	var out []coordinator.Window
	for _, b := range logs {
		if b.End >= from.Unix() && b.End < to.Unix() && b.Files > -1 {
			out = append(out, coordinator.Window{Start: time.Unix(b.Start, 0).UTC(), End: time.Unix(b.End, 0).UTC()})
		}
	}
	return out, nil
}

// ResetVerification clears verified, validation_error and the columns a
// verifier fills (state_hash, parent, height, slot) of the submissions of
// the committed batches whose end lies in [from, to), in one transaction
// under the batch lock, so that verifiers verify them again. It returns the
// windows and the number of submissions reset.
func ResetVerification(ctx context.Context, pool *pgxpool.Pool, from, to time.Time, interval time.Duration) ([]coordinator.Window, int64, error) {
	var windows []coordinator.Window
	var n int64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(batchLockKey)); err != nil {
			return fmt.Errorf("taking the batch lock: %w", err)
		}
		var err error
		if windows, err = rangeWindows(ctx, tx, from, to, interval); err != nil {
			return err
		}
		starts, ends := make([]time.Time, len(windows)), make([]time.Time, len(windows))
		for i, w := range windows {
			starts[i], ends[i] = w.Start, w.End
		}
		tag, err := tx.Exec(ctx, `UPDATE submissions s SET verified = NULL, validation_error = NULL, state_hash = NULL,
			parent = NULL, height = NULL, slot = NULL
			FROM unnest($1::timestamp[], $2::timestamp[]) AS w(s, e) WHERE s.submitted_at >= w.s AND s.submitted_at < w.e`, starts, ends)
		if err != nil {
			return fmt.Errorf("resetting the verification of the range's submissions: %w", err)
		}
		n = tag.RowsAffected()
		return nil
	})
	return windows, n, err
}
