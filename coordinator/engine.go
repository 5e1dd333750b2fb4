package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/delegation-program/uptime-coordinator/internal/retrypolicy"
)

// Engine runs the survey loop: one batch after another, each verified,
// scored and committed in one transaction.
type Engine struct {
	Ledger   Ledger
	Source   SubmissionSource
	Launcher Launcher // nil: submissions are verified by something else

	Interval    time.Duration // SURVEY_INTERVAL_MINUTES
	MiniBatches int           // MINI_BATCH_NUMBER
	UptimeDays  int           // UPTIME_DAYS_FOR_SCORE
	Retries     int           // RETRY_COUNT
	// MaxUnverifiedPercent (MAX_UNVERIFIED_PERCENT): when a Launcher is set
	// and more than this percentage of a window's submissions are still
	// unverified after it finished, the attempt fails (and is retried):
	// a verifier that verifies nothing must not cost every producer a point.
	MaxUnverifiedPercent float64
	// CatchUpAfter turns on catch-up mode: when more than this many
	// windows are already closed, up to CatchUpChunk of them are verified,
	// scored in order and committed in one transaction (with a RangeLedger).
	// 0 keeps one transaction per batch always.
	CatchUpAfter int
	CatchUpChunk int // default 72
	// CopySubmissions copies every submission of a batch into the Postgres
	// submissions table (Cassandra is the primary store).
	CopySubmissions bool
	// NoEvidence turns off the per-producer batch evidence (benchmarks
	// compare the cost with and without it).
	NoEvidence bool

	// Grace is how long after a window's end the collector may still store
	// its submissions (the original waits 2 minutes).
	Grace time.Duration
	// Retry spaces the attempts at a batch (DefaultRetry in the binary).
	Retry retrypolicy.Policy

	Logger *slog.Logger
	Now    func() time.Time // default time.Now

	// BeforeBatch runs before each batch attempt (the application status
	// update). Its error is logged and never stops the batch.
	BeforeBatch func(ctx context.Context) error
	// AfterBatch observes each committed batch (metrics, alerts).
	AfterBatch func(ctx context.Context, s *Summary)
	// OnFailure observes each failed attempt (not a shutdown).
	OnFailure func(ctx context.Context, f Failure)

	// DBTimeout (POSTGRES_STATEMENT_TIMEOUT) bounds each database step of an
	// attempt: reading the latest batch, reading the submissions, the
	// commit. A step that outlives it fails the attempt, which is retried.
	// 0: no bound.
	DBTimeout time.Duration
	// VerifyLimit is the longest verification may legitimately take
	// (WORKER_TIMEOUT; the workers enforce it). Only reported to Busy.
	VerifyLimit time.Duration
	// Busy, when set, is told each time the loop starts a step and how long
	// that step may legitimately take (0: no bound), so that liveness can
	// tell a wedged loop from a busy or waiting one.
	Busy func(what string, limit time.Duration)
	// Checkpoint, when set, is reached before verifying ("verify"), before
	// loading ("load") and after committing ("committed"); fault-injection
	// tests only.
	Checkpoint Checkpoint

	lastSubmitters int // Submitters of the last committed batch
	ahead          readAhead
}

// preBatchTimeout bounds BeforeBatch (the application status update).
const preBatchTimeout = 10 * time.Minute

// step reports the start of a step to Busy and returns ctx bounded by
// limit (unbounded when limit is 0).
func (e *Engine) step(ctx context.Context, what string, limit time.Duration) (context.Context, context.CancelFunc) {
	if e.Busy != nil {
		e.Busy(what, limit)
	}
	if limit <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, limit)
}

// stepErr says so when err is a database step's deadline (DBTimeout)
// rather than the end of ctx: pgx reports only "context deadline exceeded".
func (e *Engine) stepErr(ctx context.Context, err error) error {
	if e.DBTimeout > 0 && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("timeout: no answer within POSTGRES_STATEMENT_TIMEOUT=%v: %w", e.DBTimeout, err)
	}
	return err
}

// Failure describes one failed attempt at a batch (or a catch-up range).
type Failure struct {
	// Window is the batch's window (the range's span), or nil when the
	// attempt failed before the latest batch was read: it is then unknown,
	// and never guessed.
	Window  *Window
	Attempt int // 0 for the first attempt
	Err     error
	// Final is true when the batch is abandoned: its retries are spent or
	// Err is permanent (IsPermanent).
	Final bool
}

