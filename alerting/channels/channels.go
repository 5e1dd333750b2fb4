// Package channels renders alert messages for their destinations — Slack
// and Discord webhooks (the text) and a generic JSON webhook (the whole
// message, signed with HMAC-SHA256) — and posts them.
package channels

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/delegation-program/uptime-coordinator/alerting/outbound"
	"github.com/delegation-program/uptime-coordinator/alerting/rules"
)

// Channel names.
const (
	Slack   = "slack"
	Discord = "discord"
	Webhook = "webhook"
)

// Valid reports whether name is a channel.
func Valid(name string) bool { return name == Slack || name == Discord || name == Webhook }

// Headers of the generic webhook.
const (
	// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the body
	// under the subscription's secret.
	SignatureHeader = "X-Signature-256"
	// TimestampHeader carries the Unix time of the attempt; the body's
	// "timestamp" holds the same value, so it is covered by the signature.
	// Receivers refuse stale timestamps (replays) and dedupe by "id".
	TimestampHeader = "X-Signature-Timestamp"
)

// Events.
const (
	Fired    = "fired"
	Resolved = "resolved"
	Test     = "test"
	Operator = "operator"
)

// Message is one notification: the generic webhook's JSON body (with
// Timestamp set at each attempt); Slack and Discord get Text.
type Message struct {
	ID          string      `json:"id"` // the idempotency key
	Event       string      `json:"event"`
	Producer    string      `json:"producer,omitempty"`
	Rule        *rules.Rule `json:"rule,omitempty"`
	BotLogID    int64       `json:"bot_log_id,omitempty"`
	WindowStart string      `json:"window_start,omitempty"`
	WindowEnd   string      `json:"window_end,omitempty"`
	Reason      string      `json:"reason,omitempty"`
	Text        string      `json:"text"`
	Link        string      `json:"link,omitempty"`
	Timestamp   int64       `json:"timestamp,omitempty"`
}

// Destination is where a message goes.
type Destination struct {
	Channel string
	URL     string // holds tokens: never logged
	Secret  string // the generic webhook's HMAC key
}

// Sign returns the X-Signature-256 value of body under secret.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// discordMax is the length limit of a Discord message's content.
const discordMax = 2000

// Body renders the message for the destination's channel and returns the
// body and the extra headers.
func Body(d Destination, m Message, now time.Time) ([]byte, map[string]string, error) {
	var v any
	headers := map[string]string{}
	switch d.Channel {
	case Slack:
		v = struct {
			Text string `json:"text"`
		}{m.Text}
	case Discord:
		text := []rune(m.Text)
		if len(text) > discordMax {
			text = append(text[:discordMax-1], '…')
		}
		d := struct {
			Content         string `json:"content"`
			AllowedMentions struct {
				Parse []string `json:"parse"`
			} `json:"allowed_mentions"`
		}{Content: string(text)}
		// No mention is ever resolved: an alert must not ping @everyone.
		d.AllowedMentions.Parse = []string{}
		v = d
	case Webhook:
		m.Timestamp = now.Unix()
		v = m
	default:
		return nil, nil, fmt.Errorf("unknown channel %q", d.Channel)
	}
	body, err := json.Marshal(v)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the %s message: %w", d.Channel, err)
	}
	if d.Channel == Webhook {
		headers[SignatureHeader] = Sign(d.Secret, body)
		headers[TimestampHeader] = strconv.FormatInt(m.Timestamp, 10)
		headers["X-Idempotency-Key"] = m.ID
	}
	return body, headers, nil
}

// StatusError is an answer of the destination that is not a success.
type StatusError struct {
	Code int
	Body string // the start of the response body
	// RetryAfter is the delay the destination asked for (429, 503), if any.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("webhook answered %d %s", e.Code, http.StatusText(e.Code))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// Permanent reports whether retrying cannot help: a refused URL, or a 4xx
// answer other than 408 and 429.
func Permanent(err error) bool {
	if errors.Is(err, outbound.ErrRefused) {
		return true
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code >= 400 && se.Code < 500 && se.Code != http.StatusRequestTimeout && se.Code != http.StatusTooManyRequests
	}
	return false
}

// Send posts the message to the destination with client (one try). Errors
// never contain the URL.
func Send(ctx context.Context, client *http.Client, d Destination, m Message, now time.Time) error {
	body, headers, err := Body(d, m, now)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: building the request: %w", outbound.ErrRefused, outbound.Redact(err))
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "uptime-coordinator-alerts")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return outbound.Redact(err)
	}
	text := outbound.ReadCapped(resp.Body)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	if len(text) > 300 {
		text = text[:300] + "…"
	}
	se := &StatusError{Code: resp.StatusCode, Body: text}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		se.RetryAfter = time.Duration(s) * time.Second
	}
	return se
}

// Host is the part of a URL that may be logged.
func Host(raw string) string {
	req, err := http.NewRequest(http.MethodPost, raw, nil)
	if err != nil {
		return "(invalid URL)"
	}
	return req.URL.Host
}
