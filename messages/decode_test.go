package messages_test

import (
	"encoding/csv"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/quiniela/quiniela/messages"
)

// hdr builds a header from key, value pairs; a value of "-" leaves the key out.
func hdr(kv ...string) nats.Header {
	h := nats.Header{}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] != "-" {
			h.Set(kv[i], kv[i+1])
		}
	}
	return h
}

func wantCode(t *testing.T, what string, err error, code messages.Code) *messages.Error {
	t.Helper()
	var e *messages.Error
	if !errors.As(err, &e) {
		t.Fatalf("%s: error %v (%T), want a *messages.Error with code %v", what, err, err, code)
	}
	if e.Code != code {
		t.Fatalf("%s: code %v, want %v (%s)", what, e.Code, code, e.Description)
	}
	if e.Description == "" {
		t.Fatalf("%s: empty description", what)
	}
	return e
}

func TestDecodeBatchHeader(t *testing.T) {
	const A, B, L = messages.HeaderAgency, messages.HeaderBatch, messages.HeaderLines
	tests := []struct {
		name    string
		subject string
		h       nats.Header
		code    messages.Code // 0: success
		seq     uint64
		lines   string // on success: the lines as String writes them
	}{
		{"ok", "bets.agency.1", hdr(A, "1", B, "1", L, "1"), 0, 1, "1"},
		{"ok big", "bets.agency.123", hdr(A, "123", B, "18446744073709551615", L, "18446744073709551615"), 0, math.MaxUint64, "18446744073709551615"},
		{"lines with gaps", "bets.agency.1", hdr(A, "1", B, "2", L, "2-41,43,45-60"), 0, 2, "2-41,43,45-60"},
		{"lines missing", "bets.agency.1", hdr(A, "1", B, "1"), messages.CodeMalformed, 0, ""},
		{"lines empty", "bets.agency.1", hdr(A, "1", B, "1", L, ""), messages.CodeMalformed, 0, ""},
		{"line 0", "bets.agency.1", hdr(A, "1", B, "1", L, "0"), messages.CodeMalformed, 0, ""},
		{"line 01", "bets.agency.1", hdr(A, "1", B, "1", L, "01"), messages.CodeMalformed, 0, ""},
		{"line +1", "bets.agency.1", hdr(A, "1", B, "1", L, "+1"), messages.CodeMalformed, 0, ""},
		{"lines decreasing", "bets.agency.1", hdr(A, "1", B, "1", L, "3,2"), messages.CodeMalformed, 0, ""},
		{"line twice", "bets.agency.1", hdr(A, "1", B, "1", L, "2,2"), messages.CodeMalformed, 0, ""},
		{"ranges touching", "bets.agency.1", hdr(A, "1", B, "1", L, "1-2,3"), messages.CodeMalformed, 0, ""},
		{"range of one line", "bets.agency.1", hdr(A, "1", B, "1", L, "4-4"), messages.CodeMalformed, 0, ""},
		{"range backwards", "bets.agency.1", hdr(A, "1", B, "1", L, "5-4"), messages.CodeMalformed, 0, ""},
		{"range open", "bets.agency.1", hdr(A, "1", B, "1", L, "5-"), messages.CodeMalformed, 0, ""},
		{"range from 0", "bets.agency.1", hdr(A, "1", B, "1", L, "0-4"), messages.CodeMalformed, 0, ""},
		{"lines with spaces", "bets.agency.1", hdr(A, "1", B, "1", L, "1, 3"), messages.CodeMalformed, 0, ""},
		{"lines trailing comma", "bets.agency.1", hdr(A, "1", B, "1", L, "1,"), messages.CodeMalformed, 0, ""},
		{"lines after the last uint64", "bets.agency.1", hdr(A, "1", B, "1", L, "18446744073709551614-18446744073709551615,5"), messages.CodeMalformed, 0, ""},
		{"lines beyond uint64", "bets.agency.1", hdr(A, "1", B, "1", L, "18446744073709551616"), messages.CodeMalformed, 0, ""},
		{"agency header differs", "bets.agency.1", hdr(A, "2", B, "1"), messages.CodeWrongAgency, 0, ""},
		{"agency header 01", "bets.agency.1", hdr(A, "01", B, "1"), messages.CodeWrongAgency, 0, ""},
		{"agency header with space", "bets.agency.1", hdr(A, " 1", B, "1"), messages.CodeWrongAgency, 0, ""},
		{"agency header missing", "bets.agency.1", hdr(B, "1"), messages.CodeWrongAgency, 0, ""},
		{"agency header in lower case", "bets.agency.1", hdr("quiniela-agency", "1", B, "1"), messages.CodeWrongAgency, 0, ""},
		{"no headers at all", "bets.agency.1", nil, messages.CodeWrongAgency, 0, ""},
		{"seq 0", "bets.agency.1", hdr(A, "1", B, "0", L, "1"), messages.CodeMalformed, 0, ""},
		{"seq -1", "bets.agency.1", hdr(A, "1", B, "-1"), messages.CodeMalformed, 0, ""},
		{"seq +1", "bets.agency.1", hdr(A, "1", B, "+1"), messages.CodeMalformed, 0, ""},
		{"seq abc", "bets.agency.1", hdr(A, "1", B, "abc"), messages.CodeMalformed, 0, ""},
		{"seq 1.5", "bets.agency.1", hdr(A, "1", B, "1.5"), messages.CodeMalformed, 0, ""},
		{"seq empty", "bets.agency.1", hdr(A, "1", B, ""), messages.CodeMalformed, 0, ""},
		{"seq missing", "bets.agency.1", hdr(A, "1"), messages.CodeMalformed, 0, ""},
		{"seq beyond uint64", "bets.agency.1", hdr(A, "1", B, "18446744073709551616"), messages.CodeMalformed, 0, ""},
		{"subject agency abc", "bets.agency.abc", hdr(A, "abc", B, "1"), messages.CodeUnknownAgency, 0, ""},
		{"subject agency 0", "bets.agency.0", hdr(A, "0", B, "1"), messages.CodeUnknownAgency, 0, ""},
		{"subject agency 01", "bets.agency.01", hdr(A, "1", B, "1"), messages.CodeUnknownAgency, 0, ""},
		{"other subject", "foo.bar", hdr(A, "1", B, "1"), messages.CodeUnknownAgency, 0, ""},
		// The subject is checked before the headers.
		{"bad subject and headers", "bets.agency.x", nil, messages.CodeUnknownAgency, 0, ""},
		// The agency is checked before the sequence.
		{"wrong agency and bad seq", "bets.agency.1", hdr(A, "2", B, "0"), messages.CodeWrongAgency, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bh, err := messages.DecodeBatchHeader(tt.subject, tt.h)
			if tt.code != 0 {
				wantCode(t, "DecodeBatchHeader", err, tt.code)
				if bh.Agency != 0 || bh.Seq != 0 || bh.Lines != nil {
					t.Errorf("header %+v returned with the error", bh)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeBatchHeader(%q, %v) = %v", tt.subject, tt.h, err)
			}
			agency, _ := messages.AgencyFromSubject(tt.subject)
			if bh.Agency != agency || bh.Seq != tt.seq || bh.Lines.String() != tt.lines {
				t.Errorf("DecodeBatchHeader = %+v, want agency %d seq %d lines %s", bh, agency, tt.seq, tt.lines)
			}
		})
	}
}

