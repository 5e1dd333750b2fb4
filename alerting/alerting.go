// Package alerting evaluates the per-producer alert rules of every
// subscription in a batch's transaction, keeps the fire-once / resolve-once
// state per (subscription, rule, producer), and writes the resulting
// notifications — with the operator alerts — to the transactional outbox,
// from which package queue delivers them.
package alerting

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/delegation-program/uptime-coordinator/alert"
	"github.com/delegation-program/uptime-coordinator/alerting/channels"
	"github.com/delegation-program/uptime-coordinator/alerting/queue"
	"github.com/delegation-program/uptime-coordinator/alerting/rules"
	"github.com/delegation-program/uptime-coordinator/coordinator"
)

// StepName names the batch transaction step of the alerts.
const StepName = "alerts"

// Evaluator is the alerts' step of the batch transaction.
type Evaluator struct {
	Queue *queue.Queue
	// Operator composes the operator alerts (nil: none).
	Operator *alert.Alerter
	// PublicURL (PUBLIC_URL) is the base URL of `coordinator serve`; when
	// set, messages link to the producer's page.
	PublicURL string
	Logger    *slog.Logger
}

type subscription struct {
	id        int64
	all       bool
	producers []string
	rules     []rules.Rule
}

type stateKey struct {
	sub      int64
	rule     string
	producer string
}

// Step evaluates the batch: it updates every producer's consecutive-miss
// count, steps every subscription's rules for its producers, records fired
// and resolved alerts, and writes their notifications and the batch's
// operator alerts to the outbox — all in tx.
func (e *Evaluator) Step(ctx context.Context, tx pgx.Tx, rec *coordinator.Record, out coordinator.Committed) error {
	var msgs []queue.Outgoing
	w := rec.Window
	if e.Operator.Enabled() {
		sum := &coordinator.Summary{Window: w, Submissions: len(rec.Result.Valid), Result: rec.Result, Verification: rec.ProcessingTime,
			Submitters: rec.Submitters, PrevSubmitters: rec.PrevSubmitters, Evidence: rec.Evidence, Committed: out}
		for _, n := range rec.Result.Invalid {
			sum.Submissions += n
		}
		for i, m := range e.Operator.Batch(sum) {
			msgs = append(msgs, operatorMessage(m, out.BotLogID, w, i))
		}
	}

	began := time.Now()
	outcomes, err := e.outcomes(ctx, tx, rec, out.BotLogID, out.NotYetKnown)
	if err != nil {
		return err
	}
	missTime := time.Since(began)
	subs, err := loadSubscriptions(ctx, tx)
	if err != nil {
		return err
	}
	var scoreTime time.Duration
	var counted []string
	if len(subs) > 0 {
		t := time.Now()
		if counted, err = scores(ctx, tx, subs, outcomes, w, out.BotLogID, rec.UptimeDays); err != nil {
			return err
		}
		scoreTime = time.Since(t)
		active, err := loadState(ctx, tx)
		if err != nil {
			return err
		}
		var fired, resolved []stateKey
		for _, s := range subs {
			producers := s.producers
			if s.all {
				producers = make([]string, 0, len(outcomes))
				for p := range outcomes {
					producers = append(producers, p)
				}
				slices.Sort(producers)
			}
			for _, r := range s.rules {
				for _, p := range producers {
					o, ok := outcomes[p]
					if !ok {
						continue // not in nodes yet
					}
					k := stateKey{s.id, r.Key(), p}
					_, tr := r.Step(active[k], *o)
					switch tr {
					case rules.Fired:
						fired = append(fired, k)
					case rules.Resolved:
						resolved = append(resolved, k)
					default:
						continue
					}
					msgs = append(msgs, queue.Outgoing{SubscriptionID: s.id, BotLogID: out.BotLogID,
						Message: e.message(s.id, r, tr, *o, out.BotLogID, w)})
				}
			}
		}
		if err := saveState(ctx, tx, fired, resolved, out.BotLogID); err != nil {
			return err
		}
	}
	n, err := e.Queue.EnqueueTx(ctx, tx, msgs)
	if err != nil {
		return err
	}
	e.log().Debug("alerts step", "bot_log_id", out.BotLogID, "producers", len(outcomes), "subscriptions", len(subs),
		"messages", n, "miss_counts_seconds", missTime.Seconds(), "scores_seconds", scoreTime.Seconds(), "score_windows", counted,
		"seconds", time.Since(began).Seconds())
	if n > 0 {
		e.log().Info("alerts queued", "bot_log_id", out.BotLogID, "messages", n)
	}
	return nil
}

