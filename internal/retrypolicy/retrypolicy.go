// Package retrypolicy is the coordinator's one retry delay policy: the
// exponential backoff of cenkalti/backoff v5, configured in one place for
// every retry of the project — the batch loop and re-verification, the
// application status update, the verifier workers' host resolution,
// Cassandra requests, alert deliveries and the stream's reconnection.
//
// Loops retry with backoff.Retry and Policy.BackOff; retry hooks of other
// libraries that ask for the delay of the n-th retry (gocql's RetryPolicy,
// River's ClientRetryPolicy) use Policy.Delay.
package retrypolicy

import (
	"math"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Policy waits First before the first retry and twice as long before each
// next one, at most Max, plus up to Jitter of that more at random.
type Policy struct {
	First time.Duration // delay before the first retry
	Max   time.Duration // cap of the delay; 0: never capped
	// Jitter is the largest random extra, as a fraction of the delay
	// (0.1: up to 10 % more); 0: none, every delay is exact.
	Jitter float64
}

// BackOff returns the policy as a backoff v5 BackOff, for backoff.Retry.
func (p Policy) BackOff() backoff.BackOff {
	b := backoff.NewExponentialBackOff()
	b.Multiplier = 2
	// backoff v5 spreads a delay d over d·(1 ± RandomizationFactor):
	// centring it on d·(1 + Jitter/2) makes the spread [d, d·(1 + Jitter)].
	centre := 1 + p.Jitter/2
	b.RandomizationFactor = p.Jitter / 2 / centre
	b.InitialInterval = scale(p.First, centre)
	b.MaxInterval = time.Duration(math.MaxInt64)
	if p.Max > 0 {
		b.MaxInterval = scale(max(p.Max, p.First), centre)
	}
	b.Reset()
	return b
}

// Delay returns the delay before retry n (1: the first retry).
func (p Policy) Delay(n int) time.Duration {
	b := p.BackOff()
	d := b.NextBackOff()
	for range min(max(n, 1), 100) - 1 {
		d = b.NextBackOff()
	}
	return d
}

func scale(d time.Duration, f float64) time.Duration {
	if f == 1 {
		return d
	}
	return time.Duration(float64(d) * f)
}
