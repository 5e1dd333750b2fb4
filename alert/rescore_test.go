package alert_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/alert"
)

func TestOperation(t *testing.T) {
	a := &alert.Alerter{On: true, Mask: strings.NewReplacer("hunter2-secret", "***")}
	from, to := time.Date(2024, 6, 1, 0, 40, 0, 0, time.UTC), time.Date(2024, 6, 1, 1, 21, 0, 0, time.UTC)
	for _, tc := range []struct {
		o          alert.Operation
		kind, text string
	}{
		{alert.Operation{Command: "rescore", From: from, To: to, Batches: 3, Extended: 1, ProducersChanged: 12, Gained: 4, Lost: 20, Scores: 1},
			"rescore", ":information_source: rescore of the batches ending in [2024-06-01 00:40:00, 2024-06-01 01:21:00) UTC finished: 3 batches re-scored (1 after the range); 12 producers changed outcome (4 batch points gained, 20 lost); 1 score changed."},
		{alert.Operation{Command: "reverify", From: from, To: to, Windows: 2, Submissions: 1},
			"reverify", ":information_source: reverify of the batches ending in [2024-06-01 00:40:00, 2024-06-01 01:21:00) UTC finished: 1 submission re-verified in 2 windows; scores are unchanged until the range is re-scored."},
		{alert.Operation{Command: "reverify", From: from, To: to, Windows: 1, Submissions: 30, Rescored: true, Batches: 1, Gained: 1},
			"reverify", ":information_source: reverify of the batches ending in [2024-06-01 00:40:00, 2024-06-01 01:21:00) UTC finished: 30 submissions re-verified in 1 window, then 1 batch re-scored; 0 producers changed outcome (1 batch point gained, 0 lost); 0 scores changed."},
		{alert.Operation{Command: "rescore", From: from, To: to, Err: errors.New("password hunter2-secret refused")},
			"rescore_failed", ":rotating_light: rescore of the batches ending in [2024-06-01 00:40:00, 2024-06-01 01:21:00) UTC failed: nothing was changed.\nError: password *** refused"},
	} {
		msgs := a.Operation(tc.o)
		if len(msgs) != 1 || msgs[0].Kind != tc.kind || msgs[0].Text != tc.text {
			t.Errorf("%+v:\n got %+v\nwant %s: %s", tc.o, msgs, tc.kind, tc.text)
		}
	}
	if msgs := (&alert.Alerter{}).Operation(alert.Operation{Command: "rescore", From: from, To: to}); msgs != nil {
		t.Errorf("without WEBHOOK_URL: %+v", msgs)
	}
}
