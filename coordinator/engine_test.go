package coordinator_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/internal/retrypolicy"
)

// The engine is driven here with in-memory fakes of its ledger, source and
// launcher inside a synctest bubble: time is fake, starts at
// 2000-01-01 00:00:00 UTC and jumps whenever every goroutine waits, so
// waiting for a window and backing off take no real time.

var t0 = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC) // the bubble's start

// at is t0 plus a duration written as "1h2m3s".
func at(d string) time.Time {
	dur, err := time.ParseDuration(d)
	if err != nil {
		panic(err)
	}
	return t0.Add(dur)
}

// fakeLedger keeps the committed batches in memory.
type fakeLedger struct {
	mu         sync.Mutex
	last       coordinator.LastBatch
	lastErrs   []error // returned by the next LastBatch calls, in turn
	commitErrs []error // returned by the next CommitBatch calls, in turn
	prev       []coordinator.ShortlistedHash
	records    []*coordinator.Record
}

func (s *fakeLedger) LastBatch(ctx context.Context) (coordinator.LastBatch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := pop(&s.lastErrs); err != nil {
		return coordinator.LastBatch{}, err
	}
	return s.last, nil
}

func (s *fakeLedger) CommitBatch(ctx context.Context, last coordinator.LastBatch, build func([]coordinator.ShortlistedHash) (*coordinator.Record, error)) (coordinator.Committed, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := pop(&s.commitErrs); err != nil {
		return coordinator.Committed{}, err
	}
	if last != s.last {
		return coordinator.Committed{}, coordinator.ErrConcurrentBatch
	}
	rec, err := build(s.prev)
	if err != nil {
		return coordinator.Committed{}, err
	}
	s.records = append(s.records, rec)
	s.prev = rec.Result.Shortlist
	s.last = coordinator.LastBatch{ID: s.last.ID + 1, End: rec.Window.End}
	return coordinator.Committed{BotLogID: s.last.ID}, nil
}

// fakeSource serves fixed submissions, whatever the window.
type fakeSource struct {
	subs []coordinator.Submission
	errs []error
	got  []coordinator.Window
}

func (s *fakeSource) Submissions(ctx context.Context, w coordinator.Window) ([]coordinator.Submission, error) {
	s.got = append(s.got, w)
	if err := pop(&s.errs); err != nil {
		return nil, err
	}
	return s.subs, nil
}

// fakeLauncher records when and for what it is called; each call takes
// took (of fake time) and returns the next error of errs.
type fakeLauncher struct {
	took  time.Duration
	errs  []error
	calls []launch
}

type launch struct {
	at    time.Time
	batch coordinator.Window
	parts []coordinator.Window
}

func (l *fakeLauncher) Verify(ctx context.Context, batch coordinator.Window, parts []coordinator.Window) error {
	l.calls = append(l.calls, launch{time.Now(), batch, parts})
	time.Sleep(l.took)
	return pop(&l.errs)
}

func (l *fakeLauncher) times() []time.Time {
	var out []time.Time
	for _, c := range l.calls {
		out = append(out, c.at)
	}
	return out
}

// sameTimes compares instants (fake time.Now() readings carry a monotonic
// clock reading and the local zone).
func sameTimes(a, b []time.Time) bool {
	return slices.EqualFunc(a, b, time.Time.Equal)
}

func pop(errs *[]error) error {
	if len(*errs) == 0 {
		return nil
	}
	err := (*errs)[0]
	*errs = (*errs)[1:]
	return err
}

// bundle is one engine with its fakes, its failures and its log.
type bundle struct {
	eng      *coordinator.Engine
	ledger   *fakeLedger
	source   *fakeSource
	launcher *fakeLauncher
	failures []coordinator.Failure
	log      *bytes.Buffer
}