// Summary describes one committed batch.
type Summary struct {
	Window      Window
	Submissions int
	Submitters  int // distinct submitters of all the window's submissions, valid or not
	// PrevSubmitters is Submitters of the batch this process committed
	// before (0 when none: the first batch after a start).
	PrevSubmitters int
	Result         *Result
	Committed      Committed
	Evidence       *BatchEvidence // nil when NoEvidence
	Verification   time.Duration
	Duration       time.Duration // from the end of waiting to commit
	Attempt        int
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) log() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.Default()
}

// Run processes batches until ctx is done (returning ctx's error), a batch
// fails after its retries (returning that error), or, when maxBatches > 0,
// maxBatches batches are committed (returning nil).
func (e *Engine) Run(ctx context.Context, maxBatches int) error {
	e.ahead.on = true
	defer func() { e.dropAhead(); e.ahead.on = false }()
	for n := 0; maxBatches <= 0 || n < maxBatches; {
		size, err := e.catchUpSize(ctx, maxBatches-n)
		if err != nil {
			return err
		}
		if size > 0 {
			e.ahead.limit = 0
			if maxBatches > 0 {
				e.ahead.limit = max(maxBatches-n-size, -1)
				if e.ahead.limit == 0 {
					e.ahead.limit = -1
				}
			}
			s, err := e.RunRange(ctx, size)
			if err != nil {
				return err
			}
			n += len(s)
			continue
		}
		if _, err := e.RunBatch(ctx); err != nil {
			return err
		}
		n++
	}
	return nil
}

// RunBatch processes the next batch, retrying it up to Retries times with
// exponential backoff; a permanent error (IsPermanent) abandons it at once.
// A batch that did not commit is never skipped: each attempt starts from
// the latest committed batch.
func (e *Engine) RunBatch(ctx context.Context) (*Summary, error) {
	return retry(ctx, e, "batch", e.attempt)
}

// DefaultRetry is how the coordinator spaces the attempts at a batch (run)
// or a window (reverify): 5 s, doubling up to 2 minutes, without jitter
// (one coordinator per database).
var DefaultRetry = retrypolicy.Policy{First: 5 * time.Second, Max: 2 * time.Minute}

// retry makes attempts at a batch (kind "batch") or a catch-up range until
// one succeeds, an error is permanent or Retries retries have failed,
// waiting as Retry says between them. Each failure goes to OnFailure; a
// shutdown (ctx done) is no failure and returns ctx's error.
func retry[T any](ctx context.Context, e *Engine, kind string, try func(ctx context.Context, attempt int) (T, *Window, error)) (T, error) {
	var (
		zero T
		last Failure
		next int
	)
	res, err := backoff.Retry(ctx, func() (T, error) {
		attempt := next
		next++
		res, w, err := try(ctx, attempt)
		if err == nil {
			return res, nil
		}
		if ctx.Err() != nil {
			return zero, backoff.Permanent(ctx.Err())
		}
		permanent := IsPermanent(err)
		last = Failure{Window: w, Attempt: attempt, Err: err, Final: permanent || attempt >= e.Retries}
		if e.OnFailure != nil {
			e.OnFailure(ctx, last)
		}
		if !last.Final {
			return zero, err
		}
		// An abandoned batch stops the loop: say so as an ERROR record too,
		// not only in the error the command exits with.
		e.log().Error(kind+" abandoned; the coordinator stops", append(windowAttrs(w),
			"attempts", attempt+1, "permanent", permanent, "error", err)...)
		return zero, backoff.Permanent(err)
	},
		backoff.WithBackOff(e.Retry.BackOff()),
		backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(err error, delay time.Duration) {
			e.log().Error(kind+" failed; retrying", append(windowAttrs(last.Window),
				"attempt", last.Attempt+1, "retries_left", e.Retries-last.Attempt, "retry_in", delay, "error", err)...)
			if e.Busy != nil {
				e.Busy("waiting to retry the "+kind, delay)
			}
		}))
	switch {
	case err == nil:
		return res, nil
	case ctx.Err() != nil:
		return zero, ctx.Err()
	case IsPermanent(err):
		return zero, fmt.Errorf("%s: permanent error, not retried: %w", describe(kind, last.Window), err)
	default:
		return zero, fmt.Errorf("%s: giving up after %d attempts: %w", describe(kind, last.Window), last.Attempt+1, err)
	}
}

// describe names a batch (or catch-up) in errors; w is nil when the latest
// batch could not be read.
func describe(kind string, w *Window) string {
	if w == nil {
		return "the next " + kind + " (its window could not be read)"
	}
	return kind + " " + fmtWindow(*w)
}

