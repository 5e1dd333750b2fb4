// Package queue delivers the alert outbox with River (riverqueue/river, pgx
// v5 driver): every outbox row gets a River job inserted in the same
// transaction, and the job posts the message, retrying with backoff for
// hours, until it is delivered (at least once; every payload carries its
// idempotency key) or dead (a dead letter, counted in status and /metrics).
package queue

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
	"golang.org/x/time/rate"

	"github.com/delegation-program/uptime-coordinator/alerting/channels"
	"github.com/delegation-program/uptime-coordinator/alerting/outbound"
	"github.com/delegation-program/uptime-coordinator/internal/retrypolicy"
)

// Kind is the River job kind of a delivery.
const Kind = "alert_delivery"

// DeliverArgs are a delivery job's arguments: the outbox row to deliver.
type DeliverArgs struct {
	OutboxID string `json:"outbox_id"`
}

// Kind implements river.JobArgs.
func (DeliverArgs) Kind() string { return Kind }

// Defaults of Options.
const (
	DefaultMaxAttempts  = 25               // with the default backoff, about 8 hours of retries
	DefaultRetryBase    = 5 * time.Second  // first retry delay; doubles with each retry
	DefaultRetryMax     = 30 * time.Minute // cap of the retry delay: 360 × the first delay
	DefaultJobTimeout   = 30 * time.Second // one delivery attempt
	DefaultRatePerMin   = 60               // per destination
	DefaultBurst        = 5
	DefaultDrainTimeout = 30 * time.Second
	// DeadLetterRetention is how long dead letters stay visible.
	DeadLetterRetention = 30 * 24 * time.Hour
)

// Options configure a Queue.
type Options struct {
	Policy outbound.Policy
	// Transport is the HTTP transport of deliveries (nil: a default one).
	// Tests pass one trusting their TLS receiver.
	Transport *http.Transport
	// OperatorURL (WEBHOOK_URL) receives the operator alerts (outbox rows
	// without a subscription) as Slack messages. It is the operator's own
	// configuration, so the outbound policy does not apply to it.
	OperatorURL string

	MaxAttempts int
	// RetryBase is the first retry delay; it doubles with each retry up to
	// RetryMax (default 360 × RetryBase: 30 minutes after 5 s).
	RetryBase, RetryMax  time.Duration
	JobTimeout           time.Duration
	RatePerMinute, Burst int
	// PollInterval is how often River looks for due jobs besides its
	// LISTEN/NOTIFY wake-ups (default River's, 1 s).
	PollInterval time.Duration
	Logger       *slog.Logger
	Now          func() time.Time
}

