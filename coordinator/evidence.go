package coordinator

import (
	"slices"
	"strings"
)

// Outcomes of a batch for a producer: exactly one per (batch, producer).
const (
	// OutcomePoint: at least one valid submission named a shortlisted hash.
	OutcomePoint = "point"
	// OutcomeOffChain: valid submissions, none naming a shortlisted hash.
	OutcomeOffChain = "off_chain"
	// OutcomeInvalid: every submission failed verification.
	OutcomeInvalid = "invalid"
	// OutcomeUnverified: no valid submission, and some the verifier never
	// marked (verified is NULL).
	OutcomeUnverified = "unverified"
	// OutcomeNoSubmission: nothing in the window. Derived when reading, never
	// stored.
	OutcomeNoSubmission = "no_submission"
	// OutcomeUnknown: a batch scored before evidence was recorded whose
	// submissions are gone, for a producer without a point: the reason cannot
	// be derived any more. Reading only.
	OutcomeUnknown = "unknown"
)

// Outcomes lists the outcomes in report order.
var Outcomes = []string{OutcomePoint, OutcomeOffChain, OutcomeInvalid, OutcomeUnverified, OutcomeNoSubmission, OutcomeUnknown}

// ProducerEvidence is the outcome of one batch for one producer that
// submitted in its window.
type ProducerEvidence struct {
	Producer    string
	Outcome     string // point, off_chain, invalid or unverified
	Submissions int    // all of the producer's submissions in the window
	Valid       int    // valid ones (see Classify)
	Unverified  int    // ones the verifier never marked
	// InvalidByClass counts the failed submissions by error class (nil when
	// none failed).
	InvalidByClass map[string]int
	// Examples holds, per class, the raw validation_error of the producer's
	// latest submission of that class, cut to MaxErrorText bytes.
	Examples map[string]string
	// StateHashes are the distinct hashes its valid submissions named,
	// sorted, for off_chain only (for a point they are in points).
	StateHashes []string
}

// Invalid is the number of the producer's submissions that failed
// verification.
func (p ProducerEvidence) Invalid() int { return p.Submissions - p.Valid - p.Unverified }

// ClassCount is a batch's failed submissions of one error class.
type ClassCount struct {
	Class       string
	Submissions int
	Producers   int
	Example     string // the raw text of the class's latest submission in the batch
}

// BatchEvidence is what a batch records about its producers.
type BatchEvidence struct {
	Producers   []ProducerEvidence // sorted by producer key
	Submissions int
	Valid       int
	Unverified  int
	Classes     []ClassCount // the classes that occurred, in ClassNames order
	ByOutcome   map[string]int
}

// Invalid is the number of the batch's submissions that failed verification.
func (b *BatchEvidence) Invalid() int { return b.Submissions - b.Valid - b.Unverified }

// SubmissionClass returns "" for a valid submission, OutcomeUnverified for
// one the verifier never marked, else the error class of a failed one. It
// agrees with Classify on what is valid.
func SubmissionClass(s *Submission) string {
	switch {
	case s.Verified == nil:
		return OutcomeUnverified
	case !*s.Verified:
		if s.ValidationError == nil {
			return ClassOther
		}
		return ClassifyError(*s.ValidationError)
	case s.ValidationError != nil && *s.ValidationError != "":
		return ClassifyError(*s.ValidationError)
	case s.StateHash == nil || *s.StateHash == "":
		return ClassNoStateHash
	case CheckShape(s) != "":
		return ClassMalformed
	}
	return ""
}

