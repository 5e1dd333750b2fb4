// Package synthnet generates a deterministic synthetic Mina-like network for
// tests, benchmarks and the demo: a chain of blocks with short forks and
// orphans, and block producers that submit their chain tip every few
// minutes. Some producers lag behind the tip, some sit on a fork, some go
// offline for hours, and some send submissions the verifier rejects.
package synthnet

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/delegation-program/uptime-coordinator/coordinator"
)

// Params shape a network. The zero value of a field picks its default.
type Params struct {
	Seed      uint64
	Producers int           // default 200
	Start     time.Time     // first block; default 2024-06-01 00:00 UTC
	Duration  time.Duration // span of submissions; default 2h
	// SubmitEvery is the mean time between two submissions of a producer
	// (default 5m30s: about 3.6 per 20-minute batch, as on mainnet).
	SubmitEvery time.Duration
	BlockTime   time.Duration // default 3m (a Mina slot)

	LaggingShare float64 // producers 3-6 blocks behind the tip (default 0.05)
	ForkShare    float64 // producers following a short fork (default 0.03)
	OfflineShare float64 // producers offline for a few hours (default 0.05)
	DepartShare  float64 // producers that stop for good half-way (default 0.02)
	InvalidShare float64 // submissions the verifier rejects (default 0.02)

	// Fates, when true, gives the first producers a designated fate that
	// the network records in Network.Fates (see Fate): one of each, so that
	// every batch outcome occurs. Fates change only what Verified returns
	// for those producers; without Fates the network is as before.
	Fates bool
}

// Fate kinds: what the generator did to a designated producer.
const (
	// FateOffline: a healthy producer that sends nothing in
	// [Fate.OfflineFrom, Fate.OfflineUntil).
	FateOffline = "offline"
	// FateLate: a healthy producer whose first submission comes half-way
	// through the span (it sends nothing in [Fate.OfflineFrom,
	// Fate.OfflineUntil), which starts at the beginning).
	FateLate = "late"
	// FateFailing: every submission fails verification with Fate.Error, a
	// message of error class Fate.Class (empty Error with no_state_hash: the
	// submission is marked verified without a state hash).
	FateFailing = "failing"
	// FateDeepFork: every submission names the tip of a private fork that
	// branches off a block no batch knows, so it is never on the consensus
	// chain.
	FateDeepFork = "deep_fork"
	// FateUnverified: the verifier never marks its submissions.
	FateUnverified = "unverified"
)

// Fate is the generator's record of what it did to a producer.
type Fate struct {
	Kind                      string
	Class, Error              string // FateFailing
	OfflineFrom, OfflineUntil time.Time
}

// FailingErrors are the messages the failing producers' submissions get, by
// the error class a verifier message of that kind belongs to.
var FailingErrors = map[string]string{
	"snark_invalid":       "Invalid SNARK work: the proof does not verify",
	"sok_digest_mismatch": "Sok digest mismatch: the snark work was produced for another prover",
	"block_missing":       "block 3NKx9 not found in the bucket",
	"block_malformed":     "failed to parse the block: unexpected end of JSON input",
	"signature_invalid":   "invalid signature of the submitter",
	"timeout":             "verification timed out after 300s",
	"other":               "internal verifier error 42",
	"no_state_hash":       "",
}

func (p *Params) defaults() {
	if p.Producers == 0 {
		p.Producers = 200
	}
	if p.Start.IsZero() {
		p.Start = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	}
	if p.Duration == 0 {
		p.Duration = 2 * time.Hour
	}
	if p.SubmitEvery == 0 {
		p.SubmitEvery = 5*time.Minute + 30*time.Second
	}
	if p.BlockTime == 0 {
		p.BlockTime = 3 * time.Minute
	}
	if p.LaggingShare == 0 {
		p.LaggingShare = 0.05
	}
	if p.ForkShare == 0 {
		p.ForkShare = 0.03
	}
	if p.OfflineShare == 0 {
		p.OfflineShare = 0.05
	}
	if p.DepartShare == 0 {
		p.DepartShare = 0.02
	}
	if p.InvalidShare == 0 {
		p.InvalidShare = 0.02
	}
}