// setup returns an engine whose latest batch ended at lastEnd, with 20-minute
// windows, 2 minutes of grace, 3 mini-batches, 3 retries and a 5 s backoff
// doubling up to 12 s. Call it inside the bubble.
func setup(t *testing.T, lastEnd time.Time) *bundle {
	t.Helper()
	b := &bundle{
		ledger:   &fakeLedger{last: coordinator.LastBatch{ID: 1, End: lastEnd}},
		source:   &fakeSource{},
		launcher: &fakeLauncher{},
		log:      &bytes.Buffer{},
	}
	b.eng = &coordinator.Engine{
		Ledger: b.ledger, Source: b.source, Launcher: b.launcher,
		Interval: 20 * time.Minute, MiniBatches: 3, UptimeDays: 90, Retries: 3,
		Grace: 2 * time.Minute, Retry: retrypolicy.Policy{First: 5 * time.Second, Max: 12 * time.Second},
		Logger: slog.New(slog.NewTextHandler(b.log, nil)),
		OnFailure: func(_ context.Context, f coordinator.Failure) {
			b.failures = append(b.failures, f)
		},
	}
	return b
}

func window(start, end string) coordinator.Window {
	return coordinator.Window{Start: at(start), End: at(end)}
}

func TestEngineWaitsForTheWindowAndGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The latest batch ended 5 minutes ago: the next window closes in
		// 15 minutes and its grace ends 2 minutes later.
		b := setup(t, at("-5m"))
		s, err := b.eng.RunBatch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if want := window("-5m", "15m"); s.Window != want {
			t.Errorf("window %v, want %v", s.Window, want)
		}
		if got, want := b.launcher.times(), []time.Time{at("17m")}; !sameTimes(got, want) {
			t.Errorf("verified at %v, want %v", got, want)
		}
		if !strings.Contains(b.log.String(), `msg="waiting for the batch window to close"`) || !strings.Contains(b.log.String(), "wait=17m0s") {
			t.Errorf("the wait is not logged:\n%s", b.log)
		}
	})
}

func TestEngineClosedWindowRunsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Behind by more than a window and its grace: no waiting.
		b := setup(t, at("-23m"))
		if _, err := b.eng.RunBatch(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got, want := b.launcher.times(), []time.Time{t0}; !sameTimes(got, want) {
			t.Errorf("verified at %v, want %v", got, want)
		}
		// The grace is counted from the window's end: 1 s of it is left.
		b = setup(t, at("-21m59s"))
		if _, err := b.eng.RunBatch(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got, want := b.launcher.times(), []time.Time{at("1s")}; !sameTimes(got, want) {
			t.Errorf("verified at %v, want %v", got, want)
		}
	})
}

// valid is a verified submission of producer for state hash h.
func valid(producer, h string, at time.Time) coordinator.Submission {
	verified := true
	return coordinator.Submission{SubmittedAt: at, Submitter: producer, StateHash: &h, Verified: &verified}
}

