package verifier

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

const (
	hashA = "3NKeMoncuHab5ScarV5ViyF16cJPT4taWNSaTLS64Dp67wuXigPZ"
	hashB = "3NLx1eQyd9BSJXVWYEyFJJBuPyNGFxY1XaWLKqFVd1Z3ohhRgHmt"
	keyA  = "B62qrPN5Y5yq8kGE3FbVKbGTdTAJNdtNtB5sNVpxyRwWGcDEhpMzc7g"
)

func rejectionOf(t *testing.T, err error) *Rejection {
	t.Helper()
	var r *Rejection
	if !errors.As(err, &r) {
		t.Fatalf("error %v (%T) is not a *Rejection", err, err)
	}
	return r
}

func TestShapes(t *testing.T) {
	if err := CheckPublicKey(keyA); err != nil {
		t.Errorf("%s: %v", keyA, err)
	}
	for key, want := range map[string]string{
		"":                   "malformed submitter public key: empty",
		keyA[:54]:            "malformed submitter public key: 54 characters, want 55",
		keyA + "x":           "malformed submitter public key: 56 characters, want 55",
		"B62r" + keyA[4:]:    "malformed submitter public key: does not start with B62q",
		keyA[:54] + "0":      "malformed submitter public key: not base58",
		keyA[:54] + "l":      "malformed submitter public key: not base58",
		keyA[:53] + "\u00e9": "malformed submitter public key: not base58",
	} {
		err := CheckPublicKey(key)
		if err == nil || err.Error() != want {
			t.Errorf("CheckPublicKey(%q) = %v, want %q", key, err, want)
			continue
		}
		if r := rejectionOf(t, err); r.Reason != ReasonBadSubmitter {
			t.Errorf("reason %q", r.Reason)
		}
	}
	for _, h := range []string{hashA, hashB} {
		if err := CheckStateHash(h); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	for _, h := range []string{"", hashA[:51], "4N" + hashA[2:], hashA[:51] + "O", "../../../../etc/passwd"} {
		if err := CheckStateHash(h); err == nil || rejectionOf(t, err).Reason != ReasonBadBlockHash {
			t.Errorf("CheckStateHash(%q) = %v", h, err)
		}
	}
}

func TestParseBlock(t *testing.T) {
	for name, tc := range map[string]struct {
		json string
		want Block
	}{
		"strings, as Mina writes them": {
			`{"scheduled_time":"1717200000000","protocol_state":{"previous_state_hash":"` + hashB + `",
			"body":{"consensus_state":{"blockchain_length":"359605","epoch_count":"7","global_slot_since_genesis":"564498"}}}}`,
			Block{Parent: hashB, Height: 359605, Slot: 564498},
		},
		"numbers": {
			`{"protocol_state":{"previous_state_hash":"` + hashB + `","body":{"consensus_state":{"blockchain_length":12,"global_slot_since_genesis":30}}}}`,
			Block{Parent: hashB, Height: 12, Slot: 30},
		},
		"versioned, with a declared hash": {
			`{"version":3,"data":{"state_hash":"` + hashA + `","protocol_state":{"previous_state_hash":"` + hashB + `",
			"body":{"consensus_state":{"blockchain_length":"1","global_slot_since_genesis":2}}}}}`,
			Block{StateHash: hashA, Parent: hashB, Height: 1, Slot: 2},
		},
		"top-level declared hash": {
			`{"state_hash":"` + hashA + `","protocol_state":{"previous_state_hash":"` + hashB + `",
			"body":{"consensus_state":{"blockchain_length":"0","global_slot_since_genesis":"0"}}}}`,
			Block{StateHash: hashA, Parent: hashB},
		},
	} {
		b, err := ParseBlock([]byte(tc.json))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if *b != tc.want {
			t.Errorf("%s: %+v, want %+v", name, *b, tc.want)
		}
	}

	consensus := func(cs string) string {
		return `{"protocol_state":{"previous_state_hash":"` + hashB + `","body":{"consensus_state":` + cs + `}}}`
	}
	for name, tc := range map[string]struct{ json, want string }{
		"not JSON":           {`{"protocol_state": {`, "malformed block: invalid JSON: unexpected end of JSON input"},
		"trailing garbage":   {consensus(`{"blockchain_length":"1","global_slot_since_genesis":"2"}`) + "x", "malformed block: invalid JSON"},
		"an array":           {`[]`, "malformed block: invalid JSON"},
		"empty object":       {`{}`, "malformed block: no protocol_state"},
		"no previous hash":   {`{"protocol_state":{"body":{"consensus_state":{}}}}`, "malformed block: no protocol_state.previous_state_hash"},
		"no consensus state": {`{"protocol_state":{"previous_state_hash":"` + hashB + `","body":{}}}`, "malformed block: no protocol_state.body.consensus_state"},
		"bad previous hash": {`{"protocol_state":{"previous_state_hash":"3Nshort","body":{"consensus_state":{}}}}`,
			`malformed block: previous_state_hash "3Nshort": 7 characters, want 52`},
		"no length":       {consensus(`{"global_slot_since_genesis":"2"}`), "malformed block: no consensus_state.blockchain_length"},
		"null slot":       {consensus(`{"blockchain_length":"1","global_slot_since_genesis":null}`), "malformed block: no consensus_state.global_slot_since_genesis"},
		"fractional":      {consensus(`{"blockchain_length":1.5,"global_slot_since_genesis":"2"}`), "malformed block: invalid JSON"},
		"word":            {consensus(`{"blockchain_length":"twelve","global_slot_since_genesis":"2"}`), "malformed block: invalid JSON"},
		"negative":        {consensus(`{"blockchain_length":"-1","global_slot_since_genesis":"2"}`), "malformed block: consensus_state.blockchain_length -1 out of range"},
		"too large":       {consensus(`{"blockchain_length":"1","global_slot_since_genesis":"2147483648"}`), "malformed block: consensus_state.global_slot_since_genesis 2147483648 out of range"},
		"object for text": {consensus(`{"blockchain_length":{},"global_slot_since_genesis":"2"}`), "malformed block: invalid JSON"},
	} {
		_, err := ParseBlock([]byte(tc.json))
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if r := rejectionOf(t, err); r.Reason != ReasonMalformedBlock || len(err.Error()) < len(tc.want) || err.Error()[:len(tc.want)] != tc.want {
			t.Errorf("%s: %q, want it to start with %q", name, err, tc.want)
		}
	}
}

func TestReadBlock(t *testing.T) {
	dir := t.TempDir()
	write := func(hash, content string) {
		if err := os.WriteFile(filepath.Join(dir, hash+".json"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	body := `"protocol_state":{"previous_state_hash":"` + hashB + `","body":{"consensus_state":{"blockchain_length":"5","global_slot_since_genesis":"9"}}}`
	write(hashA, `{`+body+`}`)
	b, err := ReadBlock(dir, hashA, 0)
	if err != nil || *b != (Block{StateHash: hashA, Parent: hashB, Height: 5, Slot: 9}) {
		t.Fatalf("ReadBlock: %+v, %v", b, err)
	}
	write(hashA, `{"state_hash":"`+hashA+`",`+body+`}`)
	if _, err := ReadBlock(dir, hashA, 0); err != nil {
		t.Errorf("a file declaring its own hash: %v", err)
	}
	write(hashA, `{"state_hash":"`+hashB+`",`+body+`}`)
	if _, err := ReadBlock(dir, hashA, 0); err == nil || err.Error() != "block hash mismatch: the file declares state_hash "+hashB {
		t.Errorf("a file declaring another hash: %v", err)
	}
	if _, err := ReadBlock(dir, hashB, 0); err == nil || err.Error() != "block not found" {
		t.Errorf("a missing file: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, hashB+".json"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadBlock(dir, hashB, 0); err == nil || rejectionOf(t, err).Reason != ReasonBlockUnreadable {
		t.Errorf("an unreadable file: %v", err)
	} else if r := rejectionOf(t, err); r.Detail != "is a directory" {
		t.Errorf("unreadable detail %q, want the error without the path", r.Detail)
	}
	if _, err := ReadBlock(dir, "../"+hashA[3:], 0); err == nil || rejectionOf(t, err).Reason != ReasonBadBlockHash {
		t.Errorf("a path for a hash: %v", err)
	}
}

// Issue 10 item 12: a block file larger than the cap is rejected with a
// reason and never read (a 1.2 GB file used to be read whole: 1.3 GB RSS).
func TestReadBlockSizeCap(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, hashA+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1_200_000_000); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	f.Close()
	_, err = ReadBlock(dir, hashA, 0)
	if err == nil || err.Error() != "block too large: 1200000000 bytes, more than the limit of 8388608 bytes (BLOCK_FILE_MAX_BYTES)" {
		t.Fatalf("ReadBlock of a 1.2 GB file: %v", err)
	}
	// A smaller cap applies too; a file at the cap is read.
	body := `{"protocol_state":{"previous_state_hash":"` + hashB + `","body":{"consensus_state":{"blockchain_length":"5","global_slot_since_genesis":"9"}}}}`
	if err := os.WriteFile(filepath.Join(dir, hashA+".json"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadBlock(dir, hashA, int64(len(body))); err != nil {
		t.Fatalf("a file at the cap: %v", err)
	}
	if _, err := ReadBlock(dir, hashA, int64(len(body))-1); err == nil || rejectionOf(t, err).Reason != ReasonBlockTooLarge {
		t.Fatalf("a file one byte over the cap: %v", err)
	}
}