// Block is one block of the network.
type Block struct {
	Hash, Parent string
	Height       int64
	Slot         int64
	At           time.Time
	Canonical    bool
}

// Submission is a generated submission with the block it names and, when
// the verifier would reject it, why.
type Submission struct {
	Submitter   string
	SubmittedAt time.Time
	CreatedAt   time.Time
	Block       *Block
	Invalid     string // the verifier's validation error, "" when valid
	// NoStateHash: marked verified without a state hash (Fates).
	NoStateHash bool
	// Unverified: the verifier never marks it (Fates).
	Unverified bool
}

// Network is a generated network.
type Network struct {
	Params      Params
	Blocks      []*Block
	Producers   []string
	Submissions []Submission // sorted by SubmittedAt, then submitter
	// Fates: the designated producers (Params.Fates) and what was done to
	// them.
	Fates map[string]Fate
}

// Generate builds a network from p. The same Params give the same network.
func Generate(p Params) *Network {
	p.defaults()
	rng := rand.New(rand.NewPCG(p.Seed, 0x5eed))
	n := &Network{Params: p}

	// The canonical chain, from one block before Start to its end, and short
	// forks: every so often a sibling block that gets one or two children.
	var chain []*Block
	genesis := &Block{Hash: hash(rng), Parent: hash(rng), Height: 100000, Slot: 200000, At: p.Start.Add(-p.BlockTime), Canonical: true}
	chain = append(chain, genesis)
	n.Blocks = append(n.Blocks, genesis)
	forkOf := map[*Block][]*Block{}
	for at := p.Start; !at.After(p.Start.Add(p.Duration)); at = at.Add(p.BlockTime) {
		tip := chain[len(chain)-1]
		b := &Block{Hash: hash(rng), Parent: tip.Hash, Height: tip.Height + 1, Slot: tip.Slot + 1 + int64(rng.IntN(2)), At: at, Canonical: true}
		chain = append(chain, b)
		n.Blocks = append(n.Blocks, b)
		if rng.IntN(4) == 0 { // a fork off the previous tip
			f := &Block{Hash: hash(rng), Parent: tip.Hash, Height: tip.Height + 1, Slot: b.Slot, At: at}
			n.Blocks = append(n.Blocks, f)
			forkOf[b] = append(forkOf[b], f)
			for k := range rng.IntN(3) {
				last := forkOf[b][len(forkOf[b])-1]
				c := &Block{Hash: hash(rng), Parent: last.Hash, Height: last.Height + 1, Slot: last.Slot + 1, At: at.Add(time.Duration(k+1) * p.BlockTime)}
				n.Blocks = append(n.Blocks, c)
				forkOf[b] = append(forkOf[b], c)
			}
		}
	}
	tipAt := func(t time.Time) int {
		i := sort.Search(len(chain), func(i int) bool { return chain[i].At.After(t) })
		return max(i-1, 0)
	}

	type kind int
	const (
		healthy kind = iota
		lagging
		forked
		offline
		departed
	)
	for i := range p.Producers {
		key := producerKey(rng, i)
		n.Producers = append(n.Producers, key)
		k := healthy
		switch r := rng.Float64(); {
		case r < p.LaggingShare:
			k = lagging
		case r < p.LaggingShare+p.ForkShare:
			k = forked
		case r < p.LaggingShare+p.ForkShare+p.OfflineShare:
			k = offline
		case r < p.LaggingShare+p.ForkShare+p.OfflineShare+p.DepartShare:
			k = departed
		}
		lag := 3 + rng.IntN(4)
		offFrom := p.Start.Add(time.Duration(rng.Int64N(int64(p.Duration) + 1)))
		offUntil := offFrom.Add(time.Hour + time.Duration(rng.Int64N(int64(3*time.Hour))))
		var fate *Fate
		if p.Fates && i < len(fateList) {
			f := fateList[i]
			fate = &f
			k = healthy
			switch f.Kind {
			case FateOffline:
				// Offline over the second quarter of the span, batch-aligned
				// when the span is a multiple of 4 intervals.
				k = offline
				offFrom, offUntil = p.Start.Add(p.Duration/4), p.Start.Add(p.Duration/2)
				f.OfflineFrom, f.OfflineUntil = offFrom, offUntil
			case FateLate:
				k = offline
				offFrom, offUntil = p.Start, p.Start.Add(p.Duration/2)
				f.OfflineFrom, f.OfflineUntil = offFrom, offUntil
			}
			if n.Fates == nil {
				n.Fates = map[string]Fate{}
			}
			n.Fates[key] = f
		}
		var fork []*Block // FateDeepFork's private chain
		if fate != nil && fate.Kind == FateDeepFork {
			base := &Block{Hash: hash(rng), Height: 90000, Slot: 180000}
			base.Parent = hash(rng)
			fork = append(fork, base)
		}
		at := p.Start.Add(time.Duration(rng.Int64N(int64(p.SubmitEvery))))
		for at.Before(p.Start.Add(p.Duration)) {
			// Postgres keeps microseconds: generate at that precision.
			at = at.Truncate(time.Microsecond)
			gone := k == departed && at.After(p.Start.Add(p.Duration/2))
			if !gone && !(k == offline && !at.Before(offFrom) && at.Before(offUntil)) {
				ti := tipAt(at)
				b := chain[ti]
				if fork != nil {
					// One more private block each time the canonical chain grew.
					for int64(len(fork)) <= int64(ti)+1 {
						last := fork[len(fork)-1]
						f := &Block{Hash: hash(rng), Parent: last.Hash, Height: last.Height + 1, Slot: last.Slot + 1, At: at}
						fork = append(fork, f)
						n.Blocks = append(n.Blocks, f)
					}
					b = fork[ti+1]
				}
				switch k {
				case lagging:
					b = chain[max(ti-lag, 0)]
				case forked:
					if fs := forkOf[chain[ti]]; len(fs) > 0 {
						b = fs[len(fs)-1]
					}
				}
				s := Submission{Submitter: key, SubmittedAt: at, CreatedAt: at.Add(-time.Duration(rng.IntN(3000)) * time.Millisecond).Truncate(time.Millisecond), Block: b}
				if rng.Float64() < p.InvalidShare && fate == nil {
					s.Invalid = []string{"snark verification failed", "block not found", "block hash mismatch"}[rng.IntN(3)]
				}
				if fate != nil {
					switch fate.Kind {
					case FateFailing:
						s.Invalid, s.NoStateHash = fate.Error, fate.Error == ""
					case FateUnverified:
						s.Unverified = true
					}
				}
				n.Submissions = append(n.Submissions, s)
			}
			jitter := time.Duration(rng.Int64N(int64(p.SubmitEvery)/2)) - p.SubmitEvery/4
			at = at.Add(p.SubmitEvery + jitter)
		}
	}
	sort.Slice(n.Submissions, func(i, j int) bool {
		a, b := n.Submissions[i], n.Submissions[j]
		if !a.SubmittedAt.Equal(b.SubmittedAt) {
			return a.SubmittedAt.Before(b.SubmittedAt)
		}
		return a.Submitter < b.Submitter
	})
	return n
}

