package coordinator

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2024, 6, 5, 10, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

// sub is a valid submission of hash with parent ("" for none).
func sub(submitter, hash, parent string, sec int) Submission {
	s := Submission{Submitter: submitter, SubmittedAt: t0.Add(time.Duration(sec) * time.Second), StateHash: ptr(hash), Verified: ptr(true)}
	if parent != "" {
		s.Parent = ptr(parent)
	}
	return s
}

func validPtrs(subs []Submission) []*Submission {
	v, _ := Classify(subs)
	return v
}

// consensusOf marks the named batch hashes as consensus hashes.
func consensusOf(g *graph, hashes ...string) []bool {
	c := make([]bool, g.inBatch)
	for _, h := range hashes {
		c[g.index[h]] = true
	}
	return c
}

func weights(g *graph, dist []int) map[string]int {
	out := map[string]int{}
	for i, d := range dist {
		out[g.names[i]] = d
	}
	return out
}

// The original's test_create_graph_count_number_of_nodes_and_edges.
func TestGraphCounts(t *testing.T) {
	g := buildGraph(validPtrs([]Submission{sub("a", "s1", "p1", 0), sub("b", "s2", "p2", 1)}), []ShortlistedHash{{StateHash: "p1"}})
	if len(g.names) != 3 || g.edges != 1 {
		t.Fatalf("nodes %d, edges %d; want 3 and 1", len(g.names), g.edges)
	}
}

// The original's test_create_graph_count_number_of_nodes_and_edges_nested.
func TestGraphCountsNested(t *testing.T) {
	g := buildGraph(validPtrs([]Submission{sub("a", "s1", "p1", 0), sub("b", "s2", "s1", 1), sub("c", "s3", "s2", 2)}),
		[]ShortlistedHash{{StateHash: "p1", Parent: "p2"}, {StateHash: "p2"}})
	if len(g.names) != 5 || g.edges != 4 {
		t.Fatalf("nodes %d, edges %d; want 5 and 4", len(g.names), g.edges)
	}
}

// The original's test_apply_weights_sum_weights_empty_parents_and_empty_selected_node:
// with no consensus hash and no previous weights, nothing is reached.
func TestWeightsEmpty(t *testing.T) {
	g := buildGraph(validPtrs([]Submission{sub("a", "s1", "p1", 0), sub("b", "s2", "s1", 1), sub("c", "s3", "s2", 2)}),
		[]ShortlistedHash{{StateHash: "p1", Parent: "p2", Weight: 123}, {StateHash: "p2", Weight: 345}})
	dist := g.weigh(nil, make([]bool, g.inBatch))
	if len(dist) != 5 {
		t.Fatalf("%d nodes, want 5", len(dist))
	}
	for h, w := range weights(g, dist) {
		if w != Unreached {
			t.Errorf("%s weighs %d, want unreached", h, w)
		}
	}
}

// The original's test_apply_weights_sum_weights_nested and test_bfs_easy.
func TestWeightsNestedAndShortlist(t *testing.T) {
	prev := []ShortlistedHash{{StateHash: "p1", Parent: "p2", Weight: 123}, {StateHash: "p2", Weight: 345}}
	g := buildGraph(validPtrs([]Submission{sub("a", "s1", "p1", 0), sub("b", "s2", "s1", 1), sub("c", "s3", "s2", 2)}), prev)
	got := weights(g, g.weigh(prev, consensusOf(g, "s1", "s2")))
	want := map[string]int{"s1": 0, "s2": 0, "s3": 1, "p1": Unreached, "p2": Unreached}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("weights %v, want %v", got, want)
	}
}

// The original's test_bfs_hard: two chains hanging off two previous hashes of
// weight 1, consensus at their first blocks; the shortlist stops at depth 2.
func TestShortlistHard(t *testing.T) {
	var subs []Submission
	for _, chain := range []string{"1", "2"} {
		parent := "parentStateHash" + chain
		for i := 1; i <= 6; i++ {
			h := fmt.Sprintf("stateHash%s%d", chain, i)
			subs = append(subs, sub("bp"+h, h, parent, i))
			parent = h
		}
	}
	prev := []ShortlistedHash{{StateHash: "parentStateHash1", Parent: "parentStateHash2", Weight: 1}, {StateHash: "parentStateHash2", Weight: 1}}
	g := buildGraph(validPtrs(subs), prev)
	var short []string
	for h, w := range weights(g, g.weigh(prev, consensusOf(g, "stateHash11", "stateHash21"))) {
		if w <= MaxWeight {
			short = append(short, fmt.Sprintf("%s:%d", h, w))
		}
	}
	slices.Sort(short)
	want := []string{"parentStateHash1:1", "parentStateHash2:1", "stateHash11:0", "stateHash12:1", "stateHash13:2",
		"stateHash21:0", "stateHash22:1", "stateHash23:2"}
	if !slices.Equal(short, want) {
		t.Fatalf("shortlist %v\nwant %v", short, want)
	}
}

