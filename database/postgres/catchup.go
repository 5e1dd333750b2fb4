package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/delegation-program/uptime-coordinator/coordinator"
)

var _ coordinator.RangeLedger = (*Database)(nil)

// CommitRange writes many consecutive batches in one transaction (the
// catch-up path); see coordinator.RangeLedger. The rows are the same as
// CommitBatch would write batch after batch; they are written set-based for
// the whole range: one statement or COPY per table.
func (s *Database) CommitRange(ctx context.Context, last coordinator.LastBatch, build func([]coordinator.ShortlistedHash) ([]*coordinator.Record, error)) (coordinator.RangeCommitted, error) {
	var out coordinator.RangeCommitted
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		prev, err := s.fence(ctx, tx, last)
		if err != nil {
			return err
		}
		recs, err := build(prev)
		if err != nil {
			return err
		}
		if out, err = writeRange(ctx, tx, last.ID, recs, s.BulkPoints, s.Checkpoint); err != nil {
			return err
		}
		// The contributed steps (alert rules) batch after batch, each told
		// which nodes rows belong to producers the range first sees in a
		// later batch (they are created up front for the whole range).
		for i, rec := range recs {
			c := coordinator.Committed{BotLogID: out.BotLogIDs[i], Scoreboard: out.Scoreboards[i], PreviousShares: out.PreviousShares[i],
				NewNodes: out.NewNodes[i], NotYetKnown: out.NotYetKnown[i]}
			for _, step := range s.Steps {
				if err := step.Run(ctx, tx, rec, c); err != nil {
					return fmt.Errorf("%s: %w", step.Name, err)
				}
				s.Checkpoint.Reach(ctx, "tx_"+step.Name)
			}
		}
		return nil
	})
	return out, classify(err)
}

