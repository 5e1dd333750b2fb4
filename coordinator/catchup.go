package coordinator

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// RangeCommitted is what a committed range of batches reports.
type RangeCommitted struct {
	BotLogIDs []int64 // one per batch, in window order
	// NewNodes are, per batch, the nodes rows created for producers it is
	// the first of the range to need.
	NewNodes    []int64
	NotYetKnown []map[string]bool // per batch: see Committed.NotYetKnown
	Scoreboards []Scoreboard      // one per batch
	// PreviousShares are, per batch, the previous batch's error-class
	// counts (nil where it has no evidence).
	PreviousShares []*ClassShares
}

// RangeLedger is a Ledger that can also commit many consecutive batches in
// one transaction: the catch-up path.
type RangeLedger interface {
	Ledger
	// CommitRange checks that last is still the latest batch, reads its
	// shortlist, calls build with it and writes every record build returns
	// (consecutive windows after last, in order) with the same rows as
	// CommitBatch would write one after the other. Nothing is written when
	// any step fails.
	CommitRange(ctx context.Context, last LastBatch, build func(prev []ShortlistedHash) ([]*Record, error)) (RangeCommitted, error)
}

// ScoreRange scores consecutive batches in window order, each from the
// previous one's shortlist, exactly as the loop does batch after batch: subs
// are every batch's submissions (any order), split by window.
func ScoreRange(prev []ShortlistedHash, windows []Window, subs []Submission) []*Result {
	return scoreSplit(prev, splitByWindow(subs, windows))
}

func scoreSplit(prev []ShortlistedHash, subs [][]Submission) []*Result {
	out := make([]*Result, len(subs))
	for i := range subs {
		out[i] = Score(subs[i], prev)
		prev = out[i].Shortlist
	}
	return out
}

// behind returns how many whole windows after last are already closed.
func (e *Engine) behind(last LastBatch) int {
	closed := e.now().Add(-e.Grace).Sub(last.End)
	if closed <= 0 || e.Interval <= 0 {
		return 0
	}
	return int(closed / e.Interval)
}

// catchUpSize returns how many batches the next step should commit at once
// (0: the ordinary one-batch path).
func (e *Engine) catchUpSize(ctx context.Context, limit int) (int, error) {
	if e.CatchUpAfter <= 0 {
		return 0, nil
	}
	if _, ok := e.Ledger.(RangeLedger); !ok {
		return 0, nil
	}
	dbctx, cancel := e.step(ctx, "reading the latest batch", e.DBTimeout)
	last, err := e.Ledger.LastBatch(dbctx)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("reading the latest batch: %w", e.stepErr(ctx, err))
	}
	return e.rangeSize(last, limit), nil
}

// rangeSize is catchUpSize after last.
func (e *Engine) rangeSize(last LastBatch, limit int) int {
	n := e.behind(last)
	if n <= e.CatchUpAfter {
		return 0
	}
	chunk := e.CatchUpChunk
	if chunk <= 0 {
		chunk = 72
	}
	n = min(n, chunk)
	if limit > 0 {
		n = min(n, limit)
	}
	if n < 2 {
		return 0
	}
	return n
}

// readAhead lets a catch-up read the next range's submissions while it
// commits its own (on another connection: the database works on both at
// once). Only Run reads ahead, and only without a Launcher (a window must
// be verified before it is read).
type readAhead struct {
	on    bool // Run is catching up
	limit int  // batches Run may commit after the current range; 0: no limit, <0: none
	next  *prefetch
}

// prefetch is one read ahead: the submissions of span, once done is closed.
type prefetch struct {
	span   Window
	done   chan struct{}
	cancel context.CancelFunc
	subs   []Submission
	err    error
}

