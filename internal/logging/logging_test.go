package logging

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/config"
)

func TestFormat(t *testing.T) {
	file, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var buf bytes.Buffer
	for _, tc := range []struct {
		name   string
		w      io.Writer
		format string
		json   bool
	}{
		{"buffer, auto", &buf, "", true},
		{"regular file, auto", file, "", true},
		{"json", &buf, config.LogJSON, true},
		{"text", file, config.LogText, false},
	} {
		if got := JSON(tc.w, config.Log{Format: tc.format}); got != tc.json {
			t.Errorf("%s: JSON = %v, want %v", tc.name, got, tc.json)
		}
	}
}

// TestDurations: a duration is written as a Go duration string in both
// formats, also inside a group; LOG_LEVEL filters.
func TestDurations(t *testing.T) {
	var j, x bytes.Buffer
	for _, w := range []struct {
		buf    *bytes.Buffer
		format string
	}{{&j, config.LogJSON}, {&x, config.LogText}} {
		log := New(w.buf, config.Log{Level: slog.LevelInfo, Format: w.format})
		log.Info("phase done", "took", 1500*time.Millisecond, slog.Group("wait", "for", 2*time.Minute))
		log.Debug("not shown")
	}
	var rec map[string]any
	if err := json.Unmarshal(j.Bytes(), &rec); err != nil {
		t.Fatalf("JSON output %q: %v", j.String(), err)
	}
	if rec["took"] != "1.5s" || rec["wait"].(map[string]any)["for"] != "2m0s" || rec["msg"] != "phase done" {
		t.Errorf("JSON record %v: want took 1.5s, wait.for 2m0s", rec)
	}
	if !regexp.MustCompile(`^time=\S+ level=INFO msg="phase done" took=1.5s wait.for=2m0s\n$`).MatchString(x.String()) {
		t.Errorf("text record %q", x.String())
	}
	if strings.Contains(j.String()+x.String(), "not shown") {
		t.Error("a debug record passed LOG_LEVEL=info")
	}
}

func TestRelay(t *testing.T) {
	// What a child using New with LOG_FORMAT=json prints.
	var child bytes.Buffer
	New(&child, config.Log{Level: slog.LevelDebug, Format: config.LogJSON}).
		Warn("block not found", "block", "3NK...", "took", 20*time.Millisecond, slog.Group("window", "start", "00:00"), "n", 3)
	line := strings.TrimSuffix(child.String(), "\n")

	var parent bytes.Buffer
	log := New(&parent, config.Log{Level: slog.LevelInfo, Format: config.LogJSON}).With("worker", "w-1")
	if !Relay(log, line, slog.String("stream", "stderr")) {
		t.Fatalf("Relay(%q) = false", line)
	}
	var rec map[string]any
	if err := json.Unmarshal(parent.Bytes(), &rec); err != nil {
		t.Fatalf("relayed %q: %v", parent.String(), err)
	}
	want := map[string]any{"level": "WARN", "msg": "block not found", "worker": "w-1", "stream": "stderr",
		"block": "3NK...", "took": "20ms", "window": map[string]any{"start": "00:00"}, "n": float64(3)}
	for k, v := range want {
		got := rec[k]
		if gm, ok := got.(map[string]any); ok {
			if gm["start"] != "00:00" || len(gm) != 1 {
				t.Errorf("relayed %s = %v, want %v", k, got, v)
			}
			continue
		}
		if got != v {
			t.Errorf("relayed %s = %v, want %v", k, got, v)
		}
	}
	if len(rec) != len(want)+1 { // + the parent's time
		t.Errorf("relayed record %v has other fields", rec)
	}
	if !strings.Contains(parent.String(), `"worker":"w-1","stream":"stderr","block":"3NK..."`) {
		t.Errorf("attribute order %s: want the parent's, then the line's in key order", parent.String())
	}

	// Not records: nothing is logged.
	parent.Reset()
	for _, line := range []string{"", "plain text", `time=2024 level=INFO msg=hi`, `{"msg":"no level"}`, `{"level":"LOUD","msg":"x"}`, `{not json`} {
		if Relay(log, line) {
			t.Errorf("Relay(%q) = true", line)
		}
	}
	if parent.Len() != 0 {
		t.Errorf("logged %q for non-records", parent.String())
	}

	// Below the parent's level: dropped like its own records.
	var dbg bytes.Buffer
	New(&dbg, config.Log{Level: slog.LevelDebug, Format: config.LogJSON}).Debug("detail")
	if !Relay(log, strings.TrimSpace(dbg.String())) || parent.Len() != 0 {
		t.Errorf("a relayed DEBUG record passed the parent's INFO level: %q", parent.String())
	}
}