func (o *Options) defaults() {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.RetryBase <= 0 {
		o.RetryBase = DefaultRetryBase
	}
	if o.RetryMax < o.RetryBase {
		o.RetryMax = o.RetryBase * (DefaultRetryMax / DefaultRetryBase)
	}
	if o.JobTimeout <= 0 {
		o.JobTimeout = DefaultJobTimeout
	}
	if o.RatePerMinute <= 0 {
		o.RatePerMinute = DefaultRatePerMin
	}
	if o.Burst <= 0 {
		o.Burst = DefaultBurst
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Queue inserts delivery jobs and, when started, works them.
type Queue struct {
	pool   *pgxpool.Pool
	client *river.Client[pgx.Tx]
	opts   Options
}

// backoff is River's retry policy: RetryBase doubling up to RetryMax.
type backoff struct{ retrypolicy.Policy }

// NextRetry schedules the retry after the job's attempt job.Attempt.
func (b backoff) NextRetry(job *rivertype.JobRow) time.Time {
	return time.Now().Add(b.Delay(job.Attempt))
}

// New returns a Queue on pool. With work, it delivers jobs once started;
// without, it only inserts them (the API server: the coordinator's run
// delivers).
func New(pool *pgxpool.Pool, work bool, opts Options) (*Queue, error) {
	opts.defaults()
	q := &Queue{pool: pool, opts: opts}
	cfg := &river.Config{
		Logger:                      opts.Logger.With("component", "river"),
		MaxAttempts:                 opts.MaxAttempts,
		RetryPolicy:                 backoff{retrypolicy.Policy{First: opts.RetryBase, Max: opts.RetryMax}},
		JobTimeout:                  opts.JobTimeout,
		RescueStuckJobsAfter:        opts.JobTimeout + time.Minute,
		DiscardedJobRetentionPeriod: DeadLetterRetention,
		CancelledJobRetentionPeriod: DeadLetterRetention,
		FetchPollInterval:           opts.PollInterval,
	}
	if opts.PollInterval > 0 {
		cfg.FetchCooldown = min(opts.PollInterval, 100*time.Millisecond)
	}
	if work {
		workers := river.NewWorkers()
		var forPolicy, forOperator *http.Transport
		if opts.Transport != nil {
			forPolicy, forOperator = opts.Transport.Clone(), opts.Transport.Clone()
		}
		operator := &http.Client{Timeout: opts.JobTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		if forOperator != nil {
			operator.Transport = forOperator
		}
		if err := river.AddWorkerSafely(workers, &worker{q: q, limits: map[[32]byte]*rate.Limiter{},
			client: opts.Policy.Client(opts.JobTimeout, forPolicy), operator: operator}); err != nil {
			return nil, fmt.Errorf("registering the delivery worker: %w", err)
		}
		if err := river.AddWorkerSafely(workers, &pruneWorker{q: q}); err != nil {
			return nil, fmt.Errorf("registering the outbox pruner: %w", err)
		}
		cfg.PeriodicJobs = []*river.PeriodicJob{prunePeriodically()}
		cfg.Workers = workers
		cfg.Queues = map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 4}}
	}
	client, err := river.NewClient(riverpgxv5.New(pool), cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the delivery queue: %w", err)
	}
	q.client = client
	return q, nil
}

// Start works the queue until Stop. Delivery jobs left running by a
// process that died are made available again first: only the coordinator
// that holds the advisory lock works the queue, so a running job at start
// is an orphan (River alone would wait RescueStuckJobsAfter to retry it).
func (q *Queue) Start(ctx context.Context) error {
	tag, err := q.pool.Exec(ctx, `UPDATE river_job SET state = 'available', scheduled_at = now()
		WHERE kind = $1 AND state = 'running'`, Kind)
	if err != nil {
		return fmt.Errorf("recovering interrupted deliveries: %w", err)
	}
	if n := tag.RowsAffected(); n > 0 {
		q.opts.Logger.Warn("alert deliveries interrupted by a stop are retried", "jobs", n)
	}
	if err := q.client.Start(ctx); err != nil {
		return fmt.Errorf("starting the delivery queue: %w", err)
	}
	return nil
}

// Stop stops working the queue, letting running deliveries finish (bounded
// by ctx).
func (q *Queue) Stop(ctx context.Context) error {
	return q.client.Stop(ctx)
}

// Outgoing is one notification to record in the outbox.
type Outgoing struct {
	SubscriptionID int64 // 0: an operator alert (WEBHOOK_URL)
	BotLogID       int64 // 0 when not about a batch
	Message        channels.Message
}

// Key derives a stable idempotency key from the parts that identify a
// notification.
func Key(parts ...any) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%v", parts))
	return fmt.Sprintf("%x", h[:16])
}