// fateList are the designated fates of Params.Fates, given to the first
// producers in this order.
var fateList = func() []Fate {
	fates := []Fate{{Kind: FateOffline}, {Kind: FateLate}, {Kind: FateDeepFork}, {Kind: FateUnverified}}
	for _, class := range []string{"snark_invalid", "sok_digest_mismatch", "block_missing", "block_malformed",
		"signature_invalid", "timeout", "other", "no_state_hash"} {
		fates = append(fates, Fate{Kind: FateFailing, Class: class, Error: FailingErrors[class]})
	}
	return fates
}()

// Verified returns the network's submissions as a verifier leaves them:
// state_hash, parent, height, slot and verified filled in, or verified false
// with a validation error.
func (n *Network) Verified() []coordinator.Submission {
	out := make([]coordinator.Submission, len(n.Submissions))
	for i, s := range n.Submissions {
		c := n.raw(s)
		switch {
		case s.Unverified:
		case s.NoStateHash:
			c.Verified = ptr(true)
		case s.Invalid != "":
			c.Verified, c.ValidationError = ptr(false), ptr(s.Invalid)
		default:
			c.Verified = ptr(true)
			c.StateHash, c.Parent = ptr(s.Block.Hash), ptr(s.Block.Parent)
			c.Height, c.Slot = ptr(s.Block.Height), ptr(s.Block.Slot)
		}
		out[i] = c
	}
	return out
}