// startAhead starts reading the submissions of the range that would follow
// a range ending at end, if Run is going to catch it up next.
func (e *Engine) startAhead(ctx context.Context, end time.Time) {
	e.dropAhead()
	if !e.ahead.on || e.Launcher != nil || e.ahead.limit < 0 {
		return
	}
	n := e.rangeSize(LastBatch{End: end}, e.ahead.limit)
	if n == 0 {
		return
	}
	p := &prefetch{span: Window{Start: end, End: end.Add(time.Duration(n) * e.Interval)}, done: make(chan struct{})}
	var pctx context.Context
	if e.DBTimeout > 0 {
		pctx, p.cancel = context.WithTimeout(ctx, e.DBTimeout)
	} else {
		pctx, p.cancel = context.WithCancel(ctx)
	}
	go func() {
		defer close(p.done)
		p.subs, p.err = e.Source.Submissions(pctx, p.span)
	}()
	e.ahead.next = p
}

// takeAhead returns the submissions of span when a read ahead holds them
// (those of a longer span starting at the same time are cut to span), and
// drops it either way.
func (e *Engine) takeAhead(ctx context.Context, span Window) ([]Submission, bool) {
	p := e.ahead.next
	if p == nil {
		return nil, false
	}
	e.ahead.next = nil
	if !p.span.Start.Equal(span.Start) || p.span.End.Before(span.End) {
		p.cancel()
		<-p.done
		return nil, false
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		p.cancel()
		<-p.done
		return nil, false
	}
	p.cancel()
	if p.err != nil {
		return nil, false // read again, reporting the error if it persists
	}
	subs := p.subs
	if p.span.End.After(span.End) {
		subs = slices.DeleteFunc(slices.Clone(subs), func(s Submission) bool { return !s.SubmittedAt.Before(span.End) })
	}
	return subs, true
}

// dropAhead cancels and forgets the read ahead, if any.
func (e *Engine) dropAhead() {
	if p := e.ahead.next; p != nil {
		e.ahead.next = nil
		p.cancel()
		<-p.done
	}
}

// RunRange catches up n batches in one transaction, retrying like RunBatch.
func (e *Engine) RunRange(ctx context.Context, n int) ([]*Summary, error) {
	return retry(ctx, e, "catch-up", func(ctx context.Context, attempt int) ([]*Summary, *Window, error) {
		return e.attemptRange(ctx, n, attempt)
	})
}