func TestEngineCommitsWhatItVerifiedAndScored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, at("-1h"))
		b.launcher.took = 3 * time.Minute
		b.eng.CopySubmissions = true
		b.eng.MaxUnverifiedPercent = 50 // 1 of 3 left unverified is tolerated
		b.source.subs = []coordinator.Submission{
			valid("B62qa", "3Nh1", at("-50m")), valid("B62qb", "3Nh1", at("-49m")),
			{SubmittedAt: at("-48m"), Submitter: "B62qc"}, // unverified
		}
		var cps []string
		b.eng.Checkpoint = func(_ context.Context, name string) { cps = append(cps, name+"@"+time.Now().Format(time.TimeOnly)) }
		var summaries []*coordinator.Summary
		b.eng.AfterBatch = func(_ context.Context, s *coordinator.Summary) { summaries = append(summaries, s) }

		s, err := b.eng.RunBatch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		// The launcher got the window and its three mini-batches.
		wantCall := launch{t0, window("-1h", "-40m"), []coordinator.Window{
			window("-1h", "-53m20s"), window("-53m20s", "-46m40s"), window("-46m40s", "-40m")}}
		if len(b.launcher.calls) != 1 || !equalLaunch(b.launcher.calls[0], wantCall) {
			t.Errorf("launches %v, want one: %v", b.launcher.calls, wantCall)
		}
		if got := b.source.got; len(got) != 1 || got[0] != window("-1h", "-40m") {
			t.Errorf("submissions read for %v, want one window -1h to -40m", got)
		}
		if len(b.ledger.records) != 1 {
			t.Fatalf("%d records committed, want 1", len(b.ledger.records))
		}
		rec := b.ledger.records[0]
		if rec.Window != window("-1h", "-40m") || rec.ProcessingTime != 3*time.Minute || rec.UptimeDays != 90 ||
			!rec.Now.Equal(at("3m")) || len(rec.Copy) != 3 {
			t.Errorf("record: window %v, processing %v, days %d, now %v, %d copied; want -1h to -40m, 3m0s, 90, t0+3m, 3",
				rec.Window, rec.ProcessingTime, rec.UptimeDays, rec.Now, len(rec.Copy))
		}
		if len(rec.Result.Valid) != 2 || len(rec.Result.Points) != 2 || rec.Result.Invalid[coordinator.ReasonUnverified] != 1 {
			t.Errorf("scored %d valid, %d points, invalid %v; want 2, 2 and 1 unverified",
				len(rec.Result.Valid), len(rec.Result.Points), rec.Result.Invalid)
		}
		if s.Attempt != 0 || s.Submissions != 3 || s.Verification != 3*time.Minute || s.Duration != 3*time.Minute ||
			s.Committed.BotLogID != 2 || len(summaries) != 1 || summaries[0] != s {
			t.Errorf("summary %+v (AfterBatch saw %d)", s, len(summaries))
		}
		if want := []string{"verify@00:00:00", "load@00:03:00", "committed@00:03:00"}; !slices.Equal(cps, want) {
			t.Errorf("checkpoints %v, want %v", cps, want)
		}
		if !strings.Contains(b.log.String(), `msg="batch committed" bot_log_id=2`) {
			t.Errorf("no commit logged:\n%s", b.log)
		}
	})
}

func equalLaunch(a, b launch) bool {
	return a.at.Equal(b.at) && a.batch == b.batch && slices.Equal(a.parts, b.parts)
}

func TestEngineRunsConsecutiveWindows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, at("-30m"))
		if err := b.eng.Run(t.Context(), 3); err != nil {
			t.Fatal(err)
		}
		var got []coordinator.Window
		for _, r := range b.ledger.records {
			got = append(got, r.Window)
		}
		// The first window is already closed; the next ones are awaited.
		if want := []coordinator.Window{window("-30m", "-10m"), window("-10m", "10m"), window("10m", "30m")}; !slices.Equal(got, want) {
			t.Errorf("windows %v, want %v", got, want)
		}
		if got, want := b.launcher.times(), []time.Time{t0, at("12m"), at("32m")}; !sameTimes(got, want) {
			t.Errorf("verified at %v, want %v", got, want)
		}
	})
}

func TestEngineRetriesWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, at("-1h"))
		crash := errors.New("verifier crashed")
		b.launcher.errs = []error{crash, crash}
		s, err := b.eng.RunBatch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		// 5 s, then 10 s.
		if got, want := b.launcher.times(), []time.Time{t0, at("5s"), at("15s")}; !sameTimes(got, want) {
			t.Errorf("attempts at %v, want %v", got, want)
		}
		w := window("-1h", "-40m")
		want := []string{"0 23:00-23:20 final=false", "1 23:00-23:20 final=false"}
		if got := failures(b.failures); !slices.Equal(got, want) {
			t.Errorf("failures %v, want %v", got, want)
		}
		if !errors.Is(b.failures[0].Err, crash) {
			t.Errorf("failure error %v, want the launcher's", b.failures[0].Err)
		}
		if s.Attempt != 2 || len(b.ledger.records) != 1 || b.ledger.records[0].Window != w {
			t.Errorf("attempt %d, %d records; want the third attempt to commit once", s.Attempt, len(b.ledger.records))
		}
		if n := strings.Count(b.log.String(), `level=ERROR msg="batch failed; retrying"`); n != 2 {
			t.Errorf("%d retries logged, want 2:\n%s", n, b.log)
		}
		if !strings.Contains(b.log.String(), "retry_in=10s") {
			t.Errorf("the second delay is not logged:\n%s", b.log)
		}
	})
}

