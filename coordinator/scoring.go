package coordinator

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// MaxWeight is the largest distance from the consensus chain at which a state
// hash still earns points (the original's max_depth).
const MaxWeight = 2

// Invalid-submission reasons, as counted in logs and metrics.
const (
	ReasonUnverified      = "unverified"          // verified is NULL: no verifier looked at it
	ReasonRejected        = "verification_failed" // verified is false
	ReasonValidationError = "validation_error"    // validation_error is set
	ReasonNoStateHash     = "no_state_hash"       // verified, but state_hash is NULL or empty
	ReasonMalformed       = "malformed"           // verified, but the columns are not a block's (see CheckShape)
)

// ShortlistedHash is a state hash on (or within MaxWeight blocks of) the
// consensus chain of a batch, as stored in bot_logs_statehash.
type ShortlistedHash struct {
	StateHash string
	Parent    string // "" when the submission named none
	Weight    int
}

// Point is one points row: a valid submission whose state hash is
// shortlisted.
type Point struct {
	Submission *Submission
	StateHash  string
	// FileName is the points.file_name: submitted_at in the batch's one
	// precision (see fileNameLayout), a dash, the submitter.
	FileName string
}

// Result is the outcome of scoring one batch.
type Result struct {
	Valid   []*Submission  // the submissions that count (see Classify)
	Invalid map[string]int // ignored submissions by reason
	// Malformed are the submissions counted as ReasonMalformed, with why,
	// in the order of their SubmittedAt and submitter.
	Malformed  []Malformed
	Submitters int // distinct submitters of valid submissions
	// Consensus is the number of state hashes submitted by at least 5% of
	// the submitters.
	Consensus int
	// Shortlist holds the shortlisted state hashes submitted in this batch,
	// with their weights and parents, sorted by state hash: the batch's
	// bot_logs_statehash rows and the next batch's previous shortlist.
	Shortlist []ShortlistedHash
	Points    []Point // in the order of Valid
	// EarliestValid is the earliest SubmittedAt of Valid (zero when none).
	EarliestValid time.Time
}

// OffChain is the number of valid submissions that earned no point because
// their state hash is not on the consensus chain.
func (r *Result) OffChain() int { return len(r.Valid) - len(r.Points) }

// Classify splits submissions into the valid ones, which count for points,
// and the number of ignored ones by reason. Valid is sorted by SubmittedAt,
// then submitter, whatever the input order. A submission is valid when
// verified is true, validation_error is NULL or empty, state_hash is not
// empty and its verification columns have the shape of a block's
// (CheckShape).
func Classify(subs []Submission) (valid []*Submission, invalid map[string]int) {
	valid, invalid, _ = classify(subs)
	return valid, invalid
}

func classify(subs []Submission) (valid []*Submission, invalid map[string]int, malformed []Malformed) {
	invalid = map[string]int{}
	for i := range subs {
		s := &subs[i]
		switch {
		case s.Verified == nil:
			invalid[ReasonUnverified]++
		case !*s.Verified:
			invalid[ReasonRejected]++
		case s.ValidationError != nil && *s.ValidationError != "":
			invalid[ReasonValidationError]++
		case s.StateHash == nil || *s.StateHash == "":
			invalid[ReasonNoStateHash]++
		default:
			if why := CheckShape(s); why != "" {
				invalid[ReasonMalformed]++
				malformed = append(malformed, Malformed{Submission: s, Reason: why})
				continue
			}
			valid = append(valid, s)
		}
	}
	bySubmission := func(a, b *Submission) int {
		if c := a.SubmittedAt.Compare(b.SubmittedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Submitter, b.Submitter)
	}
	slices.SortFunc(valid, bySubmission)
	slices.SortFunc(malformed, func(a, b Malformed) int { return bySubmission(a.Submission, b.Submission) })
	return valid, invalid, malformed
}

// Threshold reports whether count distinct submitters out of n reach the
// 5% support threshold. The original compares against round(n*0.05, 2),
// which is n/20 exactly, so exactly 5% qualifies: 20*count >= n.
func Threshold(count, n int) bool { return n > 0 && 20*count >= n }

// Score finds the batch's state hashes on the consensus chain and the
// submissions that earn a point. prev is the previous batch's shortlist.
//
// Nodes of the graph are the state hashes of the valid submissions and of
// prev; edges go from parent to child for every valid submission whose
// parent is a node, and between the hashes of prev. The consensus hashes
// (5% support) weigh 0, the hashes of prev weigh their stored weight, and
// every other hash weighs the minimum over its parents of their weight + 1:
// a multi-source shortest path, computed exactly in O(V+E). Hashes weighing
// at most MaxWeight are shortlisted. The result does not depend on the order
// of subs or prev.
func Score(subs []Submission, prev []ShortlistedHash) *Result {
	valid, invalid, malformed := classify(subs)
	r := &Result{Valid: valid, Invalid: invalid, Malformed: malformed}
	g := buildGraph(valid, prev)
	r.Submitters = g.submitters
	for _, s := range valid {
		if r.EarliestValid.IsZero() || s.SubmittedAt.Before(r.EarliestValid) {
			r.EarliestValid = s.SubmittedAt
		}
	}
	consensus := g.consensus()
	dist := g.weigh(prev, consensus)
	for i := range g.inBatch {
		if consensus[i] {
			r.Consensus++
		}
		if dist[i] > MaxWeight {
			continue
		}
		parent := ""
		if p := g.support[i].latest.Parent; p != nil {
			parent = *p
		}
		r.Shortlist = append(r.Shortlist, ShortlistedHash{StateHash: g.names[i], Parent: parent, Weight: dist[i]})
	}
	slices.SortFunc(r.Shortlist, func(a, b ShortlistedHash) int { return strings.Compare(a.StateHash, b.StateHash) })
	layout := fileNameLayout(fileNameFrame(subs))
	for _, s := range valid {
		if dist[g.index[*s.StateHash]] <= MaxWeight {
			r.Points = append(r.Points, Point{Submission: s, StateHash: *s.StateHash, FileName: fileName(s, layout)})
		}
	}
	return r
}

