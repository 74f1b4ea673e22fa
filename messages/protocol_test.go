package messages_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/messages"
)

// The protocol as doc.go states it (issue 10 §6).

// Rows are counted "from 1 among the rows that are not blank": a blank
// line between rows is no row.
func TestRowsCountedAmongNonBlank(t *testing.T) {
	for name, tt := range map[string]struct{ payload, row string }{
		"the documented case":     {"Juan,Perez,1,1990-05-17,1\n\nJuan,Perez,1,1990-05-17,10000\n", "row 2: "},
		"blank lines first":       {"\n\r\n\nJuan,Perez,1,1990-05-17,10000\n", "row 1: "},
		"CRLF blanks in between":  {goodRow + "\r\n\r\n" + goodRow + "\r\n" + "Juan,Perez,1,1990-05-17,10000\r\n", "row 3: "},
		"no blank line (control)": {goodRow + goodRow + "Juan,Perez,1,1990-05-17,10000\n", "row 3: "},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := messages.DecodeBets(nil, 1, []byte(tt.payload))
			e := wantCode(t, "DecodeBets", err, messages.CodeInvalidBet)
			if !strings.HasPrefix(e.Description, tt.row+`number "10000"`) {
				t.Errorf("description %q, want it to start with %q", e.Description, tt.row+`number "10000"`)
			}
		})
	}
	var got []int
	messages.Lines("a\n\nb\r\n\r\nc", func(n int, line string) bool {
		got = append(got, n)
		return true
	})
	if len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 3 {
		t.Errorf("Lines numbered a, b, c as %v, want [1 2 3]", got)
	}
}

// A Quiniela-* header sent twice leaves no single value to go by: 400,
// whatever the values and however the name is spelt.
func TestRepeatedHeaderRefused(t *testing.T) {
	batch := func(kv ...string) nats.Header {
		h := nats.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	for name, h := range map[string]nats.Header{
		"batch, different values": batch(messages.HeaderAgency, "1", messages.HeaderBatch, "1", messages.HeaderBatch, "2"),
		"batch, same values":      batch(messages.HeaderAgency, "1", messages.HeaderBatch, "1", messages.HeaderBatch, "1"),
		"agency":                  batch(messages.HeaderAgency, "1", messages.HeaderAgency, "2", messages.HeaderBatch, "1"),
		"batch in two spellings":  batch(messages.HeaderAgency, "1", messages.HeaderBatch, "1", "quiniela-batch", "2"),
		"another Quiniela header": batch(messages.HeaderAgency, "1", messages.HeaderBatch, "1", "Quiniela-Extra", "a", "QUINIELA-EXTRA", "b"),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := messages.DecodeBatchHeader(messages.BatchSubject(1), h)
			e := wantCode(t, "DecodeBatchHeader", err, messages.CodeMalformed)
			if !strings.Contains(e.Description, "times") || len(e.Description) > 200 {
				t.Errorf("description %q, want one that says the header is repeated, in at most 200 bytes", e.Description)
			}
		})
	}
	done := batch(messages.HeaderAgency, "1", messages.HeaderBatches, "3", messages.HeaderBatches, "4")
	_, _, err := messages.DecodeDone(messages.DoneSubject(1), done)
	if e := wantCode(t, "DecodeDone", err, messages.CodeMalformed); !strings.Contains(e.Description, messages.HeaderBatches) {
		t.Errorf("description %q does not name %s", e.Description, messages.HeaderBatches)
	}
	// A header sent once, and headers of other protocols, are fine.
	ok := batch(messages.HeaderAgency, "1", messages.HeaderBatch, "7", messages.HeaderLines, "3", "Nats-Msg-Id", "a", "X-Trace", "1", "X-Trace", "2")
	if bh, err := messages.DecodeBatchHeader(messages.BatchSubject(1), ok); err != nil || bh.Seq != 7 {
		t.Errorf("DecodeBatchHeader(%v) = %+v, %v", ok, bh, err)
	}
	long := batch(messages.HeaderAgency, "1", messages.HeaderBatch, "1", "Quiniela-"+strings.Repeat("\x01", 2000), "a", "quiniela-"+strings.Repeat("\x01", 2000), "b")
	_, err = messages.DecodeBatchHeader(messages.BatchSubject(1), long)
	if e := wantCode(t, "DecodeBatchHeader", err, messages.CodeMalformed); len(e.Description) > 200 {
		t.Errorf("description of %d bytes for a long repeated name, want at most 200", len(e.Description))
	}
}

// A birthdate is valid up to today in Argentina (UTC-3): at 01:00 UTC on
// 2 March it is still 1 March there, so 2 March is tomorrow.
func TestBirthdateUpToTodayInArgentina(t *testing.T) {
	for _, tt := range []struct {
		clock string // UTC
		date  string
		valid bool
	}{
		{"2026-03-02T01:00:00Z", "2026-03-01", true},  // 22:00 on 1 March in Argentina
		{"2026-03-02T01:00:00Z", "2026-03-02", false}, // tomorrow there, though today in UTC
		{"2026-03-02T02:59:59Z", "2026-03-02", false},
		{"2026-03-02T03:00:00Z", "2026-03-02", true}, // midnight in Argentina
		{"2026-03-02T03:00:00Z", "2026-03-03", false},
		{"2026-12-31T23:00:00Z", "2026-12-31", true},
		{"2026-12-31T23:00:00Z", "2027-01-01", false},
	} {
		clock, err := time.Parse(time.RFC3339, tt.clock)
		if err != nil {
			t.Fatal(err)
		}
		restore := messages.SetClock(func() time.Time { return clock })
		_, err = messages.ParseBet(1, with(3, tt.date))
		restore()
		if valid := err == nil; valid != tt.valid {
			t.Errorf("at %s, birthdate %s: ParseBet error %v, want valid %v", tt.clock, tt.date, err, tt.valid)
		}
		if err != nil && !strings.Contains(err.Error(), "today in Argentina") {
			t.Errorf("at %s, birthdate %s: error %q does not say up to which day", tt.clock, tt.date, err)
		}
	}
}

// The cached date follows the clock: a day that was tomorrow becomes valid
// once it has come, without a restart.
func TestBirthdateTodayMovesWithTheClock(t *testing.T) {
	clock := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	defer messages.SetClock(func() time.Time { return clock })()
	if _, err := messages.ParseBet(1, with(3, "2026-03-01")); err != nil {
		t.Fatalf("today: %v", err)
	}
	if _, err := messages.ParseBet(1, with(3, "2026-03-02")); err == nil {
		t.Fatal("tomorrow accepted")
	}
	clock = clock.AddDate(0, 0, 1)
	if _, err := messages.ParseBet(1, with(3, "2026-03-02")); err != nil {
		t.Errorf("a day later, the same date: %v", err)
	}
}
