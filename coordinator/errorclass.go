package coordinator

import (
	"regexp"
	"unicode/utf8"
)

// Verifier error classes: a small, stable taxonomy of why a submission
// failed verification. The class names are a contract (database rows,
// metrics labels, alert rules, JSON): add classes, never rename one.
const (
	ClassSnarkInvalid      = "snark_invalid"       // the SNARK work proof does not verify
	ClassSokDigestMismatch = "sok_digest_mismatch" // the SNARK's sok digest does not match the submitter/fee
	ClassBlockMissing      = "block_missing"       // the block the submission names cannot be found
	ClassBlockMalformed    = "block_malformed"     // the block is unreadable, malformed or not the one named
	ClassSignatureInvalid  = "signature_invalid"   // the submission's signature or key is not valid
	ClassTimeout           = "timeout"             // the verifier timed out on it
	ClassNoStateHash       = "no_state_hash"       // marked verified but without a state hash
	ClassMalformed         = "malformed"           // marked verified, but its columns are not a block's (CheckShape)
	ClassOther             = "other"               // anything else, and failures without a text
)

// ErrorClass is one row of the pattern table: the first row whose pattern
// matches a validation_error gives its class.
type ErrorClass struct {
	Class   string
	Pattern *regexp.Regexp
}

// ErrorClasses is THE table of verifier error patterns, tried in order. To
// recognise a new verifier message, add a row (a more specific pattern goes
// before a more general one) and a line to TestClassifyError. Classes are
// computed when a batch is written and stored with the raw text, so rows
// written before a change keep the class they were given.
var ErrorClasses = []ErrorClass{
	{ClassTimeout, regexp.MustCompile(`(?i)\btime[ds]?[ _-]?out\b|deadline exceeded`)},
	{ClassSokDigestMismatch, regexp.MustCompile(`(?i)sok[ _-]?digest|sok[ _-]?message`)},
	{ClassSnarkInvalid, regexp.MustCompile(`(?i)snark|proof|verification key|\bkimchi\b|pickles`)},
	{ClassSignatureInvalid, regexp.MustCompile(`(?i)signature|public[ _-]?key|submitter key`)},
	{ClassBlockMissing, regexp.MustCompile(`(?i)block[^:]*\b(not found|missing|does not exist)|no such (file|key)|nosuchkey|\b404\b`)},
	{ClassBlockMalformed, regexp.MustCompile(`(?i)block|json|parse|decod|deserial|malformed|unreadable`)},
}

// ClassNames lists every class in a fixed order (metrics pre-create their
// series from it; reports order classes by it).
var ClassNames = []string{ClassSnarkInvalid, ClassSokDigestMismatch, ClassBlockMissing, ClassBlockMalformed,
	ClassSignatureInvalid, ClassTimeout, ClassNoStateHash, ClassMalformed, ClassOther}

// ClassifyError returns the class of a verifier's validation_error text.
// An empty text is ClassOther.
func ClassifyError(text string) string {
	if text == "" {
		return ClassOther
	}
	for _, c := range ErrorClasses {
		if c.Pattern.MatchString(text) {
			return c.Class
		}
	}
	return ClassOther
}

// MaxErrorText bounds the raw validation_error text kept as an example.
const MaxErrorText = 300

// truncateText cuts s to at most n bytes on a rune boundary.
func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