func TestBatchMsgRoundTrip(t *testing.T) {
	for _, b := range []messages.Batch{
		{Agency: 1, Seq: 1, Bets: 1, Lines: messages.LineSet{{First: 1, Last: 1}}, Payload: []byte("Juan,Perez,30123456,1990-05-17,7574\n")},
		{Agency: 4711, Seq: 123456, Bets: 1, Lines: messages.LineSet{{First: 2, Last: 9}, {First: 12, Last: 12}}, Payload: []byte("x")},
	} {
		m := b.Msg()
		bh, err := messages.DecodeBatchHeader(m.Subject, m.Header)
		if err != nil || bh.Agency != b.Agency || bh.Seq != b.Seq || bh.Lines.String() != b.Lines.String() {
			t.Errorf("DecodeBatchHeader(Msg of %+v) = %+v, %v", b, bh, err)
		}
		if m.Reply != "" || string(m.Data) != string(b.Payload) {
			t.Errorf("Msg of %+v = %+v", b, m)
		}
	}
}

func TestDecodeDone(t *testing.T) {
	const A, N = messages.HeaderAgency, messages.HeaderBatches
	tests := []struct {
		name    string
		subject string
		h       nats.Header
		code    messages.Code
		agency  int
		batches uint64
	}{
		{"ok", "bets.agency.3.done", hdr(A, "3", N, "12"), 0, 3, 12},
		{"no batches", "bets.agency.3.done", hdr(A, "3", N, "0"), 0, 3, 0},
		{"wrong agency", "bets.agency.3.done", hdr(A, "4", N, "12"), messages.CodeWrongAgency, 0, 0},
		{"agency missing", "bets.agency.3.done", hdr(N, "12"), messages.CodeWrongAgency, 0, 0},
		{"batches missing", "bets.agency.3.done", hdr(A, "3"), messages.CodeMalformed, 0, 0},
		{"batches -1", "bets.agency.3.done", hdr(A, "3", N, "-1"), messages.CodeMalformed, 0, 0},
		{"batches abc", "bets.agency.3.done", hdr(A, "3", N, "abc"), messages.CodeMalformed, 0, 0},
		{"subject abc", "bets.agency.abc.done", hdr(A, "3", N, "1"), messages.CodeUnknownAgency, 0, 0},
		{"subject winners done", "winners.agency.3.done", hdr(A, "3", N, "1"), messages.CodeUnknownAgency, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agency, batches, err := messages.DecodeDone(tt.subject, tt.h)
			if tt.code != 0 {
				wantCode(t, "DecodeDone", err, tt.code)
				if agency != 0 || batches != 0 {
					t.Errorf("returned %d, %d with the error", agency, batches)
				}
				return
			}
			if err != nil || agency != tt.agency || batches != tt.batches {
				t.Errorf("DecodeDone = %d, %d, %v; want %d, %d", agency, batches, err, tt.agency, tt.batches)
			}
		})
	}
}

func TestDoneMsgRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		agency  int
		batches uint64
	}{{1, 0}, {1, 1}, {77, 12345}, {math.MaxInt32, math.MaxUint64}} {
		m := messages.DoneMsg(tt.agency, tt.batches)
		if m.Subject != messages.DoneSubject(tt.agency) {
			t.Errorf("DoneMsg(%d, %d).Subject = %q", tt.agency, tt.batches, m.Subject)
		}
		if len(m.Data) != 0 {
			t.Errorf("DoneMsg has a body: %q", m.Data)
		}
		agency, batches, err := messages.DecodeDone(m.Subject, m.Header)
		if err != nil || agency != tt.agency || batches != tt.batches {
			t.Errorf("DecodeDone(DoneMsg(%d, %d)) = %d, %d, %v", tt.agency, tt.batches, agency, batches, err)
		}
	}
}

const goodRow = "Juan,Perez,30123456,1990-05-17,7574\n"

func TestDecodeBets(t *testing.T) {
	payload := goodRow + "\"Perez, Juan\",\"O\"\"Brien\",0001,2000-02-29,0042\n" + "Ana,Gomez,1,1999-12-31,0\n"
	sentinel := messages.Bet{Agency: 99, FirstName: "kept"}
	got, err := messages.DecodeBets([]messages.Bet{sentinel}, 7, []byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	want := []messages.Bet{
		sentinel,
		{Agency: 7, FirstName: "Juan", LastName: "Perez", Document: "30123456", Birthdate: date(t, "1990-05-17"), Number: 7574},
		{Agency: 7, FirstName: "Perez, Juan", LastName: `O"Brien`, Document: "0001", Birthdate: date(t, "2000-02-29"), Number: 42},
		{Agency: 7, FirstName: "Ana", LastName: "Gomez", Document: "1", Birthdate: date(t, "1999-12-31"), Number: 0},
	}
	if len(got) != len(want) {
		t.Fatalf("DecodeBets = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("bet %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	// Re-encoded, the quoted fields come back the same.
	out := encodeAll(t, messages.NewBatchEncoder(7, 100), got[1:])
	if len(out) != 1 {
		t.Fatalf("%d batches", len(out))
	}
	again, err := messages.DecodeBets(nil, 7, out[0].Payload)
	if err != nil || len(again) != 3 {
		t.Fatalf("DecodeBets(re-encoded) = %+v, %v", again, err)
	}
	for i := range again {
		if again[i] != got[i+1] {
			t.Errorf("re-encoded bet %d = %+v, want %+v", i, again[i], got[i+1])
		}
	}
}

func TestDecodeBetsLineEndings(t *testing.T) {
	for name, payload := range map[string]string{
		"LF":                 "Juan,Perez,1,1990-05-17,1\nAna,Gomez,2,1991-01-01,2\n",
		"CRLF":               "Juan,Perez,1,1990-05-17,1\r\nAna,Gomez,2,1991-01-01,2\r\n",
		"no final newline":   "Juan,Perez,1,1990-05-17,1\nAna,Gomez,2,1991-01-01,2",
		"blank lines around": "\n\nJuan,Perez,1,1990-05-17,1\n\nAna,Gomez,2,1991-01-01,2\n\n",
	} {
		got, err := messages.DecodeBets(nil, 1, []byte(payload))
		if err != nil || len(got) != 2 || got[0].LastName != "Perez" || got[1].Number != 2 {
			t.Errorf("%s: DecodeBets(%q) = %+v, %v", name, payload, got, err)
		}
	}
}

func TestDecodeBetsMalformed(t *testing.T) {
	dst := []messages.Bet{{FirstName: "kept"}}
	for _, payload := range []string{"", "\n", "\n\n\n", "\r\n\r\n"} {
		got, err := messages.DecodeBets(dst, 1, []byte(payload))
		wantCode(t, "DecodeBets("+strqt(payload)+")", err, messages.CodeMalformed)
		if len(got) != 1 || got[0].FirstName != "kept" {
			t.Errorf("DecodeBets(%q) = %+v; want dst back", payload, got)
		}
	}
}

func strqt(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "\n", `\n`), "\r", `\r`) }

func TestDecodeBetsBadRow(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		row     string // the description's start
		mention string // and something it says
	}{
		{"bad number in row 3", goodRow + goodRow + "Juan,Perez,1,1990-05-17,10000\n" + goodRow, "row 3: ", "number"},
		{"bad date in row 1", "Juan,Perez,1,1990-02-30,1\n" + goodRow, "row 1: ", "birthdate"},
		{"4 fields in row 2", goodRow + "Juan,Perez,1,1990-05-17\n", "row 2: ", "4 fields"},
		{"6 fields in row 2", goodRow + "Juan,Perez,1,1990-05-17,1,1\n", "row 2: ", "6 fields"},
		{"empty name in row 2", goodRow + ",Perez,1,1990-05-17,1\n", "row 2: ", "first_name"},
		{"line break in a quoted name", goodRow + "\"Ju\nan\",Perez,1,1990-05-17,1\n", "row 2: ", "quoted-field"},
		{"bare quote in row 2", goodRow + "Ju\"an,Perez,1,1990-05-17,1\n", "row 2: ", "quote"},
		{"open quote in row 3", goodRow + goodRow + "\"Juan,Perez,1,1990-05-17,1\n", "row 3: ", "quote"},
		{"a lone field in row 2", goodRow + " \n", "row 2: ", "1 fields"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []messages.Bet{{FirstName: "kept"}, {FirstName: "also kept"}}
			got, err := messages.DecodeBets(dst, 1, []byte(tt.payload))
			e := wantCode(t, "DecodeBets", err, messages.CodeInvalidBet)
			if !strings.HasPrefix(e.Description, tt.row) {
				t.Errorf("description %q does not start with %q", e.Description, tt.row)
			}
			if !strings.Contains(e.Description, tt.mention) {
				t.Errorf("description %q does not mention %q", e.Description, tt.mention)
			}
			if strings.Contains(e.Description, "record on line") {
				t.Errorf("description %q keeps encoding/csv's prefix", e.Description)
			}
			if len(got) != 2 || got[0].FirstName != "kept" || got[1].FirstName != "also kept" {
				t.Errorf("DecodeBets returned %+v; want dst and no bet of the batch", got)
			}
		})
	}
}

