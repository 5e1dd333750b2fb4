package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5"

	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/retrypolicy"
)

// clientBuffer is how many events a stream client may fall behind before
// the hub drops it (it reconnects with Last-Event-ID and replays).
const clientBuffer = 16

// replayPage is how many missed batches a reconnecting client reads at once.
const replayPage = 500

// Hub follows committed batches through Postgres LISTEN/NOTIFY (the
// coordinator sends pg_notify in each batch's transaction, so the
// notification arrives at commit) and fans them out to stream clients. A
// client that falls behind is dropped, never waited for.
type Hub struct {
	// ConnString is the database the hub listens on (one dedicated
	// connection).
	ConnString string
	Reader     *Reader
	Logger     *slog.Logger
	// OnBatch, when set, is called after each batch is fanned out (the serve
	// command warms the leaderboards with it).
	OnBatch func(ctx context.Context, b Batch)

	mu      sync.Mutex
	clients map[*client]struct{}
	last    int64 // the last batch fanned out
	ready   chan struct{}
	once    sync.Once
	reloads sync.WaitGroup
}

type client struct {
	producers []string
	events    chan event
	dropped   chan struct{}
}

type event struct {
	batch    Batch
	outcomes map[string]Outcome
}

// BatchEvent is the data of a stream event.
type BatchEvent struct {
	Batch     Batch     `json:"batch"`
	Producers []Outcome `json:"producers" doc:"The outcome of each producer the client asked for"`
}

func (h *Hub) init() {
	h.once.Do(func() {
		h.ready = make(chan struct{})
		h.clients = map[*client]struct{}{}
	})
}

// Ready is closed once the hub listens.
func (h *Hub) Ready() <-chan struct{} {
	h.init()
	return h.ready
}

// Clients returns the number of connected stream clients.
func (h *Hub) Clients() int {
	h.init()
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients)
}

func (h *Hub) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

