package retrypolicy_test

import (
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/internal/retrypolicy"
)

func TestDoublingUpToMax(t *testing.T) {
	b := retrypolicy.Policy{First: 5 * time.Second, Max: 2 * time.Minute}.BackOff()
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second,
		2 * time.Minute, 2 * time.Minute, 2 * time.Minute}
	for i, w := range want {
		if d := b.NextBackOff(); d != w {
			t.Fatalf("delay %d = %v, want %v", i+1, d, w)
		}
	}
	b.Reset()
	if d := b.NextBackOff(); d != 5*time.Second {
		t.Errorf("after Reset: %v, want 5s", d)
	}
}

func TestNeverCapped(t *testing.T) {
	b := retrypolicy.Policy{First: 200 * time.Millisecond}.BackOff()
	want := []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond}
	for i, w := range want {
		if d := b.NextBackOff(); d != w {
			t.Fatalf("delay %d = %v, want %v", i+1, d, w)
		}
	}
	for range 80 { // doubling past the largest duration stays positive
		if d := b.NextBackOff(); d <= 0 {
			t.Fatalf("delay %v after many retries", d)
		}
	}
}

func TestMaxBelowFirst(t *testing.T) {
	p := retrypolicy.Policy{First: 5 * time.Second, Max: time.Second}
	for n := 1; n <= 3; n++ {
		if d := p.Delay(n); d != 5*time.Second {
			t.Errorf("Delay(%d) = %v, want 5s (a cap below First is First)", n, d)
		}
	}
}

func TestDelay(t *testing.T) {
	p := retrypolicy.Policy{First: 5 * time.Second, Max: 30 * time.Minute}
	for n, want := range map[int]time.Duration{0: 5 * time.Second, 1: 5 * time.Second, 2: 10 * time.Second, 3: 20 * time.Second,
		9: 1280 * time.Second, 10: 30 * time.Minute, 25: 30 * time.Minute, 1000: 30 * time.Minute} {
		if d := p.Delay(n); d != want {
			t.Errorf("Delay(%d) = %v, want %v", n, d, want)
		}
	}
}

func TestJitterAddsUpToTheFraction(t *testing.T) {
	p := retrypolicy.Policy{First: 100 * time.Millisecond, Max: 10 * time.Second, Jitter: 0.1}
	for n, base := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 8: 10 * time.Second, 12: 10 * time.Second} {
		seen := map[time.Duration]bool{}
		lo, hi := base, base
		for range 500 {
			d := p.Delay(n)
			if d < base || d > base+base/10+time.Nanosecond {
				t.Fatalf("Delay(%d) = %v, want within [%v, %v]", n, d, base, base+base/10)
			}
			lo, hi = min(lo, d), max(hi, d)
			seen[d] = true
		}
		if len(seen) < 100 {
			t.Errorf("Delay(%d): only %d distinct values in 500 draws", n, len(seen))
		}
		// Both ends of the range are reached (within 1 % of it).
		if lo > base+base/1000 || hi < base+base/10-base/1000 {
			t.Errorf("Delay(%d) drew within [%v, %v]; want the whole of [%v, %v]", n, lo, hi, base, base+base/10)
		}
	}
}
