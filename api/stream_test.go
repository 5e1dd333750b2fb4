package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

type sseEvent struct {
	name, id, data string
}

// openStream connects to the stream and returns its events as they arrive
// (comments included as events named ":").
func openStream(t *testing.T, url, lastEventID string) <-chan sseEvent {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := make(chan sseEvent, 100)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" || ev.data != "" {
					out <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
				out <- sseEvent{name: ":", data: strings.TrimSpace(line[1:])}
			case strings.HasPrefix(line, "event: "):
				ev.name = line[len("event: "):]
			case strings.HasPrefix(line, "id: "):
				ev.id = line[len("id: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[len("data: "):]
			}
		}
	}()
	// Connected once the first comment arrives.
	select {
	case ev := <-out:
		if ev.name != ":" || ev.data != "connected" {
			t.Fatalf("first stream message %+v, want the connected comment", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stream did not connect")
	}
	return out
}

// nextBatch returns the next batch event, skipping heartbeats.
func nextBatch(t *testing.T, events <-chan sseEvent, within time.Duration) (sseEvent, bool) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("stream closed")
			}
			if ev.name == "batch" {
				return ev, true
			}
		case <-deadline:
			return sseEvent{}, false
		}
	}
}

type streamData struct {
	Batch struct {
		ID               int64  `json:"bot_log_id"`
		End              string `json:"end"`
		ProducersPointed int    `json:"producers_with_point"`
	} `json:"batch"`
	Producers []struct {
		Producer string `json:"producer"`
		Point    bool   `json:"point"`
		Known    bool   `json:"known"`
	} `json:"producers"`
}

func TestStream(t *testing.T) {
	t.Parallel()
	s := seed(t, 4)
	ts, hub := serve(t, s.Cfg, s.Pool)
	ctx := context.Background()
	pointed, unknown := s.Net.Producers[0], "B62q"+strings.Repeat("Z", 51)
	url := ts.URL + "/api/v1/stream?producer=" + pointed + "&producer=" + unknown

	live := openStream(t, url, "")
	ids := s.Next(t, 1)
	ev, ok := nextBatch(t, live, 10*time.Second)
	if !ok || ev.id != strconv.FormatInt(ids[0], 10) {
		t.Fatalf("connected client got %+v (%v), want batch %d", ev, ok, ids[0])
	}
	var d streamData
	if err := json.Unmarshal([]byte(ev.data), &d); err != nil {
		t.Fatal(err)
	}
	var wantPoint bool
	var wantPointed int
	if err := s.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM points_summary ps JOIN nodes n ON n.id = ps.node_id
		WHERE ps.bot_log_id = $1 AND n.block_producer_key = $2), (SELECT count(*) FROM points_summary WHERE bot_log_id = $1)`,
		ids[0], pointed).Scan(&wantPoint, &wantPointed); err != nil {
		t.Fatal(err)
	}
	if d.Batch.ID != ids[0] || d.Batch.End != "2024-06-01T10:00:00Z" || d.Batch.ProducersPointed != wantPointed || wantPointed == 0 ||
		len(d.Producers) != 2 || d.Producers[0].Producer != pointed || d.Producers[0].Point != wantPoint || !d.Producers[0].Known ||
		d.Producers[1].Producer != unknown || d.Producers[1].Known || d.Producers[1].Point {
		t.Errorf("event data %s, want batch %d ending 10:00 with %d pointed, %s point=%v, %s unknown", ev.data, ids[0], wantPointed, pointed, wantPoint, unknown)
	}

	// A client that left after ids[0] reconnects after two more batches: it
	// gets exactly those two, then live ones.
	missed := s.Next(t, 2)
	back := openStream(t, url, strconv.FormatInt(ids[0], 10))
	var got []string
	for range 2 {
		ev, ok := nextBatch(t, back, 10*time.Second)
		if !ok {
			t.Fatal("reconnected client: missed batches not replayed")
		}
		got = append(got, ev.id)
	}
	if want := []string{strconv.FormatInt(missed[0], 10), strconv.FormatInt(missed[1], 10)}; !slices.Equal(got, want) {
		t.Errorf("replayed %v, want %v", got, want)
	}
	if ev, ok := nextBatch(t, back, 700*time.Millisecond); ok {
		t.Errorf("reconnected client got an extra event %+v", ev)
	}
	// Heartbeats keep the connection alive.
	select {
	case ev := <-back:
		if ev.name != ":" || ev.data != "heartbeat" {
			t.Errorf("got %+v, want a heartbeat", ev)
		}
	case <-time.After(5 * time.Second):
		t.Error("no heartbeat")
	}

	// A client that never reads blocks neither the others nor the
	// coordinator.
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /api/v1/stream HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	for hub.Clients() < 3 {
		time.Sleep(10 * time.Millisecond)
	}
	const n = 20 // more than a client may fall behind
	fresh := s.Next(t, n)
	for i := range n {
		ev, ok := nextBatch(t, back, 10*time.Second)
		if !ok || ev.id != strconv.FormatInt(fresh[i], 10) {
			t.Fatalf("with a stalled client, event %d: %+v (%v), want %d", i, ev, ok, fresh[i])
		}
	}
	// The first client missed nothing either.
	for _, id := range append(missed, fresh...) {
		if ev, ok := nextBatch(t, live, 10*time.Second); !ok || ev.id != strconv.FormatInt(id, 10) {
			t.Fatalf("first client: %+v (%v), want %d", ev, ok, id)
		}
	}

	// Bad input.
	for _, c := range []struct{ url, lastID string }{
		{ts.URL + "/api/v1/stream?producer=nope", ""},
		{ts.URL + "/api/v1/stream", "abc"},
	} {
		req, _ := http.NewRequest(http.MethodGet, c.url, nil)
		if c.lastID != "" {
			req.Header.Set("Last-Event-ID", c.lastID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("%s Last-Event-ID %q: %d, want 400", c.url, c.lastID, resp.StatusCode)
		}
	}
}
