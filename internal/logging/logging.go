// Package logging builds the coordinator's slog handler from the
// configuration (LOG_FORMAT, LOG_LEVEL), the same for every command and for
// the verifier processes, and relays the JSON records a child process prints
// into the parent's log as structured records.
package logging

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"

	"golang.org/x/term"

	"github.com/delegation-program/uptime-coordinator/config"
)

// New returns a logger writing to w as c asks: JSON or text (human-friendly
// key=value), text by default when w is a terminal and JSON otherwise, at
// c.Level. Durations are written as Go duration strings ("1.5s"), never as
// nanosecond integers.
func New(w io.Writer, c config.Log) *slog.Logger {
	return slog.New(Handler(w, c))
}

// NewMasked is New with every secret mask replaces (config.SecretMasker)
// hidden from every record written, whatever logged it: a secret in an
// error text, a child's line or an attribute never reaches w.
func NewMasked(w io.Writer, c config.Log, mask *strings.Replacer) *slog.Logger {
	if c.Format == "" {
		if JSON(w, c) {
			c.Format = config.LogJSON
		} else {
			c.Format = config.LogText
		}
	}
	return slog.New(Handler(maskingWriter{w: w, mask: mask}, c))
}

// maskingWriter masks each record (slog handlers write a record in one
// Write) before passing it on.
type maskingWriter struct {
	w    io.Writer
	mask *strings.Replacer
}

func (m maskingWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(m.w, m.mask.Replace(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Handler is New's handler.
func Handler(w io.Writer, c config.Log) slog.Handler {
	opts := &slog.HandlerOptions{Level: c.Level, ReplaceAttr: replaceAttr}
	if JSON(w, c) {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}

// JSON reports whether New writes JSON to w.
func JSON(w io.Writer, c config.Log) bool {
	switch c.Format {
	case config.LogJSON:
		return true
	case config.LogText:
		return false
	}
	f, ok := w.(*os.File)
	return !ok || !term.IsTerminal(int(f.Fd()))
}

func replaceAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// Relay logs line, one line a child process printed, through log: a JSON
// record from a child using this package (such as "coordinator verify")
// becomes a record with the child's level, message and attributes (its time
// is dropped: the relayed record has its own); attrs are added to it. It
// reports false, logging nothing, when line is not such a record.
func Relay(log *slog.Logger, line string, attrs ...slog.Attr) bool {
	if len(line) == 0 || line[0] != '{' {
		return false
	}
	var rec map[string]any
	if json.Unmarshal([]byte(line), &rec) != nil {
		return false
	}
	msg, ok := rec[slog.MessageKey].(string)
	if !ok {
		return false
	}
	levelName, ok := rec[slog.LevelKey].(string)
	if !ok {
		return false
	}
	var level slog.Level
	if level.UnmarshalText([]byte(levelName)) != nil {
		return false
	}
	delete(rec, slog.MessageKey)
	delete(rec, slog.LevelKey)
	delete(rec, slog.TimeKey)
	log.LogAttrs(context.Background(), level, msg, append(attrs, fields(rec)...)...)
	return true
}

// fields turns a decoded JSON object into attributes in key order, objects
// into groups.
func fields(obj map[string]any) []slog.Attr {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	attrs := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		if sub, ok := obj[k].(map[string]any); ok {
			attrs = append(attrs, slog.Attr{Key: k, Value: slog.GroupValue(fields(sub)...)})
			continue
		}
		attrs = append(attrs, slog.Any(k, obj[k]))
	}
	return attrs
}
