// Package alertingtest holds test helpers for alert deliveries: an HTTPS
// webhook receiver that checks signatures and counts deliveries per
// idempotency key, and an independent model of the messages the
// missed_batches and score_below rules must send for what a coordinator
// wrote.
package alertingtest

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/alerting/channels"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

// Receiver is an HTTPS webhook receiver. It checks every generic webhook's
// signature with the secret registered for its path, and records
// deliveries per idempotency key. While Failing is set it answers 503.
type Receiver struct {
	t       testing.TB
	Server  *httptest.Server
	Failing atomic.Bool
	Refused atomic.Int64 // requests answered 503

	mu      sync.Mutex
	secrets map[string]string
	got     map[string][]channels.Message // by id
	texts   map[string][]string           // slack and discord texts by path
}

// NewReceiver starts a receiver, stopped when the test ends.
func NewReceiver(t testing.TB) *Receiver {
	r := &Receiver{t: t, secrets: map[string]string{}, got: map[string][]channels.Message{}, texts: map[string][]string{}}
	r.Server = httptest.NewTLSServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Server.Close)
	return r
}

// Register sets the signing secret of the generic webhook at path.
func (r *Receiver) Register(path, secret string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secrets[path] = secret
}

// Transport trusts the receiver's certificate.
func (r *Receiver) Transport() *http.Transport {
	return r.Server.Client().Transport.(*http.Transport).Clone()
}

// CertFile writes the receiver's certificate to a PEM file (for
// SSL_CERT_FILE of a coordinator process) and returns its path.
func (r *Receiver) CertFile(t testing.TB) string {
	p := filepath.Join(t.TempDir(), "receiver.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.Server.Certificate().Raw})
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		r.t.Errorf("reading a delivery: %v", err)
	}
	if r.Failing.Load() {
		r.Refused.Add(1)
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if strings.HasPrefix(req.URL.Path, "/slack") || strings.HasPrefix(req.URL.Path, "/discord") {
		var m struct{ Text, Content string }
		if err := json.Unmarshal(body, &m); err != nil || m.Text+m.Content == "" {
			r.t.Errorf("chat delivery %q has no text", body)
		}
		r.texts[req.URL.Path] = append(r.texts[req.URL.Path], m.Text+m.Content)
		return
	}
	secret, ok := r.secrets[req.URL.Path]
	if !ok {
		r.t.Errorf("delivery to unknown path %s", req.URL.Path)
		return
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	if want := "sha256=" + hex.EncodeToString(mac.Sum(nil)); req.Header.Get("X-Signature-256") != want {
		r.t.Errorf("bad signature %q on %s", req.Header.Get("X-Signature-256"), body)
	}
	var m channels.Message
	if err := json.Unmarshal(body, &m); err != nil {
		r.t.Errorf("webhook body is not a message: %v", err)
	}
	if ts := req.Header.Get("X-Signature-Timestamp"); ts != strconv.FormatInt(m.Timestamp, 10) || m.Timestamp == 0 {
		r.t.Errorf("timestamp header %q, body timestamp %d", ts, m.Timestamp)
	}
	if d := time.Since(time.Unix(m.Timestamp, 0)); d > time.Minute || d < -time.Minute {
		r.t.Errorf("stale timestamp %d", m.Timestamp)
	}
	r.got[m.ID] = append(r.got[m.ID], m)
}

// Messages returns the generic webhook deliveries by idempotency key.
func (r *Receiver) Messages() map[string][]channels.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]channels.Message, len(r.got))
	for k, v := range r.got {
		out[k] = slices.Clone(v)
	}
	return out
}

// Texts returns the chat texts posted to path.
func (r *Receiver) Texts(path string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.texts[path])
}

// Event is one fired or resolved message, by natural key.
type Event struct {
	Event, Producer, Rule string
	WindowEnd             time.Time
}