// The original's test_filter_state_hash_single and _multi, at the fixed 5%.
func TestThreshold(t *testing.T) {
	cases := []struct {
		count, n int
		want     bool
	}{{1, 1, true}, {1, 20, true}, {1, 21, false}, {2, 21, true}, {5, 100, true}, {4, 100, false}, {0, 0, false}, {50, 1000, true}, {49, 1000, false}}
	for _, c := range cases {
		if got := Threshold(c.count, c.n); got != c.want {
			t.Errorf("Threshold(%d, %d) = %v, want %v", c.count, c.n, got, c.want)
		}
	}
	// The original's formula, evaluated in floating point, agrees for every n.
	for n := 1; n <= 20000; n++ {
		th := float64(n) * 0.05
		for _, count := range []int{n / 20, n/20 + 1} {
			if (float64(count) >= roundHalfEven(th, 2)) != Threshold(count, n) {
				t.Fatalf("n=%d count=%d: the original's threshold %v disagrees", n, count, roundHalfEven(th, 2))
			}
		}
	}
}

func roundHalfEven(x float64, places int) float64 {
	var v float64
	fmt.Sscanf(fmt.Sprintf("%.*f", places, x), "%g", &v)
	return v
}

func shortlistString(r *Result) string {
	var b strings.Builder
	for _, s := range r.Shortlist {
		fmt.Fprintf(&b, "%s<-%s:%d ", s.StateHash, s.Parent, s.Weight)
	}
	return strings.TrimSpace(b.String())
}

