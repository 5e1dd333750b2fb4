package inspect

import (
	"strings"
	"testing"
	"time"
)

func TestWriteExplanation(t *testing.T) {
	at := func(min int) time.Time { return time.Date(2024, 6, 1, 0, min, 0, 0, time.UTC) }
	ex := &Explanation{Producer: "B62qx", From: at(0), To: at(60), Batches: []BatchReport{
		{BotLogID: 7, WindowStart: at(0), WindowEnd: at(20), Reason: "unknown", Derived: true,
			InvalidByClass: map[string]int{}, StateHashes: []string{}},
		{BotLogID: 8, WindowStart: at(20), WindowEnd: at(40), Point: true, Reason: "point", Submissions: 3, Valid: 2,
			InvalidByClass: map[string]int{"timeout": 1, "snark_invalid": 1}, StateHashes: []string{"3NKa"}},
		{BotLogID: 9, WindowStart: at(40), WindowEnd: at(60), Reason: "off_chain", Submissions: 2, Valid: 2,
			InvalidByClass: map[string]int{}, StateHashes: []string{"3NKf1", "3NKf2"}},
		{BotLogID: 10, WindowStart: at(60), WindowEnd: at(80), Reason: "invalid", Submissions: 1, Unverified: 0,
			InvalidByClass: map[string]int{"sok_digest_mismatch": 1}, ErrorExamples: map[string]string{"sok_digest_mismatch": "sok digest mismatch"}},
	}, Summary: Summary{Batches: 4, Points: 1, Missed: 3, ByReason: map[string]int{"point": 1, "off_chain": 1, "invalid": 1, "unknown": 1}, Derived: 1}}
	var b strings.Builder
	if err := WriteExplanation(&b, ex); err != nil {
		t.Fatal(err)
	}
	want := `Producer B62qx, batches ending in [2024-06-01T00:00:00Z, 2024-06-01T01:00:00Z):
* #7       2024-06-01 00:00:00 – 00:20:00  unknown
  #8       2024-06-01 00:20:00 – 00:40:00  point          3 submissions, 2 valid, invalid: snark_invalid 1, timeout 1
  #9       2024-06-01 00:40:00 – 01:00:00  off_chain      2 submissions, 2 valid; named 3NKf1, 3NKf2 (not on the consensus chain)
  #10      2024-06-01 01:00:00 – 01:20:00  invalid        1 submission, 0 valid, invalid: sok_digest_mismatch 1
      sok_digest_mismatch: "sok digest mismatch"
4 batches, 1 point, 3 missed (point 1, off_chain 1, invalid 1, unknown 1).
* 1 batch was scored before evidence was recorded: the reason is derived from points_summary and the submissions table, and is unknown where the submissions were cleaned up.
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
