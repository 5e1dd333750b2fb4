package coordinator

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

func TestClassifyError(t *testing.T) {
	for text, want := range map[string]string{
		"":                                             ClassOther,
		"snark verification failed":                    ClassSnarkInvalid,
		"Invalid SNARK work":                           ClassSnarkInvalid,
		"proof does not verify":                        ClassSnarkInvalid,
		"snark work: sok digest mismatch":              ClassSokDigestMismatch,
		"Sok_digest mismatch for prover":               ClassSokDigestMismatch,
		"block not found":                              ClassBlockMissing,
		"block 3NKabc missing from bucket":             ClassBlockMissing,
		"NoSuchKey: The specified key does not exist.": ClassBlockMissing,
		"block hash mismatch: the file declares state_hash 3N": ClassBlockMalformed,
		"malformed block: no protocol_state":                   ClassBlockMalformed,
		"block unreadable: permission denied":                  ClassBlockMalformed,
		"malformed block hash: none":                           ClassBlockMalformed,
		"failed to parse JSON":                                 ClassBlockMalformed,
		"invalid signature":                                    ClassSignatureInvalid,
		"malformed submitter public key: bad checksum":         ClassSignatureInvalid,
		"verifier timed out after 300s":                        ClassTimeout,
		"context deadline exceeded":                            ClassTimeout,
		"Timeout":                                              ClassTimeout,
		"something unheard of":                                 ClassOther,
	} {
		if got := ClassifyError(text); got != want {
			t.Errorf("ClassifyError(%q) = %q, want %q", text, got, want)
		}
	}
}

func TestClassNamesCoverTable(t *testing.T) {
	names := map[string]bool{}
	for _, n := range ClassNames {
		names[n] = true
	}
	for _, c := range ErrorClasses {
		if !names[c.Class] {
			t.Errorf("class %q of the pattern table is missing from ClassNames", c.Class)
		}
	}
	if len(names) != 9 {
		t.Errorf("%d classes, want 9", len(names))
	}
}

// A malformed row (see CheckShape) is not valid for Classify, so evidence
// gives it the malformed class, with the shape problem as its example.
func TestEvidenceMalformedRow(t *testing.T) {
	s := Submission{Submitter: "a", SubmittedAt: t0, Verified: ptr(true), StateHash: ptr("3N_bad")}
	if valid, _ := Classify([]Submission{s}); len(valid) != 0 {
		t.Fatal("Classify takes the malformed row as valid")
	}
	b := Evidence([]Submission{s}, Score([]Submission{s}, nil))
	want := `[{Class:malformed Submissions:1 Producers:1 Example:state_hash "3N_bad" is not base58 (character 3)}]`
	if got := fmt.Sprintf("%+v", b.Classes); got != want {
		t.Fatalf("classes %s, want %s", got, want)
	}
	if b.Producers[0].Outcome != OutcomeInvalid {
		t.Fatalf("outcome %s, want invalid", b.Producers[0].Outcome)
	}
}

func failed(submitter string, sec int, text string) Submission {
	s := Submission{Submitter: submitter, SubmittedAt: t0.Add(timeSec(sec)), Verified: ptr(false)}
	if text != "" {
		s.ValidationError = ptr(text)
	}
	return s
}

func unverified(submitter string, sec int) Submission {
	return Submission{Submitter: submitter, SubmittedAt: t0.Add(timeSec(sec))}
}

func timeSec(sec int) time.Duration { return time.Duration(sec) * time.Second }