// failures renders failures as "attempt window final=…", the window as
// "HH:MM-HH:MM" (UTC).
func failures(fs []coordinator.Failure) []string {
	var out []string
	for _, f := range fs {
		w := "unknown"
		if f.Window != nil {
			w = f.Window.Start.UTC().Format("15:04") + "-" + f.Window.End.UTC().Format("15:04")
		}
		out = append(out, fmt.Sprintf("%d %s final=%v", f.Attempt, w, f.Final))
	}
	return out
}

func TestEngineGivesUpAfterItsRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, at("-1h"))
		b.eng.Retries = 5
		for range 6 {
			b.launcher.errs = append(b.launcher.errs, errors.New("verifier crashed"))
		}
		_, err := b.eng.RunBatch(t.Context())
		if err == nil || err.Error() != "batch 1999-12-31 23:00:00 - 1999-12-31 23:20:00: giving up after 6 attempts: verifying submissions: verifier crashed" {
			t.Fatalf("error %v", err)
		}
		// 5, 10, then capped at 12 s.
		want := []time.Time{t0, at("5s"), at("15s"), at("27s"), at("39s"), at("51s")}
		if got := b.launcher.times(); !sameTimes(got, want) {
			t.Errorf("attempts at %v, want %v", got, want)
		}
		if got, want := failures(b.failures), []string{"0 23:00-23:20 final=false", "1 23:00-23:20 final=false",
			"2 23:00-23:20 final=false", "3 23:00-23:20 final=false", "4 23:00-23:20 final=false", "5 23:00-23:20 final=true"}; !slices.Equal(got, want) {
			t.Errorf("failures %v, want %v", got, want)
		}
		if len(b.ledger.records) != 0 {
			t.Errorf("%d records committed by an abandoned batch", len(b.ledger.records))
		}
	})
}

func TestEnginePermanentErrorFailsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, at("-1h"))
		refused := errors.New("the worker image does not exist")
		b.launcher.errs = []error{coordinator.Permanent(refused)}
		_, err := b.eng.RunBatch(t.Context())
		if !errors.Is(err, refused) || !coordinator.IsPermanent(err) ||
			err.Error() != "batch 1999-12-31 23:00:00 - 1999-12-31 23:20:00: permanent error, not retried: verifying submissions: the worker image does not exist" {
			t.Fatalf("error %v, want the permanent error after 1 attempt", err)
		}
		if got, want := failures(b.failures), []string{"0 23:00-23:20 final=true"}; !slices.Equal(got, want) {
			t.Errorf("failures %v, want %v", got, want)
		}
		if len(b.launcher.calls) != 1 || !time.Now().Equal(t0) {
			t.Errorf("%d launches, now %v: want one and no waiting", len(b.launcher.calls), time.Now())
		}
	})
}

func TestEngineUnreadLatestBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The database is down for the first two tries: the failures carry
		// no window, the third try reads it and commits.
		b := setup(t, at("-1h"))
		down := errors.New("connection refused")
		b.ledger.lastErrs = []error{down, down}
		if _, err := b.eng.RunBatch(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got, want := failures(b.failures), []string{"0 unknown final=false", "1 unknown final=false"}; !slices.Equal(got, want) {
			t.Errorf("failures %v, want %v", got, want)
		}
		if len(b.ledger.records) != 1 {
			t.Errorf("%d records, want 1", len(b.ledger.records))
		}

		// An uninitialised database is permanent.
		b = setup(t, at("-1h"))
		b.ledger.lastErrs = []error{coordinator.ErrNoBatch}
		_, err := b.eng.RunBatch(t.Context())
		if !errors.Is(err, coordinator.ErrNoBatch) {
			t.Fatalf("error %v, want ErrNoBatch", err)
		}
		if !strings.HasPrefix(err.Error(), "the next batch (its window could not be read): permanent error, not retried: reading the latest batch: ") {
			t.Errorf("error %q", err)
		}
		if got, want := failures(b.failures), []string{"0 unknown final=true"}; !slices.Equal(got, want) {
			t.Errorf("failures %v, want %v", got, want)
		}
		if len(b.launcher.calls) != 0 {
			t.Errorf("%d launches without a window", len(b.launcher.calls))
		}
	})
}

func TestEngineRetriesLoadAndCommitErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, at("-1h"))
		b.source.errs = []error{errors.New("cassandra timed out")}
		b.ledger.commitErrs = []error{errors.New("deadlock detected")}
		s, err := b.eng.RunBatch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if s.Attempt != 2 || len(b.ledger.records) != 1 {
			t.Errorf("attempt %d, %d records; want the third attempt to commit", s.Attempt, len(b.ledger.records))
		}
		var msgs []string
		for _, f := range b.failures {
			msgs = append(msgs, f.Err.Error())
		}
		if want := []string{"loading submissions: cassandra timed out", "committing the batch: deadlock detected"}; !slices.Equal(msgs, want) {
			t.Errorf("failures %q, want %q", msgs, want)
		}
	})
}

func TestEngineConcurrentCommitMovesOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Another writer commits the window while this engine verifies it:
		// the commit is refused and the retry takes the next window.
		b := setup(t, at("-1h"))
		b.eng.BeforeBatch = func(context.Context) error {
			if b.ledger.last.ID == 1 {
				b.ledger.last = coordinator.LastBatch{ID: 2, End: at("-40m")}
			}
			return nil
		}
		s, err := b.eng.RunBatch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if s.Window != window("-40m", "-20m") {
			t.Errorf("committed %v, want the next window", s.Window)
		}
		if len(b.failures) != 1 || !errors.Is(b.failures[0].Err, coordinator.ErrConcurrentBatch) {
			t.Errorf("failures %v, want one ErrConcurrentBatch", b.failures)
		}
	})
}

func TestEngineBeforeBatchErrorDoesNotStopTheBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, at("-10m"))
		var ran []time.Time
		b.eng.BeforeBatch = func(context.Context) error {
			ran = append(ran, time.Now())
			return errors.New("spreadsheet unreachable")
		}
		if _, err := b.eng.RunBatch(t.Context()); err != nil {
			t.Fatal(err)
		}
		// It runs once the window and its grace are over, before verifying.
		if want := []time.Time{at("12m")}; !sameTimes(ran, want) {
			t.Errorf("BeforeBatch ran at %v, want %v", ran, want)
		}
		if len(b.ledger.records) != 1 || len(b.failures) != 0 {
			t.Errorf("%d records, %d failures; want 1 and 0", len(b.ledger.records), len(b.failures))
		}
		if !strings.Contains(b.log.String(), `level=ERROR msg="pre-batch step failed; continuing with the batch" error="spreadsheet unreachable"`) {
			t.Errorf("the error is not logged:\n%s", b.log)
		}
	})
}

func TestEngineStopsWhenCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// While waiting for the window...
		b := setup(t, at("-5m"))
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Minute, cancel)
		_, err := b.eng.RunBatch(ctx)
		if !errors.Is(err, context.Canceled) || !coordinator.IsShutdown(err) || !time.Now().Equal(at("1m")) || len(b.failures) != 0 {
			t.Errorf("error %v at %v, %d failures; want a shutdown at t0+1m and no failure", err, time.Now(), len(b.failures))
		}
		// ...and while backing off: no failure is reported for the shutdown.
		b = setup(t, at("-1h"))
		b.launcher.errs = []error{errors.New("verifier crashed")}
		ctx, cancel = context.WithCancel(t.Context())
		time.AfterFunc(2*time.Second, cancel)
		err = b.eng.Run(ctx, 0)
		if !coordinator.IsShutdown(err) || len(b.failures) != 1 || len(b.ledger.records) != 0 {
			t.Errorf("error %v, %d failures, %d records; want a shutdown after 1 failure", err, len(b.failures), len(b.ledger.records))
		}
	})
}