func (e Event) String() string {
	return fmt.Sprintf("%s %s %s @%s", e.Event, e.Producer, e.Rule, e.WindowEnd.UTC().Format(time.RFC3339))
}

// Of is the Event a delivered message stands for.
func Of(t testing.TB, m channels.Message) Event {
	if m.Rule == nil {
		t.Fatalf("message %s has no rule: %+v", m.ID, m)
	}
	end, err := time.Parse(time.RFC3339, m.WindowEnd)
	if err != nil {
		t.Fatalf("message %s: window_end %q: %v", m.ID, m.WindowEnd, err)
	}
	return Event{m.Event, m.Producer, m.Rule.Key(), end}
}

// Strings renders events sorted, for comparisons.
func Strings(es []Event) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.String()
	}
	slices.Sort(out)
	return out
}

type batch struct {
	id         int64
	start, end int64
}

// Model computes, independently of the alerting code, the messages that a
// missed_batches rule of count and, when percent > 0, a score_below rule
// over window and percent (rule key written as scoreKey) send for each of
// producers, from what the coordinator wrote (bot_logs, points_summary)
// and from the batch in which each producer first had a valid submission.
func Model(t testing.TB, pool *pgxpool.Pool, net *synthnet.Network, producers []string, count int, window time.Duration, percent float64, scoreKey string) []Event {
	t.Helper()
	ctx := context.Background()
	rows, err := pool.Query(ctx, `SELECT id, batch_start_epoch, batch_end_epoch FROM bot_logs WHERE files_processed > -1 ORDER BY batch_end_epoch`)
	if err != nil {
		t.Fatal(err)
	}
	batches, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (batch, error) {
		var b batch
		return b, r.Scan(&b.id, &b.start, &b.end)
	})
	if err != nil {
		t.Fatal(err)
	}
	type pk struct {
		id int64
		p  string
	}
	points := map[pk]bool{}
	rows, err = pool.Query(ctx, `SELECT ps.bot_log_id, n.block_producer_key FROM points_summary ps JOIN nodes n ON n.id = ps.node_id`)
	if err != nil {
		t.Fatal(err)
	}
	var id int64
	var p string
	if _, err := pgx.ForEachRow(rows, []any{&id, &p}, func() error { points[pk{id, p}] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	first := map[string]int64{} // end of the first batch with a valid submission
	for _, s := range net.Submissions {
		if s.Invalid != "" {
			continue
		}
		for _, b := range batches {
			if s.SubmittedAt.Unix() >= b.start && s.SubmittedAt.Unix() < b.end {
				if f, ok := first[s.Submitter]; !ok || b.end < f {
					first[s.Submitter] = b.end
				}
			}
		}
	}
	var out []Event
	missKey := fmt.Sprintf("missed_batches:%d", count)
	for _, p := range producers {
		f, ok := first[p]
		if !ok {
			continue
		}
		misses, missActive, scoreActive := 0, false, false
		for _, b := range batches {
			if b.end < f {
				continue
			}
			at := time.Unix(b.end, 0).UTC()
			if points[pk{b.id, p}] {
				misses = 0
			} else {
				misses++
			}
			if !missActive && misses >= count {
				missActive = true
				out = append(out, Event{"fired", p, missKey, at})
			} else if missActive && misses == 0 {
				missActive = false
				out = append(out, Event{"resolved", p, missKey, at})
			}
			if percent <= 0 {
				continue
			}
			var n, surveys int64
			for _, c := range batches {
				if c.start >= b.end-int64(window/time.Second) && c.end <= b.end {
					surveys++
					if points[pk{c.id, p}] {
						n++
					}
				}
			}
			score := float64(n*10000/surveys) / 100
			if !scoreActive && score < percent {
				scoreActive = true
				out = append(out, Event{"fired", p, scoreKey, at})
			} else if scoreActive && score >= percent {
				scoreActive = false
				out = append(out, Event{"resolved", p, scoreKey, at})
			}
		}
	}
	return out
}