func TestRowErrorAndCSVReason(t *testing.T) {
	inner := errors.New("boom")
	re := &messages.RowError{Row: 4, Err: inner}
	if re.Error() != "row 4: boom" || !errors.Is(re, inner) {
		t.Errorf("RowError = %q, Is(inner) %v", re, errors.Is(re, inner))
	}
	cr := csv.NewReader(strings.NewReader("a\"b,c\n"))
	_, err := cr.Read()
	if err == nil {
		t.Fatal("bare quote read without error")
	}
	reason := messages.CSVReason(err)
	if strings.Contains(reason.Error(), "line") || !strings.Contains(reason.Error(), "quote") {
		t.Errorf("CSVReason(%q) = %q", err, reason)
	}
	if got := messages.CSVReason(inner); got != inner {
		t.Errorf("CSVReason(non-CSV error) = %v, want it unchanged", got)
	}
}

// DecodeBatch: Quiniela-Lines names one line per row (blank lines are no
// rows), and the batch's sum covers the lines as well as the payload.
func TestDecodeBatchLines(t *testing.T) {
	payload := []byte(goodRow + "\n" + goodRow)
	h := func(lines string) nats.Header {
		return hdr(messages.HeaderAgency, "3", messages.HeaderBatch, "2", messages.HeaderLines, lines)
	}
	req, err := messages.DecodeBatch(nil, messages.BatchSubject(3), h("7,9"), payload)
	if err != nil || req.Rows != 2 || req.Lines.String() != "7,9" || req.Sum != messages.BatchSum("7,9", payload) {
		t.Fatalf("DecodeBatch = %+v, %v; want 2 rows at lines 7,9", req, err)
	}
	other, err := messages.DecodeBatch(nil, messages.BatchSubject(3), h("7-8"), payload)
	if err != nil || other.Sum == req.Sum {
		t.Errorf("the same rows at other lines: sum %#x, %v; want another sum than %#x", other.Sum, err, req.Sum)
	}
	for _, lines := range []string{"7", "7-9", "1,3,5"} {
		req, err := messages.DecodeBatch(nil, messages.BatchSubject(3), h(lines), payload)
		if e := wantCode(t, "lines "+lines, err, messages.CodeMalformed); !strings.Contains(e.Description, "has 2 rows, but header Quiniela-Lines names") {
			t.Errorf("lines %s for 2 rows: %q", lines, e.Description)
		}
		if len(req.Stored) != 0 || req.Agency != 3 || req.Seq != 2 {
			t.Errorf("lines %s for 2 rows: %+v, want the batch named and no rows", lines, req)
		}
	}
}