// graph is the parent graph of a batch's state hashes and the previous
// shortlist's.
type graph struct {
	names      []string       // node -> state hash
	index      map[string]int // state hash -> node
	children   [][]int        // node -> child nodes, deduplicated
	edges      int
	inBatch    int       // nodes [0, inBatch) were submitted in this batch
	support    []support // per batch node
	submitters int       // distinct submitters of the batch
}

type support struct {
	submitters map[string]struct{}
	latest     *Submission // the hash's latest submission: the source of its parent
}

func buildGraph(valid []*Submission, prev []ShortlistedHash) *graph {
	g := &graph{index: map[string]int{}}
	node := func(h string) int {
		if i, ok := g.index[h]; ok {
			return i
		}
		g.index[h] = len(g.names)
		g.names = append(g.names, h)
		return len(g.names) - 1
	}
	submitters := map[string]struct{}{}
	for _, s := range valid {
		i := node(*s.StateHash)
		if i == len(g.support) {
			g.support = append(g.support, support{submitters: map[string]struct{}{}})
		}
		sp := &g.support[i]
		sp.submitters[s.Submitter] = struct{}{}
		if sp.latest == nil || later(s, sp.latest) {
			sp.latest = s
		}
		submitters[s.Submitter] = struct{}{}
	}
	g.inBatch = len(g.names)
	g.submitters = len(submitters)
	prevHashes := map[string]struct{}{}
	for _, p := range prev {
		node(p.StateHash)
		prevHashes[p.StateHash] = struct{}{}
	}

	g.children = make([][]int, len(g.names))
	seen := map[[2]int]struct{}{}
	edge := func(from, to int) {
		k := [2]int{from, to}
		if _, ok := seen[k]; ok {
			return
		}
		seen[k] = struct{}{}
		g.children[from] = append(g.children[from], to)
		g.edges++
	}
	for _, s := range valid {
		if s.Parent == nil {
			continue
		}
		if pi, ok := g.index[*s.Parent]; ok {
			edge(pi, g.index[*s.StateHash])
		}
	}
	for _, p := range prev {
		if _, ok := prevHashes[p.Parent]; ok && p.Parent != "" {
			edge(g.index[p.Parent], g.index[p.StateHash])
		}
	}
	return g
}

// consensus marks the batch's hashes that reach the support threshold.
func (g *graph) consensus() []bool {
	c := make([]bool, g.inBatch)
	for i := range c {
		c[i] = Threshold(len(g.support[i].submitters), g.submitters)
	}
	return c
}

// weigh returns every node's weight: 0 for the consensus hashes (consensus
// is indexed by batch node), the stored weight for prev's, else the minimum
// over parents of their weight + 1.
// Weights above MaxWeight are reported as unreached (they cannot shortlist
// anything, so they are never propagated). It runs Dial's algorithm with
// buckets 0..MaxWeight: O(V+E).
func (g *graph) weigh(prev []ShortlistedHash, consensus []bool) []int {
	dist := make([]int, len(g.names))
	for i := range dist {
		dist[i] = Unreached
	}
	for _, p := range prev {
		i := g.index[p.StateHash]
		dist[i] = min(dist[i], max(p.Weight, 0))
	}
	for i, c := range consensus {
		if c {
			dist[i] = 0
		}
	}
	buckets := make([][]int, MaxWeight+1)
	for i, d := range dist {
		if d <= MaxWeight {
			buckets[d] = append(buckets[d], i)
		}
	}
	for d := 0; d < MaxWeight; d++ {
		for k := 0; k < len(buckets[d]); k++ {
			u := buckets[d][k]
			if dist[u] != d {
				continue // stale entry: u was lowered after being queued
			}
			for _, v := range g.children[u] {
				if d+1 < dist[v] {
					dist[v] = d + 1
					buckets[d+1] = append(buckets[d+1], v)
				}
			}
		}
	}
	for i, d := range dist {
		if d > MaxWeight {
			dist[i] = Unreached
		}
	}
	return dist
}

// Unreached is the weight of a hash that is not within MaxWeight of the
// consensus chain (the original's 9999).
const Unreached = 9999

// later orders submissions by SubmittedAt, ties broken by submitter, so that
// "the latest submission of a hash" does not depend on input order.
func later(a, b *Submission) bool {
	if c := a.SubmittedAt.Compare(b.SubmittedAt); c != 0 {
		return c > 0
	}
	return cmp.Less(b.Submitter, a.Submitter)
}