// Unverified returns the network's submissions as the collector stores them,
// before any verifier ran: block_hash set, verification columns NULL. A
// submission the verifier should reject names a block that does not exist.
func (n *Network) Unverified() []coordinator.Submission {
	out := make([]coordinator.Submission, len(n.Submissions))
	for i, s := range n.Submissions {
		c := n.raw(s)
		if s.Invalid != "" {
			c.BlockHash = ptr("3NKmissing" + s.Block.Hash[10:])
		}
		out[i] = c
	}
	return out
}

// Window returns the submissions with SubmittedAt in w.
func Window(subs []coordinator.Submission, w coordinator.Window) []coordinator.Submission {
	lo := sort.Search(len(subs), func(i int) bool { return !subs[i].SubmittedAt.Before(w.Start) })
	hi := sort.Search(len(subs), func(i int) bool { return !subs[i].SubmittedAt.Before(w.End) })
	return subs[lo:hi]
}

func (n *Network) raw(s Submission) coordinator.Submission {
	at := s.SubmittedAt.UTC()
	return coordinator.Submission{
		SubmittedAtDate:    time.Date(at.Year(), at.Month(), at.Day(), 0, 0, 0, 0, time.UTC),
		SubmittedAt:        at,
		Submitter:          s.Submitter,
		CreatedAt:          ptr(s.CreatedAt.UTC()),
		BlockHash:          ptr(s.Block.Hash),
		RemoteAddr:         ptr("10.0.0.1:8301"),
		PeerID:             ptr("12D3KooW" + s.Submitter[len(s.Submitter)-20:]),
		GraphQLControlPort: ptr(int32(3085)),
		BuiltWithCommitSHA: ptr("0123456789abcdef"),
	}
}

const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

func randString(rng *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}

// hash returns a state-hash-like string (52 characters starting 3N).
func hash(rng *rand.Rand) string { return "3N" + randString(rng, 50) }

// producerKey returns a public-key-like string: 55 base58 characters
// starting B62q, ending with i in base58 so that keys are unique.
func producerKey(rng *rand.Rand, i int) string {
	suffix := make([]byte, 5)
	for k := len(suffix) - 1; k >= 0; k-- {
		suffix[k] = alphabet[i%len(alphabet)]
		i /= len(alphabet)
	}
	return "B62q" + randString(rng, 46) + string(suffix)
}

func ptr[T any](v T) *T { return &v }

// Adversarial reshapes verified submissions so that batches of the given
// interval after start exercise the hard cases of scoring: windows 10-12 and
// 50 are empty; in windows 30 and 31 every submission names a hash of its
// own (no hash reaches 5%); in window 70 every other submission names a
// parent nobody knows; in window 90 some verified submissions have no state
// hash and some were never verified.
func Adversarial(subs []coordinator.Submission, start time.Time, interval time.Duration) []coordinator.Submission {
	var out []coordinator.Submission
	for i, s := range subs {
		switch b := int(s.SubmittedAt.Sub(start) / interval); {
		case b >= 10 && b <= 12, b == 50:
			continue
		case b == 30 || b == 31:
			if s.StateHash != nil {
				s.StateHash = ptr(b58("3NsxLx" + s.Submitter[4:24] + fmt.Sprint(s.SubmittedAt.UnixMicro())))
			}
		case b == 70 && i%2 == 0:
			if s.Parent != nil {
				s.Parent = ptr(b58("3Nunknown" + s.Submitter[4:24] + fmt.Sprint(s.SubmittedAt.UnixMicro())))
			}
		case b == 90 && i%5 == 0:
			s.StateHash = ptr("")
		case b == 90 && i%5 == 1:
			s.Verified, s.StateHash, s.Parent, s.Height, s.Slot = nil, nil, nil, nil, nil
		}
		out = append(out, s)
	}
	return out
}

// b58 replaces the digit 0, which base58 lacks, so that made-up hashes
// have the shape of real ones.
func b58(s string) string { return strings.ReplaceAll(s, "0", "z") }
