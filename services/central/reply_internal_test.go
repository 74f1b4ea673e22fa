package central

import (
	"fmt"
	"testing"

	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// A batch the ledger's servers cannot store as configured is answered 507,
// which the agency does not retry, wrapped or not; the refusal as the
// store returns it is the description whole (wide numbers and all, under
// the wire's limit, not cut).
func TestReplyForLedgerLimit(t *testing.T) {
	over := &lottery.LedgerLimitError{Agency: 999, Batch: 4294967295, Parts: 1001, Limit: 1000}
	for _, err := range []error{over, fmt.Errorf("storing: %w", over)} {
		if e := replyFor(err); e.Code != messages.CodeLedgerLimit || e.Code.Retryable() {
			t.Errorf("%v answered %v (retryable %v), want %v, not retryable", err, e.Code, e.Code.Retryable(), messages.CodeLedgerLimit)
		}
	}
	if e := replyFor(over); e.Description != over.Error() {
		t.Errorf("description %q, want the refusal whole: %q", e.Description, over)
	}
}

// The central answers a request only into the requester's inbox: agency
// N's subjects into agency N's, the inspector's into _INBOX.
func TestRefusedReply(t *testing.T) {
	for _, c := range []struct {
		subject, reply string
		ok             bool
	}{
		{"bets.agency.1", "_INBOX_agency.1.abc.1", true},
		{"bets.agency.1.done", "_INBOX_agency.1.x", true},
		{"winners.agency.1", "_INBOX_agency.1.x", true},
		{"quiniela.status", "_INBOX.x", true},
		{"$SRV.PING", "_INBOX.x.y", true},
		{"winners.agency.abc", "_INBOX.x", true},
		{"winners.agency.1", "_INBOX.x", false},
		{"bets.agency.1", "_INBOX_agency.2.x", false},
		{"bets.agency.1", "_INBOX_agency.1", false},
		{"bets.agency.1", "_INBOX_agency.1.", false},
		{"bets.agency.1", "_INBOX_agency.1.*", false},
		{"bets.agency.1", "_INBOX_agency.1.>", false},
		{"bets.agency.1", "_INBOX_agency.10.x", false},
		{"bets.agency.1", "", false},
		{"quiniela.status", "_INBOX_agency.1.x", false},
		{"$SRV.PING", "_INBOX_agency.1.x", false},
		{"winners.agency.abc", "_INBOX_agency.1.x", false},
	} {
		if got := refusedReply(c.subject, c.reply) == ""; got != c.ok {
			t.Errorf("%s answered on %q: %v, want %v (%s)", c.subject, c.reply, got, c.ok, refusedReply(c.subject, c.reply))
		}
	}
	for _, reply := range []string{"ledger.QUINIELA.agency.2", "ledger.QUINIELA.draw", "$KV.QUINIELA_LEASE.active",
		"$JS.API.STREAM.PURGE.QUINIELA", "$JS.API.STREAM.DELETE.QUINIELA", "$JS.API.STREAM.DELETE.KV_QUINIELA_LEASE",
		"$JS.API.INFO", "bets.agency.2", "winners.agency.1", "quiniela.status", "$SRV.PING", "_INBOX"} {
		for _, subject := range []string{"bets.agency.1", "bets.agency.1.done", "winners.agency.1", "quiniela.status", "$SRV.STATS", "winners.agency.x"} {
			if refusedReply(subject, reply) == "" {
				t.Errorf("%s would be answered on %s", subject, reply)
			}
		}
	}
}
