package messages_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/quiniela/quiniela/messages"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/ as well; run for example
//
//	go test -run '^$' -fuzz '^FuzzDecodeBets$' -fuzztime 30s ./messages/

func FuzzDecodeBets(f *testing.F) {
	for _, s := range []string{
		goodRow,
		goodRow + goodRow,
		"Juan,Perez,1,1990-05-17,1\r\nAna,Gomez,2,1991-01-01,0042\r\n",
		"\"Perez, Juan\",\"O\"\"Brien\",0001,2000-02-29,0\n",
		"\" Ana\",Ñandú,123456789012,0000-01-01,9999",
		"",
		"\n\n",
		"Juan,Perez,1,1990-02-30,1\n",
		"Ju\"an,Perez,1,1990-05-17,1\n",
		"\"Juan,Perez,1,1990-05-17,1\n",
		"a,b,1,2000-01-01,1,\n",
		"\ufeffJuan,Perez,1,1990-05-17,1\n",
	} {
		f.Add([]byte(s))
	}
	sentinel := messages.Bet{Agency: -1, FirstName: "sentinel"}
	f.Fuzz(func(t *testing.T, payload []byte) {
		const agency = 3
		dst := []messages.Bet{sentinel}
		bets, err := messages.DecodeBets(dst, agency, payload)
		if len(bets) == 0 || bets[0] != sentinel {
			t.Fatalf("dst prefix lost: %+v", bets)
		}
		if err != nil {
			var e *messages.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T), want *messages.Error", err, err)
			}
			switch e.Code {
			case messages.CodeMalformed:
			case messages.CodeInvalidBet:
				if !strings.HasPrefix(e.Description, "row ") {
					t.Fatalf("description %q names no row", e.Description)
				}
			default:
				t.Fatalf("code %v", e.Code)
			}
			if len(bets) != 1 {
				t.Fatalf("%d bets returned with an error", len(bets)-1)
			}
			return
		}
		bets = bets[1:]
		if len(bets) == 0 {
			t.Fatal("success without bets")
		}
		for i, b := range bets {
			if b.Agency != agency {
				t.Fatalf("bet %d of agency %d", i, b.Agency)
			}
			again, err := messages.ParseBet(agency, b.AppendRow(nil))
			if err != nil || again != b {
				t.Fatalf("bet %d %+v: ParseBet(AppendRow) = %+v, %v", i, b, again, err)
			}
		}
		batches := encodeAll(t, messages.NewBatchEncoder(agency, 1+len(payload)%50), bets)
		var round []messages.Bet
		for _, b := range batches {
			m := b.Msg()
			if s := messages.WireSize(m.Subject, m.Header, len(m.Data)); s > messages.MaxMessageBytes {
				t.Fatalf("batch %d of %d bytes", b.Seq, s)
			}
			round, err = messages.DecodeBets(round, agency, b.Payload)
			if err != nil {
				t.Fatalf("re-encoded batch %d: %v\npayload %q", b.Seq, err, b.Payload)
			}
		}
		if len(round) != len(bets) {
			t.Fatalf("round trip gave %d bets, want %d", len(round), len(bets))
		}
		for i := range bets {
			if round[i] != bets[i] {
				t.Fatalf("bet %d: round trip %+v, want %+v", i, round[i], bets[i])
			}
		}
	})
}

func FuzzDecodeBatchHeader(f *testing.F) {
	f.Add("bets.agency.1", "1", "1", "1")
	f.Add("bets.agency.12", "12", "18446744073709551615", "2-41,43,45-60")
	f.Add("bets.agency.1", "2", "1", "1")
	f.Add("bets.agency.1", "1", "0", "1")
	f.Add("bets.agency.1", "1", "-1", "1-3")
	f.Add("bets.agency.1", "1", "abc", "1")
	f.Add("bets.agency.1", "1", "", "1")
	f.Add("bets.agency.1", "1", "1", "")
	f.Add("bets.agency.1", "1", "1", "3,2")
	f.Add("bets.agency.1", "1", "1", "1-2,3")
	f.Add("bets.agency.1", "1", "1", "01-5")
	f.Add("bets.agency.1", "1", "1", "5-5")
	f.Add("bets.agency.1", "1", "1", "18446744073709551615,5")
	f.Add("bets.agency.abc", "abc", "1", "1")
	f.Add("bets.agency.01", "1", "1", "1")
	f.Add("bets.agency.1.done", "1", "1", "1")
	f.Add("winners.agency.5", "5", "007", "7")
	f.Fuzz(func(t *testing.T, subject, agencyHeader, batchHeader, linesHeader string) {
		h := nats.Header{}
		if agencyHeader != "" {
			h.Set(messages.HeaderAgency, agencyHeader)
		}
		if batchHeader != "" {
			h.Set(messages.HeaderBatch, batchHeader)
		}
		if linesHeader != "" {
			h.Set(messages.HeaderLines, linesHeader)
		}
		bh, err := messages.DecodeBatchHeader(subject, h)
		if err != nil {
			var e *messages.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T), want *messages.Error", err, err)
			}
			switch e.Code {
			case messages.CodeMalformed, messages.CodeWrongAgency, messages.CodeUnknownAgency:
			default:
				t.Fatalf("code %v", e.Code)
			}
			if bh.Agency != 0 || bh.Seq != 0 || bh.Lines != nil {
				t.Fatalf("%+v returned with an error", bh)
			}
			return
		}
		// One spelling per set of lines: what is accepted is written back
		// as it came, in increasing ranges that do not touch.
		if got := bh.Lines.String(); got != linesHeader || len(bh.Lines) == 0 {
			t.Fatalf("lines %q read as %v, written %q", linesHeader, bh.Lines, got)
		}
		for i, r := range bh.Lines {
			if r.First == 0 || r.Last < r.First || (i > 0 && (r.First <= bh.Lines[i-1].Last || r.First == bh.Lines[i-1].Last+1)) {
				t.Fatalf("lines %q read as %v", linesHeader, bh.Lines)
			}
		}
		agency, err := messages.AgencyFromSubject(subject)
		if err != nil {
			t.Fatalf("accepted subject %q: %v", subject, err)
		}
		if bh.Agency != agency || strconv.Itoa(agency) != agencyHeader {
			t.Fatalf("agency %d, subject %q, header %q", bh.Agency, subject, agencyHeader)
		}
		if bh.Seq == 0 {
			t.Fatal("seq 0 accepted")
		}
		if n, err := strconv.ParseUint(batchHeader, 10, 64); err != nil || n != bh.Seq {
			t.Fatalf("seq %d from header %q", bh.Seq, batchHeader)
		}
	})
}