// windowAttrs are the log attributes of a window, if known.
func windowAttrs(w *Window) []any {
	if w == nil {
		return nil
	}
	return []any{"window_start", w.Start, "window_end", w.End}
}

// attempt makes one attempt at the next batch. Its window is nil when the
// latest batch could not be read.
func (e *Engine) attempt(ctx context.Context, attempt int) (*Summary, *Window, error) {
	phase := e.now()
	dbctx, cancel := e.step(ctx, "reading the latest batch", e.DBTimeout)
	last, err := e.Ledger.LastBatch(dbctx)
	cancel()
	if err != nil {
		return nil, nil, fmt.Errorf("reading the latest batch: %w", e.stepErr(ctx, err))
	}
	w := Window{Start: last.End, End: last.End.Add(e.Interval)}
	phase = e.phaseDone("read_last_batch", w, phase)
	if wait := w.End.Add(e.Grace).Sub(e.now()); wait > 0 {
		e.log().Info("waiting for the batch window to close", "window_start", w.Start, "window_end", w.End, "wait", wait.Round(time.Second))
		if e.Busy != nil {
			e.Busy("waiting for the batch window to close", wait)
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, &w, err
		}
		phase = e.phaseDone("wait_for_window", w, phase)
	}
	if e.BeforeBatch != nil {
		pctx, cancel := e.step(ctx, "the pre-batch step (application status update)", preBatchTimeout)
		err := e.BeforeBatch(pctx)
		cancel()
		if err != nil {
			e.log().Error("pre-batch step failed; continuing with the batch", "error", err)
		}
		phase = e.phaseDone("before_batch", w, phase)
	}
	began := e.now()
	e.Checkpoint.Reach(ctx, "verify")
	verifyStart := e.now()
	if e.Launcher != nil {
		if e.Busy != nil {
			e.Busy("verifying submissions", e.VerifyLimit)
		}
		if err := e.Launcher.Verify(ctx, w, w.Split(e.MiniBatches)); err != nil {
			return nil, &w, fmt.Errorf("verifying submissions: %w", err)
		}
	}
	verification := e.now().Sub(verifyStart)
	if e.Launcher != nil {
		phase = e.phaseDone("verify", w, phase)
	}

	dbctx, cancel = e.step(ctx, "reading submissions", e.DBTimeout)
	defer cancel()
	e.Checkpoint.Reach(ctx, "load")
	subs, err := e.Source.Submissions(dbctx, w)
	cancel()
	if err != nil {
		return nil, &w, fmt.Errorf("loading submissions: %w", e.stepErr(ctx, err))
	}
	phase = e.phaseDone("load_submissions", w, phase, "submissions", len(subs))
	if e.Launcher != nil {
		if err := checkVerified(subs, e.MaxUnverifiedPercent); err != nil {
			return nil, &w, err
		}
	}
	submitters := countSubmitters(subs)
	var result *Result
	var evidence *BatchEvidence
	dbctx, cancel = e.step(ctx, "committing the batch", e.DBTimeout)
	defer cancel()
	committed, err := e.Ledger.CommitBatch(dbctx, last, func(prev []ShortlistedHash) (*Record, error) {
		scoring := e.now()
		result = Score(subs, prev)
		e.phaseDone("score", w, scoring)
		var rec *Record
		rec, evidence = e.record(w, subs, result, verification, submitters, e.lastSubmitters)
		return rec, nil
	})
	if err != nil {
		return nil, &w, fmt.Errorf("committing the batch: %w", e.stepErr(ctx, err))
	}
	e.phaseDone("commit", w, phase) // scoring included
	e.Checkpoint.Reach(ctx, "committed")
	s := &Summary{Window: w, Submissions: len(subs), Submitters: submitters, PrevSubmitters: e.lastSubmitters, Result: result, Committed: committed, Evidence: evidence,
		Verification: verification, Duration: e.now().Sub(began), Attempt: attempt}
	e.committed(ctx, s)
	return s, &w, nil
}

// record builds what a batch writes from its scoring result.
func (e *Engine) record(w Window, subs []Submission, result *Result, verification time.Duration, submitters, prevSubmitters int) (*Record, *BatchEvidence) {
	rec := &Record{Window: w, ProcessingTime: verification, Result: result, UptimeDays: e.UptimeDays, Now: e.now(),
		Submitters: submitters, PrevSubmitters: prevSubmitters}
	if e.CopySubmissions {
		rec.Copy = subs
	}
	var evidence *BatchEvidence
	if !e.NoEvidence {
		evidence = Evidence(subs, result)
		rec.Evidence = evidence
	}
	return rec, evidence
}