// Run listens until ctx ends. A lost connection is re-established with
// backoff, and the batches committed meanwhile are read from bot_logs, so
// none is lost.
func (h *Hub) Run(ctx context.Context) error {
	h.init()
	defer h.reloads.Wait()
	backoff := reconnectPolicy.BackOff()
	for {
		err := h.listen(ctx, backoff.Reset)
		if ctx.Err() != nil {
			return nil
		}
		wait := backoff.NextBackOff()
		h.logger().Error("batch notifications lost; reconnecting", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// reconnectPolicy spaces the attempts at listening again: 0.5 s, doubling
// up to 30 s, from the start again once connected.
var reconnectPolicy = retrypolicy.Policy{First: 500 * time.Millisecond, Max: 30 * time.Second}

func (h *Hub) listen(ctx context.Context, connected func()) error {
	conn, err := pgx.Connect(ctx, h.ConnString)
	if err != nil {
		return fmt.Errorf("connecting for notifications: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, channel := range []string{postgres.BatchChannel, postgres.RescoreChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
			return fmt.Errorf("listening on %s: %w", channel, err)
		}
	}
	connected()
	h.mu.Lock()
	first := h.last == 0
	h.mu.Unlock()
	if !first {
		// A rescore may have committed while no one listened.
		h.reload(ctx)
	}
	if first {
		// Start from now: clients ask for older batches with Last-Event-ID.
		l, err := h.Reader.Latest(ctx)
		if err != nil {
			return err
		}
		h.mu.Lock()
		h.last = l.ID
		h.mu.Unlock()
	} else if err := h.catchUp(ctx); err != nil {
		return err
	}
	select {
	case <-h.ready:
	default:
		close(h.ready)
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("waiting for notifications: %w", err)
		}
		if n.Channel == postgres.RescoreChannel {
			h.reload(ctx)
			continue
		}
		// The payload is the bot_log_id; reading everything after the last
		// batch fanned out also covers notifications Postgres folded.
		if err := h.catchUp(ctx); err != nil {
			return err
		}
	}
}

// reload has the reader load its points anew, in the background (batches
// keep flowing meanwhile); Run waits for it before it returns.
func (h *Hub) reload(ctx context.Context) {
	h.reloads.Go(func() {
		if err := h.Reader.Reload(ctx); err != nil && ctx.Err() == nil {
			h.logger().Error("reloading the points after a rescore failed; leaderboards show the points before it", "err", err)
		}
	})
}

// catchUp fans out the batches committed after the last one sent.
func (h *Hub) catchUp(ctx context.Context) error {
	for {
		h.mu.Lock()
		last := h.last
		h.mu.Unlock()
		batches, err := h.Reader.BatchesAfter(ctx, last, replayPage)
		if err != nil {
			return err
		}
		for _, b := range batches {
			if err := h.publish(ctx, b); err != nil {
				return err
			}
			if h.OnBatch != nil {
				h.OnBatch(ctx, b)
			}
		}
		if len(batches) < replayPage {
			return nil
		}
	}
}

func (h *Hub) publish(ctx context.Context, b Batch) error {
	h.mu.Lock()
	keys := map[string]bool{}
	for c := range h.clients {
		for _, k := range c.producers {
			keys[k] = true
		}
	}
	h.mu.Unlock()
	outcomes := map[string]Outcome{}
	if len(keys) > 0 {
		list := make([]string, 0, len(keys))
		for k := range keys {
			list = append(list, k)
		}
		os, err := h.Reader.Outcomes(ctx, b.ID, list)
		if err != nil {
			return err
		}
		for _, o := range os {
			outcomes[o.Producer] = o
		}
	}
	ev := event{batch: b, outcomes: outcomes}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last = b.ID
	for c := range h.clients {
		select {
		case c.events <- ev:
		default:
			// Too slow: drop it rather than wait.
			delete(h.clients, c)
			close(c.dropped)
		}
	}
	return nil
}

func (h *Hub) subscribe(producers []string) *client {
	h.init()
	c := &client{producers: producers, events: make(chan event, clientBuffer), dropped: make(chan struct{})}
	h.mu.Lock()
	h.clients[c] = struct{}{}
	h.mu.Unlock()
	return c
}

func (h *Hub) unsubscribe(c *client) {
	h.mu.Lock()
	if _, ok := h.clients[c]; ok {
		delete(h.clients, c)
		close(c.dropped)
	}
	h.mu.Unlock()
}

type streamInput struct {
	Producers   []string `query:"producer,explode" doc:"Producers whose outcome each event carries (repeat the parameter)"`
	LastEventID string   `header:"Last-Event-ID" doc:"The id of the last event received: the batches after it are sent first"`
}

// writeTimeout bounds one write to a stream client.
const writeTimeout = 10 * time.Second

func (s *Server) stream(ctx context.Context, in *streamInput) (*huma.StreamResponse, error) {
	for i, k := range in.Producers {
		if !ValidKey(k) {
			return nil, badParam(fmt.Sprintf("query.producer[%d]", i), k, "expected a Mina public key: B62 followed by 52 base58 characters")
		}
	}
	var last int64
	if in.LastEventID != "" {
		id, err := strconv.ParseInt(in.LastEventID, 10, 64)
		if err != nil || id < 0 {
			return nil, badParam("header.Last-Event-ID", in.LastEventID, "expected a bot_log_id (a whole number)")
		}
		last = id
	}
	if s.Hub == nil {
		return nil, huma.Error503ServiceUnavailable("the stream is not available")
	}
	heartbeat := s.Heartbeat
	if heartbeat <= 0 {
		heartbeat = 15 * time.Second
	}
	return &huma.StreamResponse{Body: func(hctx huma.Context) {
		c := s.Hub.subscribe(in.Producers)
		defer s.Hub.unsubscribe(c)
		hctx.SetHeader("Content-Type", "text/event-stream")
		hctx.SetHeader("Cache-Control", "no-cache")
		hctx.SetHeader("X-Accel-Buffering", "no")
		w := hctx.BodyWriter()
		rc := http.NewResponseController(w.(http.ResponseWriter))
		write := func(p []byte) bool {
			_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := w.Write(p); err != nil {
				return false
			}
			return rc.Flush() == nil
		}
		if !write([]byte("retry: 2000\n: connected\n\n")) {
			return
		}
		send := func(b Batch, outcomes map[string]Outcome) bool {
			ev := BatchEvent{Batch: b, Producers: []Outcome{}}
			for _, k := range in.Producers {
				o, ok := outcomes[k]
				if !ok {
					o = Outcome{Producer: k}
				}
				ev.Producers = append(ev.Producers, o)
			}
			data, err := json.Marshal(ev)
			if err != nil {
				return false
			}
			last = b.ID
			return write(fmt.Appendf(nil, "event: batch\nid: %d\ndata: %s\n\n", b.ID, data))
		}
		if in.LastEventID != "" {
			for {
				missed, err := s.Reader.BatchesAfter(ctx, last, replayPage)
				if err != nil {
					s.logger().Error("stream replay failed", "err", err)
					return
				}
				for _, b := range missed {
					os, err := s.Reader.Outcomes(ctx, b.ID, in.Producers)
					if err != nil {
						s.logger().Error("stream replay failed", "err", err)
						return
					}
					m := map[string]Outcome{}
					for _, o := range os {
						m[o.Producer] = o
					}
					if !send(b, m) {
						return
					}
				}
				if len(missed) < replayPage {
					break
				}
			}
		}
		tick := time.NewTicker(heartbeat)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-c.dropped:
				return
			case ev := <-c.events:
				if ev.batch.ID <= last {
					continue
				}
				if !send(ev.batch, ev.outcomes) {
					return
				}
			case <-tick.C:
				if !write([]byte(": heartbeat\n\n")) {
					return
				}
			}
		}
	}}, nil
}
