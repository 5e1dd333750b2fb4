package verifier

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Reasons a submission is rejected: the first part of its validation_error.
const (
	ReasonBadSubmitter    = "malformed submitter public key"
	ReasonBadBlockHash    = "malformed block hash"
	ReasonBlockNotFound   = "block not found"
	ReasonBlockUnreadable = "block unreadable"
	ReasonMalformedBlock  = "malformed block"
	ReasonHashMismatch    = "block hash mismatch"
	ReasonBlockTooLarge   = "block too large"
)

// DefaultMaxBlockBytes is the default cap of a block file's size
// (BLOCK_FILE_MAX_BYTES).
const DefaultMaxBlockBytes = 8 << 20

// Rejection is why a submission is invalid. Its Error is the submission's
// validation_error: the reason, then the detail when there is one.
type Rejection struct {
	Reason string // one of the Reason constants
	Detail string
}

func (r *Rejection) Error() string {
	if r.Detail == "" {
		return r.Reason
	}
	return r.Reason + ": " + r.Detail
}

func reject(reason, format string, args ...any) *Rejection {
	return &Rejection{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// base58 is the Bitcoin base58 alphabet Mina uses for keys and hashes.
const base58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

func isBase58(s string) bool {
	for _, c := range []byte(s) {
		if strings.IndexByte(base58, c) < 0 {
			return false
		}
	}
	return true
}

// Shapes of Mina's base58check strings.
const (
	publicKeyLen    = 55
	publicKeyPrefix = "B62q"
	stateHashLen    = 52
	stateHashPrefix = "3N"
)

// CheckPublicKey checks that key has the shape of a Mina public key: 55
// base58 characters starting with B62q. It does not check the checksum nor
// that the key is a curve point. The error is a *Rejection.
func CheckPublicKey(key string) error {
	if d := shapeProblem(key, publicKeyPrefix, publicKeyLen); d != "" {
		return &Rejection{Reason: ReasonBadSubmitter, Detail: d}
	}
	return nil
}

// CheckStateHash checks that h has the shape of a Mina state hash: 52
// base58 characters starting with 3N. The error is a *Rejection.
func CheckStateHash(h string) error {
	if d := shapeProblem(h, stateHashPrefix, stateHashLen); d != "" {
		return &Rejection{Reason: ReasonBadBlockHash, Detail: d}
	}
	return nil
}

// shapeProblem says what is wrong with the shape of s ("" when nothing).
func shapeProblem(s, prefix string, length int) string {
	switch {
	case s == "":
		return "empty"
	case len(s) != length:
		return fmt.Sprintf("%d characters, want %d", len(s), length)
	case !strings.HasPrefix(s, prefix):
		return "does not start with " + prefix
	case !isBase58(s):
		return "not base58"
	}
	return ""
}

// Block is what the verifier takes from a precomputed block.
type Block struct {
	// StateHash is the hash the file declares (state_hash, optional): ""
	// when it declares none.
	StateHash string
	Parent    string // protocol_state.previous_state_hash
	Height    int64  // protocol_state.body.consensus_state.blockchain_length
	Slot      int64  // protocol_state.body.consensus_state.global_slot_since_genesis
}

// number is a JSON integer written either as a number or, as Mina writes
// its integers, as a string of digits.
type number struct {
	set bool
	v   int64
}

func (n *number) UnmarshalJSON(b []byte) error {
	s := string(bytes.TrimSpace(b))
	if s == "null" {
		return nil
	}
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("%s is not a whole number", b)
	}
	n.set, n.v = true, v
	return nil
}

type protocolState struct {
	PreviousStateHash *string `json:"previous_state_hash"`
	Body              *struct {
		ConsensusState *struct {
			BlockchainLength       number `json:"blockchain_length"`
			GlobalSlotSinceGenesis number `json:"global_slot_since_genesis"`
		} `json:"consensus_state"`
	} `json:"body"`
}

type blockFields struct {
	StateHash     *string        `json:"state_hash"`
	ProtocolState *protocolState `json:"protocol_state"`
}

// blockJSON is a precomputed block: the fields at the top, or, in the
// versioned form, under "data".
type blockJSON struct {
	blockFields
	Data *blockFields `json:"data"`
}

// ParseBlock reads the verifier's fields from a Mina precomputed block in
// JSON, either bare or versioned ({"version": n, "data": {...}}). Integers
// may be JSON numbers or strings of digits. The error is a *Rejection.
func ParseBlock(data []byte) (*Block, error) {
	var raw blockJSON
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, reject(ReasonMalformedBlock, "invalid JSON: %v", err)
	}
	f := raw.blockFields
	if f.ProtocolState == nil && raw.Data != nil {
		f.ProtocolState = raw.Data.ProtocolState
		if f.StateHash == nil {
			f.StateHash = raw.Data.StateHash
		}
	}
	ps := f.ProtocolState
	switch {
	case ps == nil:
		return nil, &Rejection{Reason: ReasonMalformedBlock, Detail: "no protocol_state"}
	case ps.PreviousStateHash == nil:
		return nil, &Rejection{Reason: ReasonMalformedBlock, Detail: "no protocol_state.previous_state_hash"}
	case ps.Body == nil || ps.Body.ConsensusState == nil:
		return nil, &Rejection{Reason: ReasonMalformedBlock, Detail: "no protocol_state.body.consensus_state"}
	}
	cs := ps.Body.ConsensusState
	b := &Block{Parent: *ps.PreviousStateHash, Height: cs.BlockchainLength.v, Slot: cs.GlobalSlotSinceGenesis.v}
	if f.StateHash != nil {
		b.StateHash = *f.StateHash
	}
	if d := shapeProblem(b.Parent, stateHashPrefix, stateHashLen); d != "" {
		return nil, reject(ReasonMalformedBlock, "previous_state_hash %q: %s", b.Parent, d)
	}
	for _, n := range []struct {
		name string
		v    number
	}{{"blockchain_length", cs.BlockchainLength}, {"global_slot_since_genesis", cs.GlobalSlotSinceGenesis}} {
		if !n.v.set {
			return nil, reject(ReasonMalformedBlock, "no consensus_state.%s", n.name)
		}
		// The submissions table keeps them as INTEGER.
		if n.v.v < 0 || n.v.v > math.MaxInt32 {
			return nil, reject(ReasonMalformedBlock, "consensus_state.%s %d out of range", n.name, n.v.v)
		}
	}
	return b, nil
}

