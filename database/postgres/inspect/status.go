package inspect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/delegation-program/uptime-coordinator/alerting/queue"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
)

// RecentBatches is how many of the latest batches Status lists.
const RecentBatches = 12

// Status is the answer of `coordinator status`.
type Status struct {
	Now           time.Time `json:"now"`
	SchemaVersion int64     `json:"schema_version"`
	// LastBatch is the latest committed batch; nil when none was committed
	// since init-database.
	LastBatch *BatchStatus `json:"last_batch"`
	// BehindSeconds is how far the end of the latest batch (or of the
	// starting row) lies behind now; BatchesToCatchUp the windows already
	// over (grace period included) that the loop still has to process.
	BehindSeconds    float64 `json:"behind_seconds"`
	BatchesToCatchUp int     `json:"batches_to_catch_up"`
	// LastFailure is the latest failed batch attempt recorded; nil when none.
	LastFailure *Failure `json:"last_failure"`
	// LockHolder is the session holding the coordinator's advisory lock: a
	// running coordinator. Nil when no coordinator runs on the database.
	LockHolder *LockHolder   `json:"lock_holder"`
	Recent     []BatchStatus `json:"recent_batches"` // newest first
	Alerts     AlertStatus   `json:"alerts"`
}

// AlertStatus sums up the per-producer alerts and their delivery queue.
type AlertStatus struct {
	Subscriptions int64 `json:"subscriptions"`
	Firing        int64 `json:"firing"` // alerts fired and not resolved
	// Pending deliveries are queued or waiting for a retry; Dead ones are
	// dead letters (attempts exhausted, or refused for good).
	Pending int64 `json:"pending_deliveries"`
	Dead    int64 `json:"dead_letters"`
}

// BatchStatus is one committed batch.
type BatchStatus struct {
	BotLogID           int64     `json:"bot_log_id"`
	WindowStart        time.Time `json:"window_start"`
	WindowEnd          time.Time `json:"window_end"`
	ValidSubmissions   int       `json:"valid_submissions"` // bot_logs.files_processed
	ProducersWithPoint int       `json:"producers_with_point"`
	ProcessingSeconds  float64   `json:"processing_seconds"`
	// Evidence is false for a batch scored before evidence was recorded:
	// the counts below are then absent (zero).
	Evidence       bool               `json:"evidence"`
	Submissions    int                `json:"submissions"`
	Unverified     int                `json:"unverified"`
	Invalid        int                `json:"invalid"`
	Producers      int                `json:"producers"`
	InvalidByClass map[string]int     `json:"invalid_by_class"`
	ClassShares    map[string]float64 `json:"class_shares"` // share of the batch's submissions, 0..1
}

// Failure is a failed batch attempt.
type Failure struct {
	At          time.Time `json:"at"`
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
	Attempt     int       `json:"attempt"` // 1 for the first attempt
	Final       bool      `json:"final"`   // the batch was abandoned
	Error       string    `json:"error"`
}

// LockHolder is the database session holding the coordinator lock.
type LockHolder struct {
	PID int `json:"pid"` // the server process of the session
	// ApplicationName is "coordinator pid=<pid> host=<host>" for this
	// coordinator (the process and host of the coordinator itself).
	ApplicationName string     `json:"application_name"`
	ClientAddr      string     `json:"client_addr,omitempty"` // hidden from roles without pg_read_all_stats
	Since           *time.Time `json:"since,omitempty"`       // hidden likewise
}

// DefaultInterval is the survey interval Status assumes before any batch
// was committed (SURVEY_INTERVAL_MINUTES' default).
const DefaultInterval = 20 * time.Minute

// Grace is how long after a window's end the loop waits before scoring it.
const Grace = 2 * time.Minute