// A batch where every stored outcome occurs. 20 producers pa..pt and m name
// "tip" (the consensus hash); f alone names fork1 and fork2 (1 of 22
// submitters is under 5%, and there is no previous shortlist), so it is off
// chain.
func TestEvidence(t *testing.T) {
	var subs []Submission
	for i := range 20 {
		subs = append(subs, sub("p"+string(rune('a'+i)), "tip", "", i))
	}
	subs = append(subs,
		sub("f", "fork1", "", 100), sub("f", "fork2", "", 101), sub("f", "fork1", "", 102),
		failed("i", 110, "snark verification failed"), failed("i", 111, "snark work: sok digest mismatch"),
		failed("i", 112, "snark verification failed (again)"),
		unverified("u", 120), failed("u", 121, "block not found"),
		// m: one valid on-chain submission and one failed: a point.
		sub("m", "tip", "", 130), failed("m", 131, ""),
		// o: verified, no state hash, and one unverified: unverified.
		Submission{Submitter: "o", SubmittedAt: t0.Add(timeSec(140)), Verified: ptr(true)}, unverified("o", 141),
	)
	r := Score(subs, nil)
	ev := Evidence(subs, r)

	byKey := map[string]ProducerEvidence{}
	for _, p := range ev.Producers {
		byKey[p.Producer] = p
	}
	if len(ev.Producers) != 25 {
		t.Fatalf("%d producers, want 25", len(ev.Producers))
	}
	want := map[string]ProducerEvidence{
		"pa": {Producer: "pa", Outcome: OutcomePoint, Submissions: 1, Valid: 1},
		"f":  {Producer: "f", Outcome: OutcomeOffChain, Submissions: 3, Valid: 3, StateHashes: []string{"fork1", "fork2"}},
		"i": {Producer: "i", Outcome: OutcomeInvalid, Submissions: 3,
			InvalidByClass: map[string]int{"snark_invalid": 2, "sok_digest_mismatch": 1},
			Examples:       map[string]string{"snark_invalid": "snark verification failed (again)", "sok_digest_mismatch": "snark work: sok digest mismatch"}},
		"u": {Producer: "u", Outcome: OutcomeUnverified, Submissions: 2, Unverified: 1,
			InvalidByClass: map[string]int{"block_missing": 1}, Examples: map[string]string{"block_missing": "block not found"}},
		"m": {Producer: "m", Outcome: OutcomePoint, Submissions: 2, Valid: 1,
			InvalidByClass: map[string]int{"other": 1}, Examples: map[string]string{"other": ""}},
		"o": {Producer: "o", Outcome: OutcomeUnverified, Submissions: 2, Unverified: 1,
			InvalidByClass: map[string]int{"no_state_hash": 1}, Examples: map[string]string{"no_state_hash": ""}},
	}
	for k, w := range want {
		if got := byKey[k]; !reflect.DeepEqual(got, w) {
			t.Errorf("producer %s:\n got %+v\nwant %+v", k, got, w)
		}
	}
	if got := byKey["i"].Invalid(); got != 3 {
		t.Errorf("i: Invalid() = %d, want 3", got)
	}
	if ev.Submissions != 32 || ev.Valid != 24 || ev.Unverified != 2 || ev.Invalid() != 6 {
		t.Errorf("batch counts %d/%d/%d/%d, want 32 submissions, 24 valid, 2 unverified, 6 invalid",
			ev.Submissions, ev.Valid, ev.Unverified, ev.Invalid())
	}
	wantOutcomes := map[string]int{"point": 21, "off_chain": 1, "invalid": 1, "unverified": 2}
	if !reflect.DeepEqual(ev.ByOutcome, wantOutcomes) {
		t.Errorf("by outcome %v, want %v", ev.ByOutcome, wantOutcomes)
	}
	wantClasses := []ClassCount{
		{Class: "snark_invalid", Submissions: 2, Producers: 1, Example: "snark verification failed (again)"},
		{Class: "sok_digest_mismatch", Submissions: 1, Producers: 1, Example: "snark work: sok digest mismatch"},
		{Class: "block_missing", Submissions: 1, Producers: 1, Example: "block not found"},
		{Class: "no_state_hash", Submissions: 1, Producers: 1},
		{Class: "other", Submissions: 1, Producers: 1},
	}
	if !reflect.DeepEqual(ev.Classes, wantClasses) {
		t.Errorf("classes\n got %+v\nwant %+v", ev.Classes, wantClasses)
	}
	// The same outcome whatever the order of the submissions.
	rev := make([]Submission, len(subs))
	for i := range subs {
		rev[len(subs)-1-i] = subs[i]
	}
	if got := Evidence(rev, Score(rev, nil)); !reflect.DeepEqual(got, ev) {
		t.Errorf("evidence depends on the order of the submissions")
	}
}

func TestExampleTextCut(t *testing.T) {
	long := ""
	for range 100 {
		long += "héllo"
	}
	subs := []Submission{failed("x", 0, long)}
	ev := Evidence(subs, Score(subs, nil))
	got := ev.Producers[0].Examples["other"]
	if len(got) != 300 || got[:6] != "héllo" {
		t.Errorf("example of %d bytes (%q...), want the first 300 bytes", len(got), got[:6])
	}
}

func TestClassJumps(t *testing.T) {
	shares := func(subs int, byClass map[string]int) *ClassShares {
		return &ClassShares{Submissions: subs, ByClass: byClass}
	}
	calm := shares(1000, map[string]int{"snark_invalid": 9, "block_missing": 50})
	storm := shares(1000, map[string]int{"snark_invalid": 230, "block_missing": 60})
	if got := ClassJumps(calm, storm); !reflect.DeepEqual(got, []ClassJump{{Class: "snark_invalid", Before: 0.009, After: 0.23, Failed: 230, Submissions: 1000}}) {
		t.Errorf("calm -> storm: %+v", got)
	}
	for name, c := range map[string][2]*ClassShares{
		"storm continues":     {storm, storm},
		"first batch":         {nil, storm},
		"exactly 1% before":   {shares(1000, map[string]int{"snark_invalid": 10}), storm},
		"exactly 10% after":   {calm, shares(1000, map[string]int{"snark_invalid": 100})},
		"empty previous":      {shares(0, nil), storm},
		"empty current batch": {calm, shares(0, nil)},
	} {
		if got := ClassJumps(c[0], c[1]); got != nil {
			t.Errorf("%s: %+v, want no jump", name, got)
		}
	}
}