func writeRange(ctx context.Context, tx pgx.Tx, prevID int64, recs []*coordinator.Record, bulk bool, cp coordinator.Checkpoint) (coordinator.RangeCommitted, error) {
	var out coordinator.RangeCommitted
	if len(recs) == 0 {
		return out, nil
	}
	var err error
	now := recs[0].Now
	days := recs[0].UptimeDays
	cp.Reach(ctx, "tx_begin")
	var copies []coordinator.Submission
	var allHashes, allProducers []string
	for _, r := range recs {
		copies = append(copies, r.Copy...)
		allHashes = append(allHashes, r.StateHashes()...)
		allProducers = append(allProducers, r.Producers()...)
	}
	if len(copies) > 0 {
		if err := copySubmissions(ctx, tx, copies); err != nil {
			return out, err
		}
		cp.Reach(ctx, "tx_copied")
	}
	hashes, nodes := newKeyIDs(), newKeyIDs()
	if err := hashes.ensureHashes(ctx, tx, dedupe(allHashes)); err != nil {
		return out, err
	}
	cp.Reach(ctx, "tx_statehash")
	if err := nodes.loadNodes(ctx, tx); err != nil {
		return out, err
	}
	// The producers seen for the first time, by the batch that first needs
	// each: batch after batch, the earlier batches would not know them.
	first := map[string]int{}
	for i, r := range recs {
		for _, p := range r.Producers() {
			if _, known := nodes.ids[p]; !known {
				if _, seen := first[p]; !seen {
					first[p] = i
				}
			}
		}
	}
	if _, err := nodes.ensureNodes(ctx, tx, dedupe(allProducers), now); err != nil {
		return out, err
	}
	out.NewNodes = make([]int64, len(recs))
	out.NotYetKnown = make([]map[string]bool, len(recs))
	for p, i := range first {
		out.NewNodes[i]++
		for k := range i {
			if out.NotYetKnown[k] == nil {
				out.NotYetKnown[k] = map[string]bool{}
			}
			out.NotYetKnown[k][p] = true
		}
	}
	cp.Reach(ctx, "tx_nodes")

	n := len(recs)
	files, starts, ends := make([]int32, n), make([]int64, n), make([]int64, n)
	ts, ptime := make([]time.Time, n), make([]float64, n)
	for i, r := range recs {
		files[i], ts[i], ptime[i] = int32(r.FilesProcessed()), r.FileTimestamp().UTC(), r.ProcessingTime.Seconds()
		starts[i], ends[i] = r.Window.Start.Unix(), r.Window.End.Unix()
	}
	rows, err := tx.Query(ctx, `INSERT INTO bot_logs (files_processed, file_timestamps, batch_start_epoch, batch_end_epoch, processing_time)
		SELECT f, t, s, e, p FROM unnest($1::int4[], $2::timestamptz[], $3::int8[], $4::int8[], $5::float8[]) WITH ORDINALITY AS u(f, t, s, e, p, o)
		ORDER BY o RETURNING id`, files, ts, starts, ends, ptime)
	if err != nil {
		return out, fmt.Errorf("inserting bot_logs: %w", err)
	}
	if out.BotLogIDs, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
		return out, fmt.Errorf("inserting bot_logs: %w", err)
	}
	if len(out.BotLogIDs) != n {
		return out, fmt.Errorf("inserting bot_logs: %d of %d rows", len(out.BotLogIDs), n)
	}
	cp.Reach(ctx, "tx_bot_logs")

	ex := &existingRows{short: map[int64][]shortRow{}, fileCnt: map[int64]int{}, fileTS: map[int64]int64{}}
	d := &rangeDiff{}
	overlay := map[int64][]int64{}
	for i, r := range recs {
		id := out.BotLogIDs[i]
		nb := toRows(r, hashes, nodes)
		ex.fileCnt[id], ex.fileTS[id] = nb.Files, nb.FileTS // just inserted
		d.diffBatch(id, nb, ex)
		overlay[id] = nb.Summary
	}
	if err := d.apply(ctx, tx, now, bulk, cp); err != nil {
		return out, err
	}
	evs := make([]*coordinator.BatchEvidence, n)
	var prevShares *coordinator.ClassShares
	for i, r := range recs {
		evs[i] = r.Evidence
		if i == 0 {
			if prevShares, err = readClassShares(ctx, tx, prevID); err != nil {
				return out, err
			}
		} else {
			prevShares = shares(out.BotLogIDs[i-1], recs[i-1].Evidence)
		}
		out.PreviousShares = append(out.PreviousShares, prevShares)
	}
	if err := writeEvidenceRange(ctx, tx, out.BotLogIDs, evs, cp); err != nil {
		return out, err
	}

	logs, err := readBotLogs(ctx, tx)
	if err != nil {
		return out, err
	}
	from := -1
	for i, b := range logs {
		if b.ID == out.BotLogIDs[0] {
			from = i
		}
	}
	if from != len(logs)-n {
		return out, fmt.Errorf("the new batches are not the latest in bot_logs")
	}
	hd := &historyDiff{}
	var atEnds []time.Time
	out.Scoreboards = make([]coordinator.Scoreboard, 0, n)
	final, err := scoreTimeline(ctx, tx, logs, from, days, baseNodes, overlay,
		func(b botLog, surveys int, scores map[int64]score) error {
			at := time.Unix(b.End, 0).UTC()
			atEnds = append(atEnds, at)
			for node, s := range scores {
				hd.ins = append(hd.ins, historyRow{Node: node, At: at, score: s})
			}
			out.Scoreboards = append(out.Scoreboards, coordinator.Scoreboard{Surveys: int64(surveys), Scored: int64(len(scores))})
			return nil
		})
	if err != nil {
		return out, err
	}
	cur, err := nodeScores(ctx, tx)
	if err != nil {
		return out, err
	}
	changed, err := writeNodeScores(ctx, tx, cur, final)
	if err != nil {
		return out, err
	}
	out.Scoreboards[n-1].Changed = changed
	cp.Reach(ctx, "tx_scores")
	// A re-run replaces rather than fails on the unique (node_id, score_at).
	if _, err := tx.Exec(ctx, `DELETE FROM score_history WHERE score_at = ANY($1::timestamp[])`, atEnds); err != nil {
		return out, fmt.Errorf("replacing score history: %w", err)
	}
	if err := writeHistory(ctx, tx, hd, bulk); err != nil {
		return out, err
	}
	if err := setScoreboardState(ctx, tx, ends[n-1], days); err != nil {
		return out, err
	}
	cp.Reach(ctx, "tx_scoreboard")
	// Readers (coordinator serve) learn of each batch when the range commits.
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, id::text) FROM unnest($2::int8[]) AS id`, BatchChannel, out.BotLogIDs); err != nil {
		return out, fmt.Errorf("notifying %s: %w", BatchChannel, err)
	}
	return out, nil
}

// shares is a batch's error-class counts, as readClassShares reads them
// back (nil without evidence).
func shares(botLogID int64, ev *coordinator.BatchEvidence) *coordinator.ClassShares {
	if ev == nil {
		return nil
	}
	c := &coordinator.ClassShares{BotLogID: botLogID, Submissions: ev.Submissions, ByClass: map[string]int{}}
	for _, k := range ev.Classes {
		c.ByClass[k.Class] = k.Submissions
	}
	return c
}