// EnqueueTx records messages in the outbox and inserts their delivery jobs,
// in tx: they are delivered if and only if tx commits. A message whose id is
// already in the outbox is skipped.
func (q *Queue) EnqueueTx(ctx context.Context, tx pgx.Tx, out []Outgoing) (int, error) {
	if len(out) == 0 {
		return 0, nil
	}
	ids := make([]string, len(out))
	subs := make([]*int64, len(out))
	events := make([]string, len(out))
	batches := make([]*int64, len(out))
	payloads := make([]string, len(out))
	for i, o := range out {
		ids[i], events[i] = o.Message.ID, o.Message.Event
		if o.SubscriptionID != 0 {
			subs[i] = &o.SubscriptionID
		}
		if o.BotLogID != 0 {
			batches[i] = &o.BotLogID
		}
		b, err := json.Marshal(o.Message)
		if err != nil {
			return 0, fmt.Errorf("encoding an alert: %w", err)
		}
		payloads[i] = string(b)
	}
	rows, err := tx.Query(ctx, `INSERT INTO alert_outbox (id, subscription_id, event, bot_log_id, payload)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::jsonb[])
		ON CONFLICT (id) DO NOTHING RETURNING id`, ids, subs, events, batches, payloads)
	if err != nil {
		return 0, fmt.Errorf("writing the alert outbox: %w", err)
	}
	inserted, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, fmt.Errorf("writing the alert outbox: %w", err)
	}
	if len(inserted) == 0 {
		return 0, nil
	}
	params := make([]river.InsertManyParams, len(inserted))
	for i, id := range inserted {
		params[i] = river.InsertManyParams{Args: DeliverArgs{OutboxID: id}}
	}
	if _, err := q.client.InsertManyFastTx(ctx, tx, params); err != nil {
		return 0, fmt.Errorf("queueing alert deliveries: %w", err)
	}
	return len(inserted), nil
}

// Enqueue is EnqueueTx in a transaction of its own (alerts not tied to a
// batch: abandoned batches, test messages).
func (q *Queue) Enqueue(ctx context.Context, out []Outgoing) error {
	return pgx.BeginFunc(ctx, q.pool, func(tx pgx.Tx) error {
		_, err := q.EnqueueTx(ctx, tx, out)
		return err
	})
}

