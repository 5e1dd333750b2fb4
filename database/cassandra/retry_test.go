package cassandra

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/gocql/gocql"
)

func TestBackoffDelay(t *testing.T) {
	p := NewBackoffRetryPolicy()
	for n, base := range map[int]time.Duration{
		1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond,
		7: 6400 * time.Millisecond, 8: 10 * time.Second, 10: 10 * time.Second,
	} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := p.Delay(n)
			if d < base || d > base+base/10 {
				t.Fatalf("Delay(%d) = %v, want within [%v, %v]", n, d, base, base+base/10)
			}
			seen[d] = true
		}
		if len(seen) < 100 {
			t.Errorf("Delay(%d) took only %d distinct values in 200 draws: no jitter", n, len(seen))
		}
	}
}

// retryable is the part of a gocql query the policy sees.
type retryable struct {
	attempts int
	ctx      context.Context
}

func (r retryable) Attempts() int                           { return r.attempts }
func (r retryable) SetConsistency(gocql.Consistency)        {}
func (r retryable) GetConsistency() gocql.Consistency       { return gocql.LocalQuorum }
func (r retryable) Context() context.Context                { return r.ctx }
func (r retryable) String() string                          { return "query" }
func (r retryable) withAttempts(n int) gocql.RetryableQuery { r.attempts = n; return r }

func TestBackoffAttempt(t *testing.T) {
	p := &BackoffRetryPolicy{Base: time.Millisecond, Max: 2 * time.Millisecond, MaxRetries: 3}
	q := retryable{ctx: context.Background()}
	for n := 1; n <= 3; n++ {
		if !p.Attempt(q.withAttempts(n)) {
			t.Errorf("attempt %d refused; 3 retries are allowed", n)
		}
	}
	if p.Attempt(q.withAttempts(4)) {
		t.Error("a fourth retry was allowed")
	}

	// A cancelled request stops waiting at once.
	slow := &BackoffRetryPolicy{Base: time.Hour, Max: time.Hour, MaxRetries: 3}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if slow.Attempt(retryable{attempts: 1, ctx: ctx}) {
		t.Error("retry allowed after the context ended")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("waited %v after the context ended", d)
	}
}

// requestError is a server error as gocql reports it.
type requestError struct{ code int }

func (e requestError) Code() int       { return e.code }
func (e requestError) Message() string { return "message" }
func (e requestError) Error() string   { return "server error" }

func TestBackoffRetryType(t *testing.T) {
	p := NewBackoffRetryPolicy()
	for _, tt := range []struct {
		name string
		err  error
		want gocql.RetryType
	}{
		{"read timeout", &gocql.RequestErrReadTimeout{}, gocql.Retry},
		{"write timeout", &gocql.RequestErrWriteTimeout{}, gocql.Retry},
		{"overloaded", requestError{gocql.ErrCodeOverloaded}, gocql.Retry},
		{"server error", requestError{gocql.ErrCodeServer}, gocql.Retry},
		{"unavailable", &gocql.RequestErrUnavailable{}, gocql.RetryNextHost},
		{"no response", gocql.ErrTimeoutNoResponse, gocql.Retry},
		{"connection closed", gocql.ErrConnectionClosed, gocql.Retry},
		{"syntax", requestError{gocql.ErrCodeSyntax}, gocql.Rethrow},
		{"invalid", requestError{gocql.ErrCodeInvalid}, gocql.Rethrow},
		{"unauthorized", requestError{gocql.ErrCodeUnauthorized}, gocql.Rethrow},
		{"connection reset", &net.OpError{Op: "read", Err: syscall.ECONNRESET}, gocql.Retry},
		{"eof", io.EOF, gocql.Retry},
		{"marshal", gocql.MarshalError("can not marshal int64 into int"), gocql.Rethrow},
		{"wrapped invalid", errors.Join(errors.New("context"), requestError{gocql.ErrCodeInvalid}), gocql.Rethrow},
	} {
		if got := p.GetRetryType(tt.err); got != tt.want {
			t.Errorf("%s: retry type %v, want %v", tt.name, got, tt.want)
		}
	}
}