// ReadBlock reads the precomputed block <hash>.json in dir and checks that
// it is the block hash names. A file larger than maxBytes (0: the default)
// is not read. The error is a *Rejection.
func ReadBlock(dir, hash string, maxBytes int64) (*Block, error) {
	if err := CheckStateHash(hash); err != nil {
		return nil, err
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBlockBytes
	}
	data, err := readCapped(filepath.Join(dir, hash+".json"), maxBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &Rejection{Reason: ReasonBlockNotFound}
	}
	var tooLarge *tooLargeError
	if errors.As(err, &tooLarge) {
		return nil, reject(ReasonBlockTooLarge, "%s, more than the limit of %d bytes (BLOCK_FILE_MAX_BYTES)", tooLarge.size, maxBytes)
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path says nothing the block hash does not
		}
		return nil, reject(ReasonBlockUnreadable, "%v", err)
	}
	b, err := ParseBlock(data)
	if err != nil {
		return nil, err
	}
	if b.StateHash != "" && b.StateHash != hash {
		return nil, reject(ReasonHashMismatch, "the file declares state_hash %s", b.StateHash)
	}
	b.StateHash = hash
	return b, nil
}

type tooLargeError struct{ size string }

func (e *tooLargeError) Error() string { return "file too large: " + e.size }

// readCapped reads the file at path unless it holds more than max bytes:
// the size is checked before reading, and the read stops after max+1 bytes
// in case the file grows meanwhile.
func readCapped(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > max {
		return nil, &tooLargeError{size: fmt.Sprintf("%d bytes", st.Size())}
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, &tooLargeError{size: fmt.Sprintf("over %d bytes", max)}
	}
	return data, nil
}