// Counts are the delivery jobs by state group.
type Counts struct {
	Pending int64 // waiting, running or waiting for a retry
	Dead    int64 // given up (attempts exhausted or permanently refused): dead letters
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Count counts the delivery jobs. It reads River's table, so it works from
// any process (status, metrics).
func Count(ctx context.Context, db querier) (Counts, error) {
	var c Counts
	err := db.QueryRow(ctx, `SELECT
		count(*) FILTER (WHERE state IN ('available', 'running', 'retryable', 'scheduled', 'pending')),
		count(*) FILTER (WHERE state IN ('discarded', 'cancelled'))
		FROM river_job WHERE kind = $1`, Kind).Scan(&c.Pending, &c.Dead)
	if err != nil {
		return c, fmt.Errorf("counting alert deliveries: %w", err)
	}
	return c, nil
}

// Drain waits until no delivery is pending or timeout passes, and returns
// how many are still pending (they stay queued for the next run).
func (q *Queue) Drain(ctx context.Context, timeout time.Duration) (int64, error) {
	deadline := time.Now().Add(timeout)
	for {
		c, err := Count(ctx, q.pool)
		if err != nil {
			return 0, err
		}
		if c.Pending == 0 || !time.Now().Before(deadline) {
			return c.Pending, nil
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return c.Pending, ctx.Err()
		case <-t.C:
		}
	}
}

// worker delivers one outbox row.
type worker struct {
	river.WorkerDefaults[DeliverArgs]
	q        *Queue
	client   *http.Client // for subscriptions: the outbound policy applies
	operator *http.Client // for WEBHOOK_URL
	mu       sync.Mutex
	limits   map[[32]byte]*rate.Limiter
}

func (w *worker) limiter(url string) *rate.Limiter {
	key := sha256.Sum256([]byte(url))
	w.mu.Lock()
	defer w.mu.Unlock()
	l, ok := w.limits[key]
	if !ok {
		l = rate.NewLimiter(rate.Limit(float64(w.q.opts.RatePerMinute)/60), w.q.opts.Burst)
		w.limits[key] = l
	}
	return l
}

func (w *worker) Work(ctx context.Context, job *river.Job[DeliverArgs]) error {
	log := w.q.opts.Logger
	var payload []byte
	var delivered *time.Time
	var subID *int64
	var channel, url, secret *string
	err := w.q.pool.QueryRow(ctx, `SELECT o.payload, o.delivered_at, o.subscription_id, s.channel, s.url, s.secret
		FROM alert_outbox o LEFT JOIN alert_subscriptions s ON s.id = o.subscription_id WHERE o.id = $1`,
		job.Args.OutboxID).Scan(&payload, &delivered, &subID, &channel, &url, &secret)
	if errors.Is(err, pgx.ErrNoRows) {
		log.Info("alert not delivered: its subscription was deleted", "id", job.Args.OutboxID)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading outbox row %s: %w", job.Args.OutboxID, err)
	}
	if delivered != nil {
		return nil
	}
	var msg channels.Message
	if err := json.Unmarshal(payload, &msg); err != nil {
		return river.JobCancel(fmt.Errorf("outbox row %s holds an unreadable message: %w", job.Args.OutboxID, err))
	}
	var dest channels.Destination
	client := w.client
	if subID == nil {
		if w.q.opts.OperatorURL == "" {
			log.Warn("operator alert not delivered: WEBHOOK_URL is not set", "id", msg.ID, "text", msg.Text)
			return river.JobCancel(errors.New("WEBHOOK_URL is not set"))
		}
		dest, client = channels.Destination{Channel: channels.Slack, URL: w.q.opts.OperatorURL}, w.operator
	} else {
		dest = channels.Destination{Channel: *channel, URL: *url, Secret: *secret}
		if err := w.q.opts.Policy.CheckURL(ctx, dest.URL); err != nil {
			return w.failed(ctx, job, &msg, dest, err)
		}
	}
	if r := w.limiter(dest.URL).Reserve(); !r.OK() || r.Delay() > 0 {
		d := r.Delay()
		r.Cancel()
		return river.JobSnooze(max(d, 100*time.Millisecond))
	}
	if err := channels.Send(ctx, client, dest, msg, w.q.opts.Now()); err != nil {
		return w.failed(ctx, job, &msg, dest, err)
	}
	err = pgx.BeginFunc(ctx, w.q.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE alert_outbox SET delivered_at = now(), attempts = attempts + 1, last_error = NULL
			WHERE id = $1`, msg.ID); err != nil {
			return err
		}
		_, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
		return err
	})
	if err != nil {
		return fmt.Errorf("recording the delivery of %s: %w", msg.ID, err)
	}
	log.Info("alert delivered", "id", msg.ID, "event", msg.Event, "producer", msg.Producer,
		"channel", dest.Channel, "host", channels.Host(dest.URL), "attempt", job.Attempt)
	return nil
}

// failed records a failed attempt and tells River what to do: cancel when
// retrying cannot help, else retry (River discards the job after its last
// attempt: a dead letter).
func (w *worker) failed(ctx context.Context, job *river.Job[DeliverArgs], msg *channels.Message, dest channels.Destination, cause error) error {
	if _, err := w.q.pool.Exec(ctx, `UPDATE alert_outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1`,
		msg.ID, cause.Error()); err != nil {
		w.q.opts.Logger.Error("recording a failed alert delivery", "id", msg.ID, "error", err)
	}
	attrs := []any{"id", msg.ID, "event", msg.Event, "producer", msg.Producer, "channel", dest.Channel,
		"host", channels.Host(dest.URL), "attempt", job.Attempt, "max_attempts", job.MaxAttempts, "error", cause}
	switch {
	case channels.Permanent(cause):
		w.q.opts.Logger.Error("alert not deliverable; dead letter", attrs...)
		return river.JobCancel(cause)
	case job.Attempt >= job.MaxAttempts:
		w.q.opts.Logger.Error("alert delivery failed for the last time; dead letter", attrs...)
	default:
		w.q.opts.Logger.Warn("alert delivery failed; will retry", attrs...)
	}
	return cause
}