// committed reports a committed batch: logs, warnings and the AfterBatch
// hook.
func (e *Engine) committed(ctx context.Context, s *Summary) {
	e.lastSubmitters = s.Submitters
	e.logSummary(s)
	e.logMalformed(s)
	if s.Submissions == 0 {
		e.log().Warn("no submissions in window: committed as a survey in which no producer earns a point (is the collector down, or SUBMISSION_STORAGE wrong?)",
			"window_start", s.Window.Start, "window_end", s.Window.End, "bot_log_id", s.Committed.BotLogID)
	}
	if e.AfterBatch != nil {
		e.AfterBatch(ctx, s)
	}
}

// phaseDone logs at debug level how long a phase of the batch took since
// began, and returns the time it ended.
func (e *Engine) phaseDone(name string, w Window, began time.Time, attrs ...any) time.Time {
	end := e.now()
	if e.log().Enabled(context.Background(), slog.LevelDebug) {
		e.log().Debug("batch phase done", append([]any{"phase", name, "took", end.Sub(began), "window_end", w.End}, attrs...)...)
	}
	return end
}

func (e *Engine) logSummary(s *Summary) {
	r := s.Result
	invalid := make([]any, 0, 2*len(r.Invalid))
	for reason, n := range r.Invalid {
		invalid = append(invalid, reason, n)
	}
	e.log().Info("batch committed",
		"bot_log_id", s.Committed.BotLogID,
		"window_start", s.Window.Start, "window_end", s.Window.End,
		"submissions", s.Submissions, "valid", len(r.Valid), slog.Group("invalid", invalid...),
		"producers", r.Submitters, "consensus_hashes", r.Consensus, "shortlisted", len(r.Shortlist),
		"points", len(r.Points), "off_chain", r.OffChain(), "new_nodes", s.Committed.NewNodes,
		"surveys", s.Committed.Scoreboard.Surveys, "scored_nodes", s.Committed.Scoreboard.Scored,
		"incremental_scoreboard", s.Committed.Scoreboard.Incremental,
		"verification_seconds", s.Verification.Seconds(), "batch_seconds", s.Duration.Seconds(), "attempt", s.Attempt+1)
}

func countSubmitters(subs []Submission) int {
	seen := make(map[string]struct{}, len(subs)/4)
	for i := range subs {
		seen[subs[i].Submitter] = struct{}{}
	}
	return len(seen)
}

// maxMalformedLogged bounds the malformed rows logged one by one per batch.
const maxMalformedLogged = 20

// logMalformed logs the batch's malformed rows at WARN, each with its
// reason (the first maxMalformedLogged of them, then how many more).
func (e *Engine) logMalformed(s *Summary) {
	m := s.Result.Malformed
	for i, row := range m {
		if i == maxMalformedLogged {
			e.log().Warn("more malformed submissions ignored", "window_start", s.Window.Start, "window_end", s.Window.End,
				"not_logged", len(m)-maxMalformedLogged, "malformed", len(m))
			break
		}
		e.log().Warn("malformed submission ignored: counted invalid, never scored", "window_start", s.Window.Start,
			"window_end", s.Window.End, "submitter", row.Submission.Submitter, "submitted_at", row.Submission.SubmittedAt,
			"reason", row.Reason)
	}
}

// UnverifiedError says that the verifiers finished but left too many of a
// window's submissions unverified.
type UnverifiedError struct {
	Unverified, Total int
	MaxPercent        float64
}

func (e *UnverifiedError) Error() string {
	return fmt.Sprintf("verifier finished but left %d of %d submissions unverified (more than MAX_UNVERIFIED_PERCENT=%g%%); nothing was committed",
		e.Unverified, e.Total, e.MaxPercent)
}

// checkVerified fails when more than maxPercent of subs are unverified.
func checkVerified(subs []Submission, maxPercent float64) error {
	n := 0
	for i := range subs {
		if subs[i].Verified == nil {
			n++
		}
	}
	if n > 0 && float64(n)*100 > maxPercent*float64(len(subs)) {
		return &UnverifiedError{Unverified: n, Total: len(subs), MaxPercent: maxPercent}
	}
	return nil
}

func fmtWindow(w Window) string {
	return w.Start.UTC().Format(time.DateTime) + " - " + w.End.UTC().Format(time.DateTime)
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// IsShutdown reports whether err only says that the loop was asked to stop.
func IsShutdown(err error) bool {
	return errors.Is(err, context.Canceled)
}