// ReadStatus reads the coordinator's status as of now. The survey interval
// is the latest committed batch's (DefaultInterval before the first), so
// that status needs nothing but the database settings.
func ReadStatus(ctx context.Context, db Querier, now time.Time) (*Status, error) {
	st := &Status{Now: now.UTC(), Recent: []BatchStatus{}}
	if err := db.QueryRow(ctx, `SELECT coalesce(max(version_id), 0) FROM goose_db_version WHERE is_applied`).Scan(&st.SchemaVersion); err != nil {
		return nil, fmt.Errorf("reading the schema version: %w", err)
	}
	rows, err := db.Query(ctx, `SELECT b.id, b.batch_start_epoch, b.batch_end_epoch, coalesce(b.files_processed, 0), coalesce(b.processing_time, 0),
			(SELECT count(*) FROM points_summary ps WHERE ps.bot_log_id = b.id),
			s.bot_log_id IS NOT NULL, coalesce(s.submissions, 0), coalesce(s.unverified, 0), coalesce(s.invalid, 0), coalesce(s.producers, 0),
			coalesce((SELECT jsonb_object_agg(c.class, c.submissions) FROM batch_error_classes c WHERE c.bot_log_id = b.id), '{}')
		FROM bot_logs b LEFT JOIN batch_evidence_summary s ON s.bot_log_id = b.id
		WHERE b.files_processed > -1 AND b.batch_end_epoch IS NOT NULL
		ORDER BY b.batch_end_epoch DESC, b.id DESC LIMIT $1`, RecentBatches)
	if err != nil {
		return nil, fmt.Errorf("reading the latest batches: %w", err)
	}
	st.Recent, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (BatchStatus, error) {
		var b BatchStatus
		var start, end int64
		var points int64
		err := row.Scan(&b.BotLogID, &start, &end, &b.ValidSubmissions, &b.ProcessingSeconds, &points,
			&b.Evidence, &b.Submissions, &b.Unverified, &b.Invalid, &b.Producers, &b.InvalidByClass)
		b.WindowStart, b.WindowEnd, b.ProducersWithPoint = time.Unix(start, 0).UTC(), time.Unix(end, 0).UTC(), int(points)
		b.ClassShares = map[string]float64{}
		for class, n := range b.InvalidByClass {
			if b.Submissions > 0 {
				b.ClassShares[class] = float64(n) / float64(b.Submissions)
			}
		}
		return b, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the latest batches: %w", err)
	}
	if len(st.Recent) > 0 {
		st.LastBatch = &st.Recent[0]
	}

	// How far behind: from the latest bot_logs row, the starting row included.
	var lastEnd *int64
	if err := db.QueryRow(ctx, `SELECT max(batch_end_epoch) FROM bot_logs`).Scan(&lastEnd); err != nil {
		return nil, fmt.Errorf("reading the latest batch end: %w", err)
	}
	if lastEnd != nil {
		end := time.Unix(*lastEnd, 0)
		st.BehindSeconds = now.Sub(end).Seconds()
		interval := DefaultInterval
		if l := st.LastBatch; l != nil && l.WindowEnd.After(l.WindowStart) {
			interval = l.WindowEnd.Sub(l.WindowStart)
		}
		st.BatchesToCatchUp = max(int(now.Sub(end.Add(Grace))/interval), 0)
	}

	var f Failure
	err = db.QueryRow(ctx, `SELECT failed_at, window_start, window_end, attempt, final, error FROM coordinator_failures ORDER BY id DESC LIMIT 1`).
		Scan(&f.At, &f.WindowStart, &f.WindowEnd, &f.Attempt, &f.Final, &f.Error)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("reading the last failure: %w", err)
	default:
		f.At, f.WindowStart, f.WindowEnd = f.At.UTC(), f.WindowStart.UTC(), f.WindowEnd.UTC()
		st.LastFailure = &f
	}

	var h LockHolder
	var app, addr *string
	var since *time.Time
	key := postgres.CoordinatorLockKey
	err = db.QueryRow(ctx, `SELECT l.pid, a.application_name, host(a.client_addr), a.backend_start
		FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND l.classid::bigint = $1 AND l.objid::bigint = $2`, key>>32, key&0xffff_ffff).Scan(&h.PID, &app, &addr, &since)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("reading the coordinator lock: %w", err)
	default:
		if app != nil {
			h.ApplicationName = *app
		}
		if addr != nil {
			h.ClientAddr = *addr
		}
		if since != nil {
			s := since.UTC()
			h.Since = &s
		}
		st.LockHolder = &h
	}

	counts, err := queue.Count(ctx, db)
	if err != nil {
		return nil, err
	}
	st.Alerts.Pending, st.Alerts.Dead = counts.Pending, counts.Dead
	if err := db.QueryRow(ctx, `SELECT (SELECT count(*) FROM alert_subscriptions), (SELECT count(*) FROM alert_state)`).
		Scan(&st.Alerts.Subscriptions, &st.Alerts.Firing); err != nil {
		return nil, fmt.Errorf("reading the alert subscriptions: %w", err)
	}
	return st, nil
}