// OnFailure queues the alert of a batch abandoned after its retries (in a
// transaction of its own: the batch rolled back). It is an engine hook; a
// failure to queue is logged.
func (e *Evaluator) OnFailure(ctx context.Context, f coordinator.Failure) {
	var msgs []queue.Outgoing
	// Each abandonment is news, even of a window abandoned before.
	now := time.Now().UnixNano()
	var w coordinator.Window // the zero window: unknown, keyed apart
	if f.Window != nil {
		w = *f.Window
	}
	for i, m := range e.Operator.Abandoned(f) {
		msgs = append(msgs, operatorMessage(m, 0, w, i, now))
	}
	if len(msgs) == 0 {
		return
	}
	if err := e.Queue.Enqueue(ctx, msgs); err != nil {
		e.log().Error("the abandoned-batch alert could not be queued", "error", err)
	}
}

func (e *Evaluator) log() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.Default()
}

// OperatorMessage wraps an operator alert that is about a range of batches
// rather than one committed batch (rescore, reverify: w is the range); key
// identifies it.
func OperatorMessage(m alert.Message, w coordinator.Window, key ...any) queue.Outgoing {
	return operatorMessage(m, 0, w, key...)
}

// operatorMessage wraps an operator alert; key identifies it (a batch's
// alerts are identified by the batch window and their place).
func operatorMessage(m alert.Message, botLogID int64, w coordinator.Window, key ...any) queue.Outgoing {
	return queue.Outgoing{BotLogID: botLogID, Message: channels.Message{
		ID:          queue.Key(append([]any{"operator", m.Kind, w.Start.Unix(), w.End.Unix()}, key...)...),
		Event:       channels.Operator,
		BotLogID:    botLogID,
		WindowStart: stamp(w.Start),
		WindowEnd:   stamp(w.End),
		Reason:      m.Kind,
		Text:        m.Text,
	}}
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// outcomes updates the consecutive-miss count of every producer in nodes
// (but those of notYet: in a catch-up, producers first seen in a later
// batch of the range) and returns the producers' outcomes of the batch.
func (e *Evaluator) outcomes(ctx context.Context, tx pgx.Tx, rec *coordinator.Record, botLogID int64, notYet map[string]bool) (map[string]*rules.Outcome, error) {
	pointed := map[string]bool{}
	for _, p := range rec.Result.Points {
		pointed[p.Submission.Submitter] = true
	}
	outcomes := map[string]*rules.Outcome{}
	var changed []string
	var counts []int32
	rows, err := tx.Query(ctx, `SELECT DISTINCT n.block_producer_key, coalesce(m.misses, 0), m.producer IS NOT NULL
		FROM nodes n LEFT JOIN alert_producer_misses m ON m.producer = n.block_producer_key
		WHERE n.block_producer_key IS NOT NULL`)
	if err != nil {
		return nil, fmt.Errorf("reading miss counts: %w", err)
	}
	var key string
	var prev int32
	var known bool
	_, err = pgx.ForEachRow(rows, []any{&key, &prev, &known}, func() error {
		if notYet[key] {
			return nil
		}
		next := rules.NextMisses(int(prev), pointed[key])
		outcomes[key] = &rules.Outcome{Producer: key, Misses: next, Failures: map[string]int{}}
		if !known || int(prev) != next {
			changed = append(changed, key)
			counts = append(counts, int32(next))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading miss counts: %w", err)
	}
	if len(changed) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO alert_producer_misses (producer, misses, bot_log_id)
			SELECT p, m, $3 FROM unnest($1::text[], $2::int4[]) AS u(p, m)
			ON CONFLICT (producer) DO UPDATE SET misses = EXCLUDED.misses, bot_log_id = EXCLUDED.bot_log_id`,
			changed, counts, botLogID); err != nil {
			return nil, fmt.Errorf("updating miss counts: %w", err)
		}
	}
	for _, o := range outcomes {
		o.Result = coordinator.OutcomeNoSubmission
	}
	if rec.Evidence != nil {
		for _, p := range rec.Evidence.Producers {
			if o, ok := outcomes[p.Producer]; ok {
				o.Result, o.Submissions, o.Valid, o.Unverified = p.Outcome, p.Submissions, p.Valid, p.Unverified
				for c, n := range p.InvalidByClass {
					o.Failures[c] = n
				}
			}
		}
	} else {
		// Without evidence (turned off): valid submissions only.
		for _, s := range rec.Result.Valid {
			if o, ok := outcomes[s.Submitter]; ok {
				o.Submissions++
				o.Valid++
				o.Result = coordinator.OutcomeOffChain
			}
		}
		for p := range pointed {
			if o, ok := outcomes[p]; ok {
				o.Result = coordinator.OutcomePoint
			}
		}
	}
	return outcomes, nil
}

func loadSubscriptions(ctx context.Context, tx pgx.Tx) ([]subscription, error) {
	rows, err := tx.Query(ctx, `SELECT id, all_producers, producers, rules FROM alert_subscriptions ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("reading alert subscriptions: %w", err)
	}
	subs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (subscription, error) {
		var s subscription
		var raw []byte
		if err := row.Scan(&s.id, &s.all, &s.producers, &raw); err != nil {
			return s, err
		}
		if err := json.Unmarshal(raw, &s.rules); err != nil {
			return s, fmt.Errorf("subscription %d: rules: %w", s.id, err)
		}
		return s, nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading alert subscriptions: %w", err)
	}
	return subs, nil
}

// scores fills the score windows the subscriptions' score_below rules need,
// for every producer with an outcome, counted as the coordinator counts its
// score: the batches lying inside [end - window, end]. The window of
// UPTIME_DAYS_FOR_SCORE is the score the batch has just recorded in
// score_history (nodes.score_percent); other windows are kept per node in
// alert_score_window_points (see windowPoints). It returns how each of
// these windows was brought up to date, as "7d=incremental" or "7d=full".
func scores(ctx context.Context, tx pgx.Tx, subs []subscription, outcomes map[string]*rules.Outcome, w coordinator.Window, botLogID int64, uptimeDays int) ([]string, error) {
	var counted []string
	windows := map[string]bool{}
	every := false    // a subscription to every producer has a score rule
	var keys []string // else: the producers whose scores are needed
	for _, s := range subs {
		for _, r := range s.rules {
			if r.Kind == rules.ScoreBelow {
				windows[r.Window] = true
				every = every || s.all
				keys = append(keys, s.producers...)
			}
		}
	}
	filter, args := "", []any{}
	if !every {
		slices.Sort(keys)
		keys = slices.Compact(keys)
		filter, args = " AND n.block_producer_key = ANY($2::text[])", []any{keys}
	}
	for _, name := range slices.Sorted(maps.Keys(windows)) {
		d := rules.Windows[name]
		if d == time.Duration(uptimeDays)*24*time.Hour {
			// The batch's own row of score_history: nodes.score_percent
			// batch after batch, but in a catch-up nodes hold the scores
			// of the range's last batch.
			rows, err := tx.Query(ctx, `SELECT DISTINCT ON (n.block_producer_key) n.block_producer_key, coalesce(h.score_percent, 0)::float8
				FROM nodes n LEFT JOIN score_history h ON h.node_id = n.id AND h.score_at = $1
				WHERE n.block_producer_key IS NOT NULL`+filter+` ORDER BY n.block_producer_key, n.id`,
				append([]any{w.End.UTC()}, args...)...)
			if err != nil {
				return nil, fmt.Errorf("reading the scores of the %s window: %w", name, err)
			}
			var key string
			var pct float64
			if _, err := pgx.ForEachRow(rows, []any{&key, &pct}, func() error {
				if o, ok := outcomes[key]; ok {
					if o.Scores == nil {
						o.Scores = map[string]float64{}
					}
					o.Scores[name] = pct
				}
				return nil
			}); err != nil {
				return nil, fmt.Errorf("reading the scores of the %s window: %w", name, err)
			}
			continue
		}
		seconds := int64(d / time.Second)
		surveys, incremental, err := windowPoints(ctx, tx, seconds, w.End.Unix(), botLogID)
		if err != nil {
			return nil, fmt.Errorf("counting the points of the %s window: %w", name, err)
		}
		if incremental {
			counted = append(counted, name+"=incremental")
		} else {
			counted = append(counted, name+"=full")
		}
		points := map[string]int64{}
		// Summed per key: several nodes rows may name the same producer.
		rows, err := tx.Query(ctx, `SELECT n.block_producer_key, p.points::int8 FROM alert_score_window_points p
			JOIN nodes n ON n.id = p.node_id
			WHERE p.window_seconds = $1 AND p.points <> 0 AND n.block_producer_key IS NOT NULL`+filter, append([]any{seconds}, args...)...)
		if err != nil {
			return nil, fmt.Errorf("reading the points of the %s window: %w", name, err)
		}
		var key string
		var n int64
		if _, err := pgx.ForEachRow(rows, []any{&key, &n}, func() error { points[key] += n; return nil }); err != nil {
			return nil, fmt.Errorf("reading the points of the %s window: %w", name, err)
		}
		for p, o := range outcomes {
			if !every && !slices.Contains(keys, p) {
				continue
			}
			if o.Scores == nil {
				o.Scores = map[string]float64{}
			}
			o.Scores[name] = rules.Score(points[p], surveys)
		}
	}
	return counted, nil
}

// windowPoints brings alert_score_window_points of the window of the given
// length to the batch botLogID, whose window ends at end: each node's
// points_summary rows in the batches lying inside [end - seconds, end]. It
// returns the window's surveys (its batches with files_processed > -1).
//
// The counts are updated by the batches entering and leaving the window
// when alert_score_windows says they are exact for the batch just before
// this one (the bot_logs row with the largest id below botLogID) and the
// window's bot_logs rows are those it counted, less those leaving, plus
// those entering; otherwise (no subscription used the window at the batch
// before, a rescore cleared the marker, cleanup_old_data deleted batches, a
// new starting row, a batch re-run) the window is counted in full. Either
// way the marker then says the counts are exact for botLogID.
func windowPoints(ctx context.Context, tx pgx.Tx, seconds, end, botLogID int64) (surveys int64, incremental bool, err error) {
	start := end - seconds
	var mID, mEnd, mBatches int64
	err = tx.QueryRow(ctx, `SELECT bot_log_id, window_end_epoch, batches FROM alert_score_windows
		WHERE window_seconds = $1 FOR UPDATE`, seconds).Scan(&mID, &mEnd, &mBatches)
	marked := err == nil
	if errors.Is(err, pgx.ErrNoRows) {
		mEnd = end // nothing enters or leaves
	} else if err != nil {
		return 0, false, fmt.Errorf("reading the window's state: %w", err)
	}
	prevStart := mEnd - seconds
	// The window's batches and surveys, and those entering and leaving it
	// since the marker's window (rows ending before both windows start are
	// in neither).
	var batches, entering, leaving, previous int64
	if err := tx.QueryRow(ctx, `SELECT
			count(*) FILTER (WHERE batch_start_epoch >= $1 AND batch_end_epoch <= $2),
			count(*) FILTER (WHERE files_processed > -1 AND batch_start_epoch >= $1 AND batch_end_epoch <= $2),
			count(*) FILTER (WHERE batch_start_epoch >= $1 AND batch_end_epoch > $3 AND batch_end_epoch <= $2),
			count(*) FILTER (WHERE batch_start_epoch >= $4 AND batch_start_epoch < $1 AND batch_end_epoch <= $3),
			coalesce((SELECT max(id) FROM bot_logs WHERE id < $5), 0)
		FROM bot_logs WHERE batch_end_epoch >= least($1, $4)`, start, end, mEnd, prevStart, botLogID).Scan(
		&batches, &surveys, &entering, &leaving, &previous); err != nil {
		return 0, false, fmt.Errorf("counting the window's batches: %w", err)
	}
	incremental = marked && mID == previous && mEnd < end && mBatches-leaving+entering == batches
	if incremental {
		if _, err := tx.Exec(ctx, `WITH b AS (
				SELECT id, 1 AS d FROM bot_logs WHERE batch_start_epoch >= $2 AND batch_end_epoch > $3 AND batch_end_epoch <= $4
				UNION ALL
				SELECT id, -1 FROM bot_logs WHERE batch_start_epoch >= $5 AND batch_start_epoch < $2 AND batch_end_epoch <= $3
			), c AS (
				SELECT ps.node_id, sum(b.d)::int AS n FROM points_summary ps JOIN b ON b.id = ps.bot_log_id
				GROUP BY ps.node_id HAVING sum(b.d) <> 0
			)
			INSERT INTO alert_score_window_points (window_seconds, node_id, points) SELECT $1, node_id, n FROM c
			ON CONFLICT (window_seconds, node_id) DO UPDATE SET points = alert_score_window_points.points + EXCLUDED.points`,
			seconds, start, mEnd, end, prevStart); err != nil {
			return 0, false, fmt.Errorf("updating the window's counts: %w", err)
		}
	} else {
		if _, err := tx.Exec(ctx, `DELETE FROM alert_score_window_points WHERE window_seconds = $1`, seconds); err != nil {
			return 0, false, fmt.Errorf("clearing the window's counts: %w", err)
		}
		// The unique index on (bot_log_id, node_id) serves the count.
		if _, err := tx.Exec(ctx, `INSERT INTO alert_score_window_points (window_seconds, node_id, points)
			SELECT $1, ps.node_id, count(*) FROM points_summary ps
			WHERE ps.bot_log_id = ANY(ARRAY(SELECT id FROM bot_logs WHERE batch_start_epoch >= $2 AND batch_end_epoch <= $3))
			GROUP BY ps.node_id`, seconds, start, end); err != nil {
			return 0, false, fmt.Errorf("counting the window's points: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO alert_score_windows (window_seconds, bot_log_id, window_end_epoch, batches)
		VALUES ($1, $2, $3, $4) ON CONFLICT (window_seconds) DO UPDATE
		SET bot_log_id = EXCLUDED.bot_log_id, window_end_epoch = EXCLUDED.window_end_epoch, batches = EXCLUDED.batches`,
		seconds, botLogID, end, batches); err != nil {
		return 0, false, fmt.Errorf("recording the window's state: %w", err)
	}
	return surveys, incremental, nil
}

func loadState(ctx context.Context, tx pgx.Tx) (map[stateKey]bool, error) {
	rows, err := tx.Query(ctx, `SELECT subscription_id, rule_key, producer FROM alert_state`)
	if err != nil {
		return nil, fmt.Errorf("reading alert state: %w", err)
	}
	active := map[stateKey]bool{}
	var k stateKey
	if _, err := pgx.ForEachRow(rows, []any{&k.sub, &k.rule, &k.producer}, func() error { active[k] = true; return nil }); err != nil {
		return nil, fmt.Errorf("reading alert state: %w", err)
	}
	return active, nil
}

func saveState(ctx context.Context, tx pgx.Tx, fired, resolved []stateKey, botLogID int64) error {
	cols := func(keys []stateKey) ([]int64, []string, []string) {
		subs, rs, ps := make([]int64, len(keys)), make([]string, len(keys)), make([]string, len(keys))
		for i, k := range keys {
			subs[i], rs[i], ps[i] = k.sub, k.rule, k.producer
		}
		return subs, rs, ps
	}
	if len(fired) > 0 {
		s, r, p := cols(fired)
		if _, err := tx.Exec(ctx, `INSERT INTO alert_state (subscription_id, rule_key, producer, fired_bot_log_id)
			SELECT s, r, p, $4 FROM unnest($1::int8[], $2::text[], $3::text[]) AS u(s, r, p)`, s, r, p, botLogID); err != nil {
			return fmt.Errorf("recording fired alerts: %w", err)
		}
	}
	if len(resolved) > 0 {
		s, r, p := cols(resolved)
		if _, err := tx.Exec(ctx, `DELETE FROM alert_state a USING unnest($1::int8[], $2::text[], $3::text[]) AS u(s, r, p)
			WHERE a.subscription_id = u.s AND a.rule_key = u.r AND a.producer = u.p`, s, r, p); err != nil {
			return fmt.Errorf("recording resolved alerts: %w", err)
		}
	}
	return nil
}

// message composes a fired or resolved notification.
func (e *Evaluator) message(sub int64, r rules.Rule, tr rules.Transition, o rules.Outcome, botLogID int64, w coordinator.Window) channels.Message {
	rule := r
	m := channels.Message{
		ID:          queue.Key("rule", sub, r.Key(), o.Producer, string(tr), w.End.Unix()),
		Event:       string(tr),
		Producer:    o.Producer,
		Rule:        &rule,
		BotLogID:    botLogID,
		WindowStart: stamp(w.Start),
		WindowEnd:   stamp(w.End),
		Reason:      r.Reason(tr, o),
	}
	if e.PublicURL != "" {
		m.Link = strings.TrimRight(e.PublicURL, "/") + "/producers/" + url.PathEscape(o.Producer)
	}
	var b strings.Builder
	if tr == rules.Fired {
		fmt.Fprintf(&b, "🔴 Alert: producer %s — %s: %s.", o.Producer, r, m.Reason)
	} else {
		fmt.Fprintf(&b, "✅ Resolved: producer %s — %s: %s.", o.Producer, r, m.Reason)
	}
	switch r.Kind {
	case rules.MissedBatches:
		if tr == rules.Fired {
			length := w.End.Sub(w.Start)
			fmt.Fprintf(&b, " Missed batches: %s.", alert.Window(coordinator.Window{Start: w.End.Add(-time.Duration(o.Misses) * length), End: w.End}))
		} else {
			fmt.Fprintf(&b, " Batch %s.", alert.Window(w))
		}
	case rules.ScoreBelow:
		d := rules.Windows[r.Window]
		fmt.Fprintf(&b, " Score window %s (batch %d).", alert.Window(coordinator.Window{Start: w.End.Add(-d), End: w.End}), botLogID)
	default:
		fmt.Fprintf(&b, " Batch %s.", alert.Window(w))
	}
	if r.Kind == rules.ScoreBelow {
		if s := rules.BatchReason(o); s != "" {
			fmt.Fprintf(&b, " This batch: %s.", s)
		}
	}
	if m.Link != "" {
		fmt.Fprintf(&b, " %s", m.Link)
	}
	m.Text = b.String()
	return m
}