func FuzzAgencyFromSubject(f *testing.F) {
	for _, s := range []string{
		"bets.agency.1", "bets.agency.1.done", "winners.agency.12", "bets.agency.0",
		"bets.agency.01", "bets.agency.+1", "bets.agency.", "bets.agency.1.2",
		"winners.agency.-3", "foo.bar", "bets.agency.99999999999999999999",
		"bets.agency.9223372036854775807",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, subject string) {
		n, err := messages.AgencyFromSubject(subject)
		if err != nil {
			if n != 0 {
				t.Fatalf("%d returned with an error", n)
			}
			return
		}
		if n <= 0 {
			t.Fatalf("agency %d accepted", n)
		}
		// One agency has exactly one spelling: the subject is one the
		// builders make.
		if subject != messages.BatchSubject(n) && subject != messages.DoneSubject(n) && subject != messages.WinnersSubject(n) {
			t.Fatalf("subject %q accepted as agency %d", subject, n)
		}
		if p, err := messages.ParseAgency(strconv.Itoa(n)); err != nil || p != n {
			t.Fatalf("ParseAgency(%d) = %d, %v", n, p, err)
		}
	})
}

func FuzzParseBet(f *testing.F) {
	f.Add("Juan", "Perez", "30123456", "1990-05-17", "7574")
	f.Add("Perez, Juan", `O"Brien`, "000000000001", "2024-02-29", "0042")
	f.Add("Ñandú", " de la Cruz ", "1", "0000-01-01", "0")
	f.Add("", "Perez", "1", "1990-05-17", "1")
	f.Add("Ju\tan", "Perez", "1", "1990-05-17", "1")
	f.Add("Juan", "Perez", "1234567890123", "1990-05-17", "1")
	f.Add("Juan", "Perez", "1", "2023-02-30", "1")
	f.Add("Juan", "Perez", "1", "2023-2-03", "1")
	f.Add("Juan", "Perez", "1", "1990-05-17", "10000")
	f.Add("Juan", "Perez", "1", "1990-05-17", "-1")
	f.Add("Ju\xffan", "Perez", "1", "1990-05-17", "1")
	f.Fuzz(func(t *testing.T, first, last, doc, birth, number string) {
		fields := []string{first, last, doc, birth, number}
		bet, err := messages.ParseBet(7, fields)
		if err != nil {
			var fe *messages.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T), want *FieldError", err, err)
			}
			switch fe.Field {
			case "first_name", "last_name", "document", "birthdate", "number":
			default:
				t.Fatalf("field %q", fe.Field)
			}
			return
		}
		for _, name := range []string{bet.FirstName, bet.LastName} {
			if name == "" || len(name) > messages.MaxNameBytes || !utf8.ValidString(name) ||
				strings.ContainsFunc(name, unicode.IsControl) {
				t.Fatalf("name %q accepted", name)
			}
		}
		if bet.FirstName != first || bet.LastName != last || bet.Document != doc {
			t.Fatalf("fields changed: %+v from %q", bet, fields)
		}
		if n, err := strconv.Atoi(number); err != nil || n != bet.Number || n < 0 || n > messages.MaxNumber || strings.ContainsAny(number, "+-") {
			t.Fatalf("number %d from %q", bet.Number, number)
		}
		if bet.Birthdate.Format(messages.DateLayout) != birth {
			t.Fatalf("birthdate %v from %q", bet.Birthdate, birth)
		}
		row := bet.AppendRow(nil)
		again, err := messages.ParseBet(7, row)
		if err != nil || again != bet {
			t.Fatalf("ParseBet(AppendRow %q) = %+v, %v; want %+v", row, again, err, bet)
		}
		// Every valid bet fits in a message.
		enc := messages.NewBatchEncoder(7, 1)
		if added, err := enc.Add(bet); !added || err != nil {
			t.Fatalf("Add(%+v) = %v, %v", bet, added, err)
		}
		got, err := messages.DecodeBets(nil, 7, enc.Flush().Payload)
		if err != nil || len(got) != 1 || got[0] != bet {
			t.Fatalf("DecodeBets(encoded %+v) = %+v, %v", bet, got, err)
		}
	})
}