// Evidence computes the outcome of every producer that submitted in the
// batch, from the batch's submissions and its scoring result r (computed
// from the same submissions). It is pure and does not depend on the order
// of subs.
func Evidence(subs []Submission, r *Result) *BatchEvidence {
	type acc struct {
		ev     ProducerEvidence
		point  bool
		hashes []string
		latest map[string]*Submission // class -> latest failed submission
	}
	// Producers are accumulated in one slice, found by key; verifier
	// messages repeat, so each distinct text is classified once.
	byKey := make(map[string]int, len(subs)/3+1)
	accs := make([]acc, 0, len(subs)/3+1)
	textClass := map[string]string{}
	classOf := func(s *Submission) string {
		if s.ValidationError == nil || *s.ValidationError == "" || s.Verified == nil {
			return SubmissionClass(s)
		}
		text := *s.ValidationError
		c, ok := textClass[text]
		if !ok {
			c = ClassifyError(text)
			textClass[text] = c
		}
		return c
	}
	b := &BatchEvidence{ByOutcome: map[string]int{}}
	classSubs := map[string]int{}
	classProducers := map[string]map[string]struct{}{}
	classLatest := map[string]*Submission{}
	for i := range subs {
		s := &subs[i]
		k, ok := byKey[s.Submitter]
		if !ok {
			k = len(accs)
			byKey[s.Submitter] = k
			accs = append(accs, acc{ev: ProducerEvidence{Producer: s.Submitter}})
		}
		a := &accs[k]
		a.ev.Submissions++
		b.Submissions++
		switch class := classOf(s); class {
		case "":
			a.ev.Valid++
			b.Valid++
			a.hashes = append(a.hashes, *s.StateHash)
		case OutcomeUnverified:
			a.ev.Unverified++
			b.Unverified++
		default:
			if a.ev.InvalidByClass == nil {
				a.ev.InvalidByClass = map[string]int{}
				a.latest = map[string]*Submission{}
			}
			a.ev.InvalidByClass[class]++
			if l := a.latest[class]; l == nil || later(s, l) {
				a.latest[class] = s
			}
			classSubs[class]++
			if classProducers[class] == nil {
				classProducers[class] = map[string]struct{}{}
			}
			classProducers[class][s.Submitter] = struct{}{}
			if l := classLatest[class]; l == nil || later(s, l) {
				classLatest[class] = s
			}
		}
	}
	for _, p := range r.Points {
		if k, ok := byKey[p.Submission.Submitter]; ok {
			accs[k].point = true
		}
	}
	b.Producers = make([]ProducerEvidence, 0, len(accs))
	for i := range accs {
		a := &accs[i]
		ev := a.ev
		switch {
		case a.point:
			ev.Outcome = OutcomePoint
		case ev.Valid > 0:
			ev.Outcome = OutcomeOffChain
			slices.Sort(a.hashes)
			ev.StateHashes = slices.Compact(a.hashes)
		case ev.Unverified > 0:
			ev.Outcome = OutcomeUnverified
		default:
			ev.Outcome = OutcomeInvalid
		}
		if len(a.latest) > 0 {
			ev.Examples = make(map[string]string, len(a.latest))
			for class, s := range a.latest {
				ev.Examples[class] = exampleText(s)
			}
		}
		b.ByOutcome[ev.Outcome]++
		b.Producers = append(b.Producers, ev)
	}
	slices.SortFunc(b.Producers, func(x, y ProducerEvidence) int { return strings.Compare(x.Producer, y.Producer) })
	for _, class := range ClassNames {
		if n := classSubs[class]; n > 0 {
			b.Classes = append(b.Classes, ClassCount{Class: class, Submissions: n, Producers: len(classProducers[class]),
				Example: exampleText(classLatest[class])})
		}
	}
	return b
}

func exampleText(s *Submission) string {
	if s.ValidationError == nil || *s.ValidationError == "" {
		if SubmissionClass(s) == ClassMalformed {
			return truncateText(CheckShape(s), MaxErrorText)
		}
		return ""
	}
	return truncateText(*s.ValidationError, MaxErrorText)
}

// ClassShares is a batch's failed submissions per error class, with the
// batch's submission count: the input of the error-class jump alert.
type ClassShares struct {
	BotLogID    int64
	Submissions int
	ByClass     map[string]int
}

// Share returns the class's share of the batch's submissions (0 when the
// batch had none).
func (c *ClassShares) Share(class string) float64 {
	if c == nil || c.Submissions == 0 {
		return 0
	}
	return float64(c.ByClass[class]) / float64(c.Submissions)
}

// Shares returns the batch's ClassShares.
func (b *BatchEvidence) Shares(botLogID int64) *ClassShares {
	c := &ClassShares{BotLogID: botLogID, Submissions: b.Submissions, ByClass: map[string]int{}}
	for _, cc := range b.Classes {
		c.ByClass[cc.Class] = cc.Submissions
	}
	return c
}

// ClassJump is an error class whose share of submissions jumped between two
// consecutive batches.
type ClassJump struct {
	Class       string
	Before      float64 // share in the previous batch
	After       float64 // share in this batch
	Failed      int     // this batch's submissions of the class
	Submissions int     // this batch's submissions
}

// Jump thresholds: a class jumps when its share goes from below JumpFrom to
// above JumpTo between consecutive batches.
const (
	JumpFrom = 0.01
	JumpTo   = 0.10
)

// ClassJumps returns the classes whose share went from under JumpFrom in
// prev to over JumpTo in cur, in ClassNames order. With no previous batch
// (prev nil: the first batch with evidence) or an empty one on either side
// nothing jumps, so a class that stays high never fires twice.
func ClassJumps(prev, cur *ClassShares) []ClassJump {
	if prev == nil || cur == nil || prev.Submissions == 0 || cur.Submissions == 0 {
		return nil // nothing to compare: an empty batch has no shares
	}
	var out []ClassJump
	for _, class := range ClassNames {
		before, after := prev.Share(class), cur.Share(class)
		if before < JumpFrom && after > JumpTo {
			out = append(out, ClassJump{Class: class, Before: before, After: after, Failed: cur.ByClass[class], Submissions: cur.Submissions})
		}
	}
	return out
}
