package messages_test

import (
	"math"
	"strconv"
	"testing"

	"github.com/quiniela/quiniela/messages"
)

func TestSubjectBuilders(t *testing.T) {
	tests := []struct {
		agency               int
		batch, done, winners string
	}{
		{1, "bets.agency.1", "bets.agency.1.done", "winners.agency.1"},
		{5, "bets.agency.5", "bets.agency.5.done", "winners.agency.5"},
		{10, "bets.agency.10", "bets.agency.10.done", "winners.agency.10"},
		{123456, "bets.agency.123456", "bets.agency.123456.done", "winners.agency.123456"},
	}
	for _, tt := range tests {
		if got := messages.BatchSubject(tt.agency); got != tt.batch {
			t.Errorf("BatchSubject(%d) = %q, want %q", tt.agency, got, tt.batch)
		}
		if got := messages.DoneSubject(tt.agency); got != tt.done {
			t.Errorf("DoneSubject(%d) = %q, want %q", tt.agency, got, tt.done)
		}
		if got := messages.WinnersSubject(tt.agency); got != tt.winners {
			t.Errorf("WinnersSubject(%d) = %q, want %q", tt.agency, got, tt.winners)
		}
	}
	wild := map[string]string{
		messages.BatchSubjects:   "bets.agency.*",
		messages.DoneSubjects:    "bets.agency.*.done",
		messages.WinnersSubjects: "winners.agency.*",
	}
	for got, want := range wild {
		if got != want {
			t.Errorf("wildcard %q, want %q", got, want)
		}
	}
}

func TestAgencyFromSubjectRoundTrip(t *testing.T) {
	agencies := []int{1, 2, 9, 10, 99, 100, 4096, 1_000_000, math.MaxInt32, math.MaxInt}
	builders := map[string]func(int) string{
		"BatchSubject":   messages.BatchSubject,
		"DoneSubject":    messages.DoneSubject,
		"WinnersSubject": messages.WinnersSubject,
	}
	for name, build := range builders {
		for _, a := range agencies {
			subject := build(a)
			got, err := messages.AgencyFromSubject(subject)
			if err != nil || got != a {
				t.Errorf("AgencyFromSubject(%s(%d) = %q) = %d, %v; want %d, nil", name, a, subject, got, err, a)
			}
		}
	}
}

func TestAgencyFromSubjectRejects(t *testing.T) {
	for _, subject := range []string{
		"",
		"bets.agency.0",
		"bets.agency.00",
		"bets.agency.01",
		"bets.agency.+1",
		"bets.agency.-1",
		"bets.agency.abc",
		"bets.agency.1a",
		"bets.agency.",
		"bets.agency",
		"bets.agency.1.2",
		"bets.agency.1.done.done",
		"bets.agency..done",
		"bets.agency.0.done",
		"bets.agency.1 ",
		"bets.agency. 1",
		"bets.agency.*",
		"bets.agency.>",
		"bets.agency.١", // an Arabic-Indic digit one
		"bets.agency.0x10",
		"bets.agency.1_000",
		"bets.agency.99999999999999999999", // beyond int64
		"bets.agency.9223372036854775808",  // math.MaxInt64 + 1
		"bets.agency.18446744073709551616", // 2^64
		"winners.agency.-3",
		"winners.agency.0",
		"winners.agency.1.done", // done is only under bets
		"winners.agency.",
		"foo.bar",
		"bets.1",
		"agency.1",
		"Bets.agency.1",
		"_INBOX.bets.agency.1",
	} {
		n, err := messages.AgencyFromSubject(subject)
		if err == nil {
			t.Errorf("AgencyFromSubject(%q) = %d, nil; want an error", subject, n)
			continue
		}
		if n != 0 {
			t.Errorf("AgencyFromSubject(%q) = %d with error %v; want 0", subject, n, err)
		}
	}
}

func TestParseAgency(t *testing.T) {
	tests := []struct {
		in   string
		want int // 0: an error
	}{
		{"1", 1},
		{"42", 42},
		{strconv.Itoa(math.MaxInt), math.MaxInt},
		{"0", 0},
		{"-1", 0},
		{"+1", 0},
		{"01", 0},
		{"", 0},
		{" 1", 0},
		{"1e3", 0},
		{"99999999999999999999", 0},
	}
	for _, tt := range tests {
		got, err := messages.ParseAgency(tt.in)
		if tt.want == 0 {
			if err == nil {
				t.Errorf("ParseAgency(%q) = %d, nil; want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseAgency(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

// The roots are what the broker's permissions and the ledger's stream
// name: a change here is a change of the deployed permissions.
func TestSubjectRoots(t *testing.T) {
	for got, want := range map[string]string{
		messages.AllBetsSubjects:                     "bets.>",
		messages.AllWinnersSubjects:                  "winners.>",
		messages.AllQuinielaSubjects:                 "quiniela.>",
		messages.MicroSubjects:                       "$SRV.>",
		messages.MicroPrefix:                         "$SRV.",
		messages.DefaultInboxPrefix:                  "_INBOX",
		messages.StatusSubject:                       "quiniela.status",
		messages.LedgerSubjects("QUINIELA"):          "ledger.QUINIELA.>",
		messages.LedgerAgencySubject("QUINIELA", 12): "ledger.QUINIELA.agency.12",
		messages.LedgerDrawSubject("QUINIELA"):       "ledger.QUINIELA.draw",
		messages.AgencyInboxPrefix(3) + ".>":         "_INBOX_agency.3.>",
	} {
		if got != want {
			t.Errorf("subject %q, want %q", got, want)
		}
	}
}
