package channels_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/alerting/channels"
	"github.com/delegation-program/uptime-coordinator/alerting/rules"
)

var msg = channels.Message{ID: "k1", Event: "fired", Producer: "B62qp", Rule: &rules.Rule{Kind: rules.MissedBatches, Count: 3},
	BotLogID: 7, WindowEnd: "2024-06-01T01:00:00Z", Reason: "r", Text: "hello <@everyone>"}

func TestSignKnownValue(t *testing.T) {
	t.Parallel()
	// HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), a
	// published test value.
	got := channels.Sign("key", []byte("The quick brown fox jumps over the lazy dog"))
	if want := "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestBodies(t *testing.T) {
	t.Parallel()
	now := time.Unix(1717203600, 0)
	body, headers, err := channels.Body(channels.Destination{Channel: "webhook", Secret: "s3"}, msg, now)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"k1","event":"fired","producer":"B62qp","rule":{"kind":"missed_batches","count":3},"bot_log_id":7,"window_end":"2024-06-01T01:00:00Z","reason":"r","text":"hello \u003c@everyone\u003e","timestamp":1717203600}`
	if string(body) != want {
		t.Errorf("webhook body\n%s\nwant\n%s", body, want)
	}
	if headers["X-Signature-256"] != channels.Sign("s3", body) || headers["X-Signature-Timestamp"] != "1717203600" || headers["X-Idempotency-Key"] != "k1" {
		t.Errorf("webhook headers %v", headers)
	}

	body, headers, err = channels.Body(channels.Destination{Channel: "slack"}, msg, now)
	if err != nil || string(body) != `{"text":"hello \u003c@everyone\u003e"}` || len(headers) != 0 {
		t.Errorf("slack body %s headers %v err %v", body, headers, err)
	}
	body, _, err = channels.Body(channels.Destination{Channel: "discord"}, msg, now)
	if err != nil || string(body) != `{"content":"hello \u003c@everyone\u003e","allowed_mentions":{"parse":[]}}` {
		t.Errorf("discord body %s err %v", body, err)
	}
	long := msg
	long.Text = strings.Repeat("é", 2500)
	body, _, _ = channels.Body(channels.Destination{Channel: "discord"}, long, now)
	var d struct{ Content string }
	if err := json.Unmarshal(body, &d); err != nil || len([]rune(d.Content)) != 2000 || !strings.HasSuffix(d.Content, "…") {
		t.Errorf("discord content of %d runes, want 2000 ending with …", len([]rune(d.Content)))
	}
	if _, _, err := channels.Body(channels.Destination{Channel: "sms"}, msg, now); err == nil {
		t.Error("unknown channel accepted")
	}
}
