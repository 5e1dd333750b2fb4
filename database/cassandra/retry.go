package cassandra

import (
	"errors"
	"io"
	"net"
	"time"

	"github.com/gocql/gocql"

	"github.com/delegation-program/uptime-coordinator/internal/retrypolicy"
)

// BackoffRetryPolicy retries failed requests after an exponentially growing,
// jittered pause, as the original coordinator does: the n-th retry waits
// min(Max, Base·2^(n-1)) plus up to 10 % more at random.
//
// Unlike gocql's ExponentialBackoffRetryPolicy (whose jitter is ±Base/2 and
// which retries every error), the pause ends early when the request's context
// does, and errors that cannot succeed on a retry (syntax, invalid request,
// unauthorized, ...) are returned at once.
type BackoffRetryPolicy struct {
	Base, Max  time.Duration
	MaxRetries int
}

// NewBackoffRetryPolicy returns the original's policy: base 0.1 s, at most
// 10 s, 10 retries.
func NewBackoffRetryPolicy() *BackoffRetryPolicy {
	return &BackoffRetryPolicy{Base: 100 * time.Millisecond, Max: 10 * time.Second, MaxRetries: 10}
}

// Delay is the pause before retry n (1 for the first retry).
func (p *BackoffRetryPolicy) Delay(n int) time.Duration {
	return retrypolicy.Policy{First: p.Base, Max: p.Max, Jitter: 0.1}.Delay(n)
}

// Attempt implements gocql.RetryPolicy: it waits before the next attempt and
// reports whether there is one.
func (p *BackoffRetryPolicy) Attempt(q gocql.RetryableQuery) bool {
	n := q.Attempts()
	if n > p.MaxRetries {
		return false
	}
	t := time.NewTimer(p.Delay(n))
	defer t.Stop()
	select {
	case <-q.Context().Done():
		return false
	case <-t.C:
		return true
	}
}

// GetRetryType implements gocql.RetryPolicy. Timeouts, overload and server
// errors are retried on the same node, unavailability on the next one, and
// connection errors on the same node (gocql moves on when it is down). Other
// errors, such as a value the driver cannot marshal, are returned.
func (p *BackoffRetryPolicy) GetRetryType(err error) gocql.RetryType {
	var (
		unavailable  *gocql.RequestErrUnavailable
		readTimeout  *gocql.RequestErrReadTimeout
		writeTimeout *gocql.RequestErrWriteTimeout
		re           gocql.RequestError
	)
	switch {
	case errors.As(err, &unavailable):
		return gocql.RetryNextHost
	case errors.As(err, &readTimeout), errors.As(err, &writeTimeout):
		return gocql.Retry
	}
	if !errors.As(err, &re) {
		if transient(err) {
			return gocql.Retry
		}
		return gocql.Rethrow // e.g. a value that does not fit its column
	}
	switch re.Code() {
	case gocql.ErrCodeReadTimeout, gocql.ErrCodeWriteTimeout, gocql.ErrCodeOverloaded,
		gocql.ErrCodeServer, gocql.ErrCodeTruncate:
		return gocql.Retry
	case gocql.ErrCodeUnavailable, gocql.ErrCodeBootstrapping:
		return gocql.RetryNextHost
	default:
		return gocql.Rethrow
	}
}

// transient reports whether err is a connection problem that a retry may
// outlive.
func transient(err error) bool {
	var ne net.Error
	return errors.Is(err, gocql.ErrTimeoutNoResponse) || errors.Is(err, gocql.ErrConnectionClosed) ||
		errors.Is(err, gocql.ErrNoConnections) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.As(err, &ne)
}