func pointsString(r *Result) string {
	var out []string
	for _, p := range r.Points {
		out = append(out, p.Submission.Submitter+"@"+p.StateHash)
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func TestScore(t *testing.T) {
	// many returns n submissions of hash by distinct submitters named prefix0..
	many := func(prefix, hash, parent string, n int) []Submission {
		var out []Submission
		for i := range n {
			out = append(out, sub(fmt.Sprintf("%s%02d", prefix, i), hash, parent, i))
		}
		return out
	}
	cases := []struct {
		name      string
		subs      []Submission
		prev      []ShortlistedHash
		shortlist string
		points    int
		consensus int
	}{
		{name: "empty batch", shortlist: "", points: 0},
		{name: "all invalid", subs: []Submission{
			{Submitter: "a", StateHash: ptr("h"), Verified: nil},
			{Submitter: "b", StateHash: ptr("h"), Verified: ptr(false)},
			{Submitter: "c", StateHash: ptr("h"), Verified: ptr(true), ValidationError: ptr("bad block")},
			{Submitter: "d", StateHash: nil, Verified: ptr(true)},
			{Submitter: "e", StateHash: ptr(""), Verified: ptr(true)},
		}},
		{name: "fork at exactly 5% qualifies",
			subs:      append(many("a", "main", "", 19), sub("fork", "fork", "", 0)),
			shortlist: "fork<-:0 main<-:0", points: 20, consensus: 2},
		{name: "fork below 5% does not",
			subs:      append(many("a", "main", "", 20), sub("fork", "fork", "", 0)),
			shortlist: "main<-:0", points: 20, consensus: 1},
		{name: "children of the consensus chain up to depth 2",
			subs: append(many("a", "c5", "", 40), sub("x", "c6", "c5", 1), sub("y", "c7", "c6", 2), sub("z", "c8", "c7", 3)),
			// 43 submitters: 3 needed; c6..c8 have one each.
			shortlist: "c5<-:0 c6<-c5:1 c7<-c6:2", points: 42, consensus: 1},
		{name: "unknown parent",
			subs:      append(many("a", "main", "gone", 40), sub("x", "orphan", "neverSeen", 1)),
			shortlist: "main<-gone:0", points: 40, consensus: 1},
		{name: "cycle",
			subs:      append(many("a", "A", "B", 40), sub("x", "B", "A", 1), sub("y", "C", "B", 2)),
			shortlist: "A<-B:0 B<-A:1 C<-B:2", points: 42, consensus: 1},
		{name: "self parent",
			subs:      append(many("a", "A", "A", 40), sub("x", "B", "B", 1)),
			shortlist: "A<-A:0", points: 40, consensus: 1},
		{name: "weights carried from the previous batch",
			subs: append(many("a", "main", "", 60), sub("x", "y", "p", 1), sub("x2", "z", "y", 2), sub("x3", "q", "p9", 3)),
			prev: []ShortlistedHash{{StateHash: "p", Parent: "p9", Weight: 1}, {StateHash: "p9", Weight: 0}},
			// p9 -> p (edge among prev; p keeps min(1, 0+1) = 1), p -> y (2), y -> z (3: out); q's parent p9 weighs 0 -> q 1.
			shortlist: "main<-:0 q<-p9:1 y<-p:2", points: 62, consensus: 1},
		{name: "previous hash resubmitted keeps its weight",
			subs:      append(many("a", "main", "", 60), sub("x", "p", "", 1)),
			prev:      []ShortlistedHash{{StateHash: "p", Weight: 2}},
			shortlist: "main<-:0 p<-:2", points: 61, consensus: 1},
		{name: "consensus beats a previous weight",
			subs:      many("a", "p", "", 3),
			prev:      []ShortlistedHash{{StateHash: "p", Weight: 2}},
			shortlist: "p<-:0", points: 3, consensus: 1},
		{name: "no hash reaches the threshold and no previous batch",
			subs: append(many("a", "", "", 0), func() []Submission {
				var s []Submission
				for i := range 21 {
					s = append(s, sub(fmt.Sprint("p", i), "h"+base58[i:i+1], "", i))
				}
				return s
			}()...),
			shortlist: "", points: 0, consensus: 0},
		{name: "parent taken from the hash's latest submission",
			subs:      []Submission{sub("a", "h", "past", 1), sub("b", "h", "new", 5), sub("c", "h", "first", 0)},
			shortlist: "h<-new:0", points: 3, consensus: 1},
		{name: "true minimum, not visit order",
			// d is reached at 2 through the long way first in BFS order, but 1 through p.
			subs:      append(many("a", "m", "", 60), sub("x", "k", "m", 1), sub("y", "d", "k", 2), sub("z", "d", "p", 3)),
			prev:      []ShortlistedHash{{StateHash: "p", Weight: 0}},
			shortlist: "d<-p:1 k<-m:1 m<-:0", points: 63, consensus: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := Score(tc.subs, tc.prev)
			if got := shortlistString(r); got != tc.shortlist {
				t.Errorf("shortlist %q, want %q", got, tc.shortlist)
			}
			if len(r.Points) != tc.points {
				t.Errorf("%d points, want %d (%s)", len(r.Points), tc.points, pointsString(r))
			}
			if r.Consensus != tc.consensus {
				t.Errorf("%d consensus hashes, want %d", r.Consensus, tc.consensus)
			}
			if r.OffChain() != len(r.Valid)-tc.points {
				t.Errorf("off-chain %d", r.OffChain())
			}
		})
	}
}

func TestClassifyReasons(t *testing.T) {
	subs := []Submission{
		{Submitter: "a", StateHash: ptr("h")},
		{Submitter: "b", StateHash: ptr("h"), Verified: ptr(false)},
		{Submitter: "c", StateHash: ptr("h"), Verified: ptr(true), ValidationError: ptr("x")},
		{Submitter: "d", Verified: ptr(true)},
		{Submitter: "e", StateHash: ptr("h"), Verified: ptr(true), ValidationError: ptr("")},
	}
	valid, invalid := Classify(subs)
	if len(valid) != 1 || valid[0].Submitter != "e" {
		t.Fatalf("valid %v", valid)
	}
	want := map[string]int{ReasonUnverified: 1, ReasonRejected: 1, ReasonValidationError: 1, ReasonNoStateHash: 1}
	if fmt.Sprint(invalid) != fmt.Sprint(want) {
		t.Fatalf("invalid %v, want %v", invalid, want)
	}
}

// hn is the i-th hash name of a random batch: "h" and i in base58.
func hn(i int) string { return fmt.Sprintf("h%c%c", base58[i/58%58], base58[i%58]) }

// malformedKinds break one column of a valid submission each.
var malformedKinds = []func(s *Submission){
	func(s *Submission) { s.StateHash = ptr(strings.Repeat("3NL", 2000)) }, // 6,000 characters
	func(s *Submission) { s.StateHash = ptr("   ") },                       // blank
	func(s *Submission) { s.StateHash = ptr("h_" + *s.StateHash) },         // not base58
	func(s *Submission) { s.StateHash = ptr("3NO" + (*s.StateHash)[1:]) },  // O is not base58
	func(s *Submission) { s.Parent = ptr(strings.Repeat("p", MaxHashLength+1)) },
	func(s *Submission) { s.Parent = ptr("\t") },
	func(s *Submission) { s.Height = ptr(int64(-1)) },
	func(s *Submission) { s.Slot = ptr(int64(MaxHeight) + 1) },
}

// randomBatch builds a messy batch: a chain with forks, duplicates, unknown
// parents, cycles, invalid submissions and malformed rows (submitted by
// "bad..." producers, and only by them).
func randomBatch(rng *rand.Rand) ([]Submission, []ShortlistedHash) {
	hashes := rng.IntN(30) + 1
	var subs []Submission
	for i := range rng.IntN(200) {
		h := hn(rng.IntN(hashes))
		parent := hn(rng.IntN(hashes + 10))
		if rng.IntN(10) == 0 {
			parent = ""
		}
		s := sub(fmt.Sprint("bp", rng.IntN(80)), h, parent, i)
		s.Height, s.Slot = ptr(int64(rng.IntN(1000))), ptr(int64(rng.IntN(1000)))
		if rng.IntN(12) == 0 {
			s.Submitter = fmt.Sprint("bad", rng.IntN(80))
			malformedKinds[rng.IntN(len(malformedKinds))](&s)
		}
		if rng.IntN(8) == 0 {
			s.Verified = ptr(false)
		}
		subs = append(subs, s)
	}
	var prev []ShortlistedHash
	for range rng.IntN(10) {
		prev = append(prev, ShortlistedHash{StateHash: hn(rng.IntN(hashes + 10)), Parent: hn(rng.IntN(hashes + 10)), Weight: rng.IntN(3)})
	}
	return subs, prev
}

// TestMalformedRowsNeverScored: every malformed row, and only those, is
// counted and reported with a reason; none of their hashes enters the graph,
// the shortlist or the state hashes a batch writes; nobody gains or loses a
// point because of them.
func TestMalformedRowsNeverScored(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	total := 0
	for range 300 {
		subs, prev := randomBatch(rng)
		var bad, good []Submission
		for _, s := range subs {
			if strings.HasPrefix(s.Submitter, "bad") {
				if *s.Verified {
					bad = append(bad, s)
				}
				continue
			}
			good = append(good, s)
		}
		r := Score(slices.Clone(subs), prev)
		if len(r.Malformed) != len(bad) || r.Invalid[ReasonMalformed] != len(bad) {
			t.Fatalf("%d malformed reported (%d counted), want %d", len(r.Malformed), r.Invalid[ReasonMalformed], len(bad))
		}
		total += len(bad)
		for _, m := range r.Malformed {
			if !strings.HasPrefix(m.Submission.Submitter, "bad") || m.Reason == "" {
				t.Fatalf("malformed %+v", m)
			}
		}
		rec := &Record{Result: r}
		for _, h := range rec.StateHashes() {
			if CheckShape(&Submission{StateHash: &h}) != "" {
				t.Fatalf("malformed hash %.40q among the state hashes to write", h)
			}
		}
		// The same batch without the malformed rows scores the same.
		want := Score(good, prev)
		if shortlistString(r) != shortlistString(want) || pointsString(r) != pointsString(want) {
			t.Fatalf("malformed rows changed the result:\n%s\n%s", shortlistString(r), shortlistString(want))
		}
	}
	if total < 100 {
		t.Fatalf("only %d malformed rows generated: the test proves less than it should", total)
	}
}

func TestCheckShape(t *testing.T) {
	real := "3NKeMoncuHab5ScarV5ViyF16cJPT4taWNSaTLS64Dp67wuXigPZ"
	cases := []struct {
		s    Submission
		want string
	}{
		{Submission{StateHash: &real, Parent: &real, Height: ptr(int64(0)), Slot: ptr(int64(MaxHeight))}, ""},
		{Submission{StateHash: &real}, ""},
		{Submission{StateHash: &real, Parent: ptr("")}, ""},
		{Submission{}, "state_hash is missing"},
		{Submission{StateHash: ptr(" \t")}, "state_hash is blank"},
		{Submission{StateHash: ptr(strings.Repeat("3", 6000))}, `state_hash is 6000 characters long, more than 128 ("3333333333333333"…)`},
		{Submission{StateHash: ptr(strings.Repeat("3", 128))}, ""},
		{Submission{StateHash: ptr("3NK 1")}, `state_hash "3NK 1" is not base58 (character 4)`},
		{Submission{StateHash: ptr("3Nl")}, `state_hash "3Nl" is not base58 (character 3)`},
		{Submission{StateHash: &real, Parent: ptr("0")}, `parent "0" is not base58 (character 1)`},
		{Submission{StateHash: &real, Parent: ptr(" ")}, "parent is blank"},
		{Submission{StateHash: &real, Height: ptr(int64(-5))}, "height -5 is negative"},
		{Submission{StateHash: &real, Slot: ptr(int64(1) << 31)}, "slot 2147483648 is out of range (at most 2147483647)"},
	}
	for _, c := range cases {
		if got := CheckShape(&c.s); got != c.want {
			t.Errorf("CheckShape = %q, want %q", got, c.want)
		}
	}
}

func TestScoreOrderIndependent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		subs, prev := randomBatch(rng)
		want := Score(slices.Clone(subs), prev)
		for range 5 {
			s2, p2 := slices.Clone(subs), slices.Clone(prev)
			rng.Shuffle(len(s2), func(i, j int) { s2[i], s2[j] = s2[j], s2[i] })
			rng.Shuffle(len(p2), func(i, j int) { p2[i], p2[j] = p2[j], p2[i] })
			got := Score(s2, p2)
			if shortlistString(got) != shortlistString(want) || pointsString(got) != pointsString(want) || !got.EarliestValid.Equal(want.EarliestValid) {
				t.Fatalf("shuffled input changed the result:\n%s\n%s", shortlistString(got), shortlistString(want))
			}
		}
	}
}

