package alert_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/alert"
)

// secret is the token part of the test webhook's URL: it must never show in
// errors or logs.
const secret = "T0000/B0000/s3cr3tT0k3n"

// hook is a Slack-like webhook on 127.0.0.1. Each request is answered by
// the next function of answers (the last one repeats).
type hook struct {
	t       *testing.T
	srv     *httptest.Server
	mu      sync.Mutex
	texts   []string
	times   []time.Time
	answers []func(w http.ResponseWriter, r *http.Request)
}

func newHook(t *testing.T, answers ...func(w http.ResponseWriter, r *http.Request)) *hook {
	t.Helper()
	h := &hook{t: t, answers: answers}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) url() string { return h.srv.URL + "/services/" + secret }

func (h *hook) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/services/"+secret {
		h.t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		h.t.Errorf("Content-Type = %q, want application/json", ct)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		h.t.Errorf("reading the request: %v", err)
	}
	var msg map[string]any
	if err := json.Unmarshal(body, &msg); err != nil {
		h.t.Errorf("the payload is not JSON: %v\n%s", err, body)
	}
	text, _ := msg["text"].(string)
	h.mu.Lock()
	n := len(h.texts)
	h.texts = append(h.texts, text)
	h.times = append(h.times, time.Now())
	h.mu.Unlock()
	if len(h.answers) == 0 {
		_, _ = io.WriteString(w, "ok")
		return
	}
	h.answers[min(n, len(h.answers)-1)](w, r)
}

func (h *hook) received() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.texts...)
}

// gap is the time between the first and the second request.
func (h *hook) gap() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.times) < 2 {
		return 0
	}
	return h.times[1].Sub(h.times[0])
}

func status(code int, headers ...string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, http.StatusText(code))
	}
}

// hangUp closes the connection without an answer: a network error.
func hangUp(w http.ResponseWriter, _ *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	conn.Close()
}

func fast() alert.Option { return alert.WithRetries(3, 10*time.Millisecond, 40*time.Millisecond) }

func TestSendEncodesJSON(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	texts := []string{
		`He said "batch failed"`,
		"line one\nline two\ttabbed\r\n",
		`back\slash and {"text": "injection"}`,
		"unicode – ✓ and control \x01 and <html> & stuff",
	}
	n := alert.New(h.url(), fast())
	for _, text := range texts {
		if err := n.Send(context.Background(), text); err != nil {
			t.Fatalf("Send(%q): %v", text, err)
		}
	}
	got := h.received()
	if len(got) != len(texts) {
		t.Fatalf("received %d messages, want %d", len(got), len(texts))
	}
	for i := range texts {
		if got[i] != texts[i] {
			t.Errorf("message %d arrived as %q, want %q", i, got[i], texts[i])
		}
	}
}

func TestSendRetriesAfterServerError(t *testing.T) {
	t.Parallel()
	h := newHook(t, status(http.StatusInternalServerError), status(http.StatusOK))
	if err := alert.New(h.url(), fast()).Send(context.Background(), "hello"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := h.received(); len(got) != 2 || got[1] != "hello" {
		t.Fatalf("received %q, want two tries of hello", got)
	}
	if gap := h.gap(); gap < 10*time.Millisecond {
		t.Errorf("retried after %v, want the backoff of 10ms at least", gap)
	}
}

func TestSendRetriesNetworkError(t *testing.T) {
	t.Parallel()
	h := newHook(t, hangUp, status(http.StatusOK))
	if err := alert.New(h.url(), fast()).Send(context.Background(), "hello"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := h.received(); len(got) != 2 {
		t.Fatalf("received %d tries, want 2", len(got))
	}
}

func TestSendHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	h := newHook(t, status(http.StatusTooManyRequests, "Retry-After", "1"), status(http.StatusOK))
	if err := alert.New(h.url(), fast()).Send(context.Background(), "hello"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if len(h.received()) != 2 {
		t.Fatalf("received %d tries, want 2", len(h.received()))
	}
	if gap := h.gap(); gap < 900*time.Millisecond {
		t.Errorf("retried after %v, want about 1s as Retry-After asked", gap)
	}
}

func TestSendRetryAfterBeyondTimeoutGivesUp(t *testing.T) {
	t.Parallel()
	h := newHook(t, status(http.StatusTooManyRequests, "Retry-After", "3600"))
	start := time.Now()
	err := alert.New(h.url(), fast(), alert.WithTimeout(2*time.Second)).Send(context.Background(), "hello")
	if err == nil {
		t.Fatal("Send succeeded against a webhook that always answers 429")
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("Send took %v; it should give up at once when Retry-After exceeds its timeout", el)
	}
	if len(h.received()) != 1 {
		t.Errorf("received %d tries, want 1", len(h.received()))
	}
}

func TestSendGivesUpOnPersistentFailure(t *testing.T) {
	t.Parallel()
	h := newHook(t, status(http.StatusBadGateway))
	err := alert.New(h.url(), fast()).Send(context.Background(), "hello")
	var se *alert.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusBadGateway {
		t.Fatalf("Send = %v, want a 502 StatusError", err)
	}
	if got := len(h.received()); got != 3 {
		t.Errorf("received %d tries, want 3", got)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("the error shows the webhook token: %v", err)
	}
}

func TestSendDoesNotRetryClientError(t *testing.T) {
	t.Parallel()
	h := newHook(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, "no_service")
	})
	err := alert.New(h.url(), fast()).Send(context.Background(), "hello")
	if err == nil || !strings.Contains(err.Error(), "no_service") {
		t.Fatalf("Send = %v, want an error quoting Slack's no_service", err)
	}
	if got := len(h.received()); got != 1 {
		t.Errorf("received %d tries, want 1", got)
	}
}

func TestSendBoundedByTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	h := newHook(t, func(w http.ResponseWriter, r *http.Request) {
		select { // a webhook that never answers
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	start := time.Now()
	err := alert.New(h.url(), alert.WithTimeout(300*time.Millisecond), alert.WithRetries(5, 10*time.Millisecond, 10*time.Millisecond)).
		Send(context.Background(), "hello")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send = %v, want a deadline error", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Send blocked for %v with a 300ms timeout", el)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("the error shows the webhook token: %v", err)
	}
}

func TestSendUnreachableHidesToken(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	err = alert.New("http://"+addr+"/services/"+secret, fast()).Send(context.Background(), "hello")
	if err == nil {
		t.Fatal("Send to a closed port succeeded")
	}
	if strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), addr) {
		t.Errorf("error %q: want the host %s and not the token", err, addr)
	}
}

func TestSendDisabled(t *testing.T) {
	t.Parallel()
	n := alert.New("")
	if n.Enabled() {
		t.Fatal("a notifier without URL is enabled")
	}
	if err := n.Send(context.Background(), "hello"); err != nil {
		t.Fatalf("Send on a disabled notifier: %v", err)
	}
}
