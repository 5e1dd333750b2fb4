package coordinator

import (
	"fmt"
	"math"
	"strings"
)

// MaxHashLength bounds the length of a state hash or parent hash. Mina's
// state hashes are 52 base58 characters; anything far longer is not a
// hash, and a few thousand characters would not even fit the statehash
// table's unique index (a B-tree entry holds at most ~2,700 bytes).
const MaxHashLength = 128

// MaxHeight is the largest height or global slot the INTEGER columns of the
// schema hold.
const MaxHeight = math.MaxInt32

// base58 is the Bitcoin base58 alphabet, the one Mina's hashes use.
const base58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

var isBase58 [256]bool

func init() {
	for i := range len(base58) {
		isBase58[base58[i]] = true
	}
}

// Malformed is a verified submission whose verification columns do not
// have the shape of a real block's: it is ignored, with its reason.
type Malformed struct {
	Submission *Submission
	Reason     string
}

// CheckShape returns why a submission's verification columns cannot be
// those of a real block, or "" when they can: the state hash (which must be
// present) and the parent (when present) must be base58 strings of 1 to
// MaxHashLength characters; the height and the slot, when present, must lie
// in [0, MaxHeight].
func CheckShape(s *Submission) string {
	if s.StateHash == nil {
		return "state_hash is missing"
	}
	if why := checkHash(*s.StateHash); why != "" {
		return "state_hash " + why
	}
	if s.Parent != nil && *s.Parent != "" {
		if why := checkHash(*s.Parent); why != "" {
			return "parent " + why
		}
	}
	if why := checkHeight(s.Height); why != "" {
		return "height " + why
	}
	if why := checkHeight(s.Slot); why != "" {
		return "slot " + why
	}
	return ""
}

func checkHash(h string) string {
	if strings.TrimSpace(h) == "" {
		return "is blank"
	}
	if len(h) > MaxHashLength {
		return fmt.Sprintf("is %d characters long, more than %d (%q…)", len(h), MaxHashLength, h[:16])
	}
	for i := range len(h) {
		if !isBase58[h[i]] {
			return fmt.Sprintf("%q is not base58 (character %d)", h, i+1)
		}
	}
	return ""
}

func checkHeight(v *int64) string {
	switch {
	case v == nil:
		return ""
	case *v < 0:
		return fmt.Sprintf("%d is negative", *v)
	case *v > MaxHeight:
		return fmt.Sprintf("%d is out of range (at most %d)", *v, MaxHeight)
	}
	return ""
}