// TestWeighIsExactMinimum compares the linear-time weights with a brute-force
// fixed point of w(v) = min(w0(v), min over parents u of w(u)+1).
func TestWeighIsExactMinimum(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 500 {
		subs, prev := randomBatch(rng)
		valid, _ := Classify(subs)
		g := buildGraph(valid, prev)
		cons := g.consensus()
		got := g.weigh(prev, cons)

		w := make([]int, len(g.names))
		for i := range w {
			w[i] = Unreached
		}
		for _, p := range prev {
			w[g.index[p.StateHash]] = min(w[g.index[p.StateHash]], p.Weight)
		}
		for i, c := range cons {
			if c {
				w[i] = 0
			}
		}
		for changed := true; changed; {
			changed = false
			for u, kids := range g.children {
				for _, v := range kids {
					if w[u] != Unreached && w[u]+1 < w[v] {
						w[v], changed = w[u]+1, true
					}
				}
			}
		}
		for i := range w {
			if w[i] > MaxWeight {
				w[i] = Unreached
			}
			if w[i] != got[i] {
				t.Fatalf("node %s: weigh %d, brute force %d", g.names[i], got[i], w[i])
			}
		}
	}
}

// TestFileNames: the original converts the batch's whole submitted_at
// column to text with pandas, so every file_name of a batch has the precision
// the finest submission of its frame (verified, no validation error) needs.
// Expected values are those pandas 2.1 gives (Series.astype(str) of the
// column), written out.
func TestFileNames(t *testing.T) {
	at := func(day, h, m, s, ns int) time.Time { return time.Date(2024, 6, day, h, m, s, ns, time.UTC) }
	type row struct {
		submitter string
		at        time.Time
		verified  bool
		valErr    string
		noHash    bool
	}
	for _, tc := range []struct {
		name string
		rows []row
		want []string // file names of the points, in submitter order
	}{
		{"postgres microseconds", []row{
			{submitter: "A", at: at(5, 10, 0, 38, 433000000), verified: true},
			{submitter: "B", at: at(5, 10, 5, 0, 123000), verified: true},
		}, []string{"2024-06-05 10:00:38.433000-A", "2024-06-05 10:05:00.000123-B"}},
		{"cassandra milliseconds", []row{
			{submitter: "A", at: at(5, 10, 0, 38, 433000000), verified: true},
			{submitter: "B", at: at(5, 10, 5, 0, 0), verified: true},
		}, []string{"2024-06-05 10:00:38.433-A", "2024-06-05 10:05:00.000-B"}},
		{"mixed milliseconds, microseconds and whole seconds", []row{
			{submitter: "A", at: at(5, 10, 0, 38, 433000000), verified: true},
			{submitter: "B", at: at(5, 10, 1, 2, 500250000), verified: true},
			{submitter: "C", at: at(5, 10, 2, 0, 0), verified: true},
		}, []string{"2024-06-05 10:00:38.433000-A", "2024-06-05 10:01:02.500250-B", "2024-06-05 10:02:00.000000-C"}},
		{"whole seconds", []row{
			{submitter: "A", at: at(5, 10, 0, 38, 0), verified: true},
			{submitter: "B", at: at(5, 10, 5, 0, 0), verified: true},
		}, []string{"2024-06-05 10:00:38-A", "2024-06-05 10:05:00-B"}},
		{"only the frame counts", []row{
			{submitter: "A", at: at(5, 10, 0, 38, 0), verified: true},
			{submitter: "B", at: at(5, 10, 5, 0, 0), verified: true},
			{submitter: "C", at: at(5, 10, 6, 0, 123456000), verified: true, valErr: "bad snark"}, // not in the frame
			{submitter: "D", at: at(5, 10, 7, 0, 654321000), verified: false},                     // not in the frame
			{submitter: "E", at: at(5, 10, 8, 0, 250000000), verified: true, noHash: true},        // in the frame, no point
		}, []string{"2024-06-05 10:00:38.000-A", "2024-06-05 10:05:00.000-B"}},
		{"midnights only: dates", []row{
			{submitter: "A", at: at(5, 0, 0, 0, 0), verified: true},
			{submitter: "B", at: at(6, 0, 0, 0, 0), verified: true},
		}, []string{"2024-06-05-A", "2024-06-06-B"}},
		{"one time of day among midnights", []row{
			{submitter: "A", at: at(5, 0, 0, 0, 0), verified: true},
			{submitter: "B", at: at(5, 0, 0, 1, 0), verified: true},
		}, []string{"2024-06-05 00:00:00-A", "2024-06-05 00:00:01-B"}},
	} {
		var subs []Submission
		for _, r := range tc.rows {
			s := Submission{Submitter: r.submitter, SubmittedAt: r.at, Verified: ptr(r.verified), StateHash: ptr("H")}
			if r.valErr != "" {
				s.ValidationError = ptr(r.valErr)
			}
			if r.noHash {
				s.StateHash = nil
			}
			subs = append(subs, s)
		}
		var got []string
		for _, p := range Score(subs, nil).Points {
			got = append(got, p.FileName)
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: file names\n%q\nwant\n%q", tc.name, got, tc.want)
		}
	}
}

func TestBlockchainEpoch(t *testing.T) {
	s := &Submission{Submitter: "B62q", SubmittedAt: time.Date(2024, 6, 5, 1, 2, 3, 0, time.UTC)}
	if BlockchainEpoch(s) != nil {
		t.Error("no created_at must give a NULL epoch")
	}
	s.CreatedAt = ptr(time.Date(2021, 12, 21, 10, 15, 30, 0, time.UTC)) // the original's test_blockchain_epoch
	if got := *BlockchainEpoch(s); got != 1640081730000 {
		t.Errorf("BlockchainEpoch = %d, want 1640081730000", got)
	}
}

func TestWindowSplit(t *testing.T) {
	w := Window{Start: t0, End: t0.Add(20 * time.Minute)}
	parts := w.Split(3)
	if len(parts) != 3 || !parts[0].Start.Equal(w.Start) || !parts[2].End.Equal(w.End) {
		t.Fatalf("parts %v", parts)
	}
	for i := 1; i < len(parts); i++ {
		if !parts[i].Start.Equal(parts[i-1].End) {
			t.Fatalf("gap between parts %d and %d", i-1, i)
		}
	}
}