// WriteStatus writes st as text.
func WriteStatus(w io.Writer, st *Status) error {
	var b strings.Builder
	if st.LastBatch == nil {
		b.WriteString("Last batch: none committed yet\n")
	} else {
		l := st.LastBatch
		fmt.Fprintf(&b, "Last batch: #%d, window %s UTC\n", l.BotLogID, window(l.WindowStart, l.WindowEnd))
	}
	fmt.Fprintf(&b, "Behind:     %s behind real time, %d %s to catch up\n", (time.Duration(st.BehindSeconds) * time.Second).Round(time.Second),
		st.BatchesToCatchUp, plural(st.BatchesToCatchUp, "batch", "batches"))
	if f := st.LastFailure; f == nil {
		b.WriteString("Last failure: none recorded\n")
	} else {
		final := ""
		if f.Final {
			final = ", abandoned"
		}
		fmt.Fprintf(&b, "Last failure: %s, batch %s UTC, attempt %d%s: %s\n", f.At.Format(time.RFC3339), window(f.WindowStart, f.WindowEnd), f.Attempt, final, f.Error)
	}
	if h := st.LockHolder; h == nil {
		b.WriteString("Lock holder: none (no coordinator is running on this database)\n")
	} else {
		fmt.Fprintf(&b, "Lock holder: server pid %d", h.PID)
		if h.ApplicationName != "" {
			fmt.Fprintf(&b, ", %s", h.ApplicationName)
		}
		if h.ClientAddr != "" {
			fmt.Fprintf(&b, ", from %s", h.ClientAddr)
		}
		if h.Since != nil {
			fmt.Fprintf(&b, ", since %s", h.Since.Format(time.RFC3339))
		}
		b.WriteByte('\n')
	}
	a := st.Alerts
	fmt.Fprintf(&b, "Alerts: %d %s, %d firing; deliveries: %d pending, %d dead %s\n", a.Subscriptions, plural(int(a.Subscriptions), "subscription", "subscriptions"),
		a.Firing, a.Pending, a.Dead, plural(int(a.Dead), "letter", "letters"))
	fmt.Fprintf(&b, "Schema version: %d\n", st.SchemaVersion)
	if len(st.Recent) > 0 {
		fmt.Fprintf(&b, "Latest %d %s:\n", len(st.Recent), plural(len(st.Recent), "batch", "batches"))
		for _, r := range st.Recent {
			fmt.Fprintf(&b, "  #%-7d %s  %6d valid, %5d with a point", r.BotLogID, window(r.WindowStart, r.WindowEnd), r.ValidSubmissions, r.ProducersWithPoint)
			if !r.Evidence {
				b.WriteString("  (scored before evidence was recorded)\n")
				continue
			}
			fmt.Fprintf(&b, ", %d submissions from %d producers, %d invalid, %d unverified", r.Submissions, r.Producers, r.Invalid, r.Unverified)
			if len(r.InvalidByClass) > 0 {
				var parts []string
				for _, c := range ordered(r.InvalidByClass, coordinator.ClassNames) {
					parts = append(parts, fmt.Sprintf("%s %.1f%%", c, 100*r.ClassShares[c]))
				}
				fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
			}
			b.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