func (e *Engine) attemptRange(ctx context.Context, n, attempt int) ([]*Summary, *Window, error) {
	rs := e.Ledger.(RangeLedger)
	dbctx, cancel := e.step(ctx, "reading the latest batch", e.DBTimeout)
	last, err := e.Ledger.LastBatch(dbctx)
	cancel()
	if err != nil {
		return nil, nil, fmt.Errorf("reading the latest batch: %w", e.stepErr(ctx, err))
	}
	windows := make([]Window, n)
	for i := range windows {
		windows[i] = Window{Start: last.End.Add(time.Duration(i) * e.Interval), End: last.End.Add(time.Duration(i+1) * e.Interval)}
	}
	span := Window{Start: windows[0].Start, End: windows[n-1].End}
	if e.BeforeBatch != nil {
		pctx, cancel := e.step(ctx, "the pre-batch step (application status update)", preBatchTimeout)
		err := e.BeforeBatch(pctx)
		cancel()
		if err != nil {
			e.log().Error("pre-batch step failed; continuing with the batch", "error", err)
		}
	}
	began := e.now()
	e.log().Info("catching up", "batches", n, "window_start", span.Start, "window_end", span.End)
	e.Checkpoint.Reach(ctx, "verify")
	verification := make([]time.Duration, n)
	if e.Launcher != nil {
		for i, w := range windows {
			if e.Busy != nil {
				e.Busy("verifying submissions", e.VerifyLimit)
			}
			t := e.now()
			if err := e.Launcher.Verify(ctx, w, w.Split(e.MiniBatches)); err != nil {
				return nil, &w, fmt.Errorf("verifying submissions of %s: %w", fmtWindow(w), err)
			}
			verification[i] = e.now().Sub(t)
			// When verification is the bottleneck (workers take minutes a
			// window), the windows verified within one interval are
			// committed rather than holding every score back until the
			// whole range is verified: scores stay as fresh as batch after
			// batch.
			if i+1 < n && e.now().Sub(began) >= e.Interval {
				n, windows, verification = i+1, windows[:i+1], verification[:i+1]
				span.End = w.End
				e.log().Info("catching up: committing the windows verified so far", "batches", n, "window_end", span.End)
				break
			}
		}
	}
	dbctx, cancel = e.step(ctx, "reading submissions", e.DBTimeout)
	defer cancel()
	e.Checkpoint.Reach(ctx, "load")
	subs, ok := e.takeAhead(dbctx, span)
	if !ok {
		subs, err = e.Source.Submissions(dbctx, span)
	}
	cancel()
	if !ok && err != nil {
		return nil, &span, fmt.Errorf("loading submissions: %w", err)
	}
	split := splitByWindow(subs, windows)
	if e.Launcher != nil {
		for i, w := range windows {
			if err := checkVerified(split[i], e.MaxUnverifiedPercent); err != nil {
				return nil, &w, err
			}
		}
	}
	var results []*Result
	evidence := make([]*BatchEvidence, n)
	submitters := make([]int, n)
	for i := range split {
		submitters[i] = countSubmitters(split[i])
	}
	dbctx, cancel = e.step(ctx, "committing the catch-up", e.DBTimeout)
	defer cancel()
	e.startAhead(ctx, span.End)
	committed, err := rs.CommitRange(dbctx, last, func(prev []ShortlistedHash) ([]*Record, error) {
		results = scoreSplit(prev, split)
		recs := make([]*Record, n)
		prevSubmitters := e.lastSubmitters
		for i, r := range results {
			recs[i], evidence[i] = e.record(windows[i], split[i], r, verification[i], submitters[i], prevSubmitters)
			prevSubmitters = submitters[i]
		}
		return recs, nil
	})
	if err != nil {
		return nil, &span, fmt.Errorf("committing the catch-up: %w", err)
	}
	e.Checkpoint.Reach(ctx, "committed")
	took := e.now().Sub(began)
	out := make([]*Summary, n)
	for i := range out {
		c := Committed{BotLogID: committed.BotLogIDs[i]}
		if i < len(committed.Scoreboards) {
			c.Scoreboard = committed.Scoreboards[i]
		}
		if i < len(committed.PreviousShares) {
			c.PreviousShares = committed.PreviousShares[i]
		}
		if i < len(committed.NewNodes) {
			c.NewNodes = committed.NewNodes[i]
		}
		if i < len(committed.NotYetKnown) {
			c.NotYetKnown = committed.NotYetKnown[i]
		}
		out[i] = &Summary{Window: windows[i], Submissions: len(split[i]), Submitters: submitters[i], PrevSubmitters: e.lastSubmitters,
			Result: results[i], Committed: c, Evidence: evidence[i], Verification: verification[i], Duration: took / time.Duration(n), Attempt: attempt}
		e.committed(ctx, out[i])
	}
	e.log().Info("caught up", "batches", n, "window_start", span.Start, "window_end", span.End, "seconds", took.Seconds())
	return out, &span, nil
}

// splitByWindow returns each window's submissions, each sorted by
// submitted_at (stably: the source's order is kept among equal times).
func splitByWindow(subs []Submission, windows []Window) [][]Submission {
	byTime := func(a, b Submission) int { return a.SubmittedAt.Compare(b.SubmittedAt) }
	if !slices.IsSortedFunc(subs, byTime) { // a Postgres source already orders them
		subs = slices.Clone(subs)
		slices.SortStableFunc(subs, byTime)
	}
	out := make([][]Submission, len(windows))
	for i, w := range windows {
		lo, _ := slices.BinarySearchFunc(subs, w.Start, func(s Submission, t time.Time) int { return s.SubmittedAt.Compare(t) })
		hi, _ := slices.BinarySearchFunc(subs, w.End, func(s Submission, t time.Time) int { return s.SubmittedAt.Compare(t) })
		if hi > lo {
			out[i] = subs[lo:hi:hi]
		}
	}
	return out
}
