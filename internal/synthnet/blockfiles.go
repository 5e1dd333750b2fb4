package synthnet

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// precomputedBlock is the part of a Mina precomputed block the verifier
// reads, plus the scheduled time, with integers as Mina writes them: JSON
// strings. It is written here apart from the verifier's parser, so that a
// test of the verifier reads blocks it did not write itself.
type precomputedBlock struct {
	ScheduledTime string `json:"scheduled_time"`
	ProtocolState struct {
		PreviousStateHash string `json:"previous_state_hash"`
		Body              struct {
			ConsensusState struct {
				BlockchainLength       string `json:"blockchain_length"`
				GlobalSlotSinceGenesis string `json:"global_slot_since_genesis"`
			} `json:"consensus_state"`
		} `json:"body"`
	} `json:"protocol_state"`
}

// WriteBlockFiles writes each block as a precomputed block <hash>.json in
// dir (created if missing), as BLOCKS_DIR holds them: for tests and the
// demo.
func WriteBlockFiles(dir string, blocks []*Block) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the blocks directory: %w", err)
	}
	for _, b := range blocks {
		var p precomputedBlock
		p.ScheduledTime = strconv.FormatInt(b.At.UnixMilli(), 10)
		p.ProtocolState.PreviousStateHash = b.Parent
		cs := &p.ProtocolState.Body.ConsensusState
		cs.BlockchainLength = strconv.FormatInt(b.Height, 10)
		cs.GlobalSlotSinceGenesis = strconv.FormatInt(b.Slot, 10)
		data, err := json.Marshal(&p)
		if err != nil {
			return fmt.Errorf("encoding block %s: %w", b.Hash, err)
		}
		if err := os.WriteFile(filepath.Join(dir, b.Hash+".json"), data, 0o644); err != nil {
			return fmt.Errorf("writing block %s: %w", b.Hash, err)
		}
	}
	return nil
}
