// Package alert sends the coordinator's alerts to a Slack incoming webhook:
// unusual verification times, abandoned batches and batches with a low share
// of valid submissions.
package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults of a Notifier.
const (
	DefaultTimeout    = 20 * time.Second
	DefaultAttempts   = 4
	DefaultBackoff    = 500 * time.Millisecond
	DefaultMaxBackoff = 8 * time.Second
)

// Notifier posts messages to a Slack incoming webhook. The webhook URL holds
// a token: errors and logs name only its host. A Notifier with an empty URL
// is disabled and sends nothing.
type Notifier struct {
	url        string
	host       string
	client     *http.Client
	timeout    time.Duration
	attempts   int
	backoff    time.Duration
	maxBackoff time.Duration
}

// Option configures a Notifier.
type Option func(*Notifier)

// WithHTTPClient sets the HTTP client (default: a client without a timeout
// of its own; Send bounds every call).
func WithHTTPClient(c *http.Client) Option { return func(n *Notifier) { n.client = c } }

// WithTimeout bounds one Send, retries and waits included (default
// DefaultTimeout).
func WithTimeout(d time.Duration) Option { return func(n *Notifier) { n.timeout = d } }

// WithRetries sets the number of tries of one Send (at least 1), the first
// retry delay, which doubles with each retry, and its cap.
func WithRetries(attempts int, backoff, maxBackoff time.Duration) Option {
	return func(n *Notifier) {
		n.attempts = max(attempts, 1)
		n.backoff = backoff
		n.maxBackoff = max(maxBackoff, backoff)
	}
}

// New returns a Notifier for the webhook at rawURL ("" disables it).
func New(rawURL string, opts ...Option) *Notifier {
	n := &Notifier{
		url:        rawURL,
		client:     &http.Client{},
		timeout:    DefaultTimeout,
		attempts:   DefaultAttempts,
		backoff:    DefaultBackoff,
		maxBackoff: DefaultMaxBackoff,
	}
	if u, err := url.Parse(rawURL); err == nil {
		n.host = u.Host
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

// Enabled reports whether the Notifier has a webhook to post to.
func (n *Notifier) Enabled() bool { return n != nil && n.url != "" }

// Host is the webhook's host: the part of its URL that may be logged.
func (n *Notifier) Host() string { return n.host }

// StatusError is a response of the webhook that is not a success.
type StatusError struct {
	Code int
	Body string // the start of the response body (Slack names the problem there)
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("webhook answered %d %s", e.Code, http.StatusText(e.Code))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// Send posts text as a Slack message ({"text": text}). It retries network
// errors, 5xx and 429 answers with exponential backoff (honouring
// Retry-After), gives up after the configured tries and returns within the
// configured timeout. A disabled Notifier returns nil at once.
func (n *Notifier) Send(ctx context.Context, text string) error {
	if !n.Enabled() {
		return nil
	}
	body, err := json.Marshal(struct {
		Text string `json:"text"`
	}{text})
	if err != nil {
		return fmt.Errorf("encoding the slack message: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()

	delay := n.backoff
	for attempt := 1; ; attempt++ {
		wait, err := n.post(ctx, body)
		if err == nil {
			return nil
		}
		if wait < 0 || attempt >= n.attempts {
			return fmt.Errorf("posting to the webhook at %s (try %d of %d): %w", n.host, attempt, n.attempts, err)
		}
		wait = max(wait, delay)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return fmt.Errorf("posting to the webhook at %s (try %d of %d; no time left to retry in %s): %w",
				n.host, attempt, n.attempts, wait.Round(time.Millisecond), err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("posting to the webhook at %s (try %d of %d): %w (then %w)", n.host, attempt, n.attempts, err, ctx.Err())
		case <-t.C:
		}
		delay = min(delay*2, n.maxBackoff)
	}
}

// post makes one try. On failure, wait is the least delay before a retry
// (0: the backoff decides), or negative when the failure is permanent.
func (n *Notifier) post(ctx context.Context, body []byte) (wait time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return -1, fmt.Errorf("building the request: %w", redact(err))
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	resp, err := n.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return -1, redact(err)
		}
		return 0, redact(err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return 0, nil
	}
	serr := &StatusError{Code: resp.StatusCode, Body: strings.TrimSpace(string(snippet))}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		return retryAfter(resp.Header.Get("Retry-After"), time.Now()), serr
	case resp.StatusCode >= 500:
		return 0, serr
	default:
		return -1, serr
	}
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		return max(time.Duration(s)*time.Second, 0)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// redact drops the URL, which holds the webhook's token, from an error of
// the HTTP client.
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
