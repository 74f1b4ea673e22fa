package messages_test

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/quiniela/quiniela/messages"
)

// storeRows is what DecodeRows must give, by its definition: DecodeBets's
// bets, each as the agency, a comma and its CSV row.
func storeRows(agency int, bets []messages.Bet) []byte {
	var out []byte
	for _, b := range bets {
		out = append(strconv.AppendInt(out, int64(agency), 10), ',')
		out = b.AppendCSV(out)
	}
	return out
}

// checkDecodeRows holds DecodeRows to DecodeBets on payload: the same rows
// (as the store writes them), the same error, dst kept, payload untouched.
func checkDecodeRows(t *testing.T, agency int, payload []byte) {
	t.Helper()
	before := bytes.Clone(payload)
	bets, betsErr := messages.DecodeBets(nil, agency, payload)
	const prefix = "kept\n"
	got, n, err := messages.DecodeRows([]byte(prefix), agency, payload)
	if !bytes.Equal(payload, before) {
		t.Fatalf("DecodeRows wrote to the payload: %q, was %q", payload, before)
	}
	if !bytes.HasPrefix(got, []byte(prefix)) {
		t.Fatalf("DecodeRows(%q) lost dst: %q", payload, got)
	}
	if (err == nil) != (betsErr == nil) || (err != nil && err.Error() != betsErr.Error()) {
		t.Fatalf("DecodeRows(%q) error %v, DecodeBets %v", payload, err, betsErr)
	}
	if err != nil {
		if string(got) != prefix || n != 0 {
			t.Fatalf("DecodeRows(%q) failed but returned %q, %d", payload, got, n)
		}
		return
	}
	if want := storeRows(agency, bets); !bytes.Equal(got[len(prefix):], want) || n != len(bets) {
		t.Fatalf("DecodeRows(%q) = %q, %d rows; want %q, %d", payload, got[len(prefix):], n, want, len(bets))
	}
}

// Rows an encoder writes are copied as they came; any other spelling is
// rewritten as the store writes it (quotes only where CSV needs them, the
// number without leading zeros, LF endings); a bad row fails as in
// DecodeBets.
func TestDecodeRowsIsStoreBetsOfDecodeBets(t *testing.T) {
	for _, payload := range []string{
		goodRow,
		goodRow + goodRow,
		"Juan,Perez,1,1990-05-17,7574\n",
		"Juan,Perez,1,1990-05-17,0\n",
		"Juan,Perez,1,1990-05-17,0042\n",
		"Juan,Perez,0001,1990-05-17,42\r\n\r\nAna,Gomez,2,1991-01-01,1",
		`"Juan","Perez",1,1990-05-17,1` + "\n",
		`"Perez, Juan","O""Brien",1,2000-02-29,1` + "\n",
		`" Ana",Gomez,1,2000-02-29,1` + "\n",
		`\.,Gomez,1,2000-02-29,1` + "\n",
		"\tAna,Gomez,1,2000-02-29,1\n",
		"Ñandú,Gómez,1,2000-02-29,1\n",
		"\u00a0Ana,Gomez,1,2000-02-29,1\n",
		"Juan,Perez,1,1990-02-30,1\n",
		"Juan,Perez,1,1990-05-17,1\nJuan,,1,1990-05-17,1\n",
		"Juan,Perez,1,1990-05-17\n",
		"",
		"\n",
	} {
		checkDecodeRows(t, 12, []byte(payload))
	}
}

// An encoder's batch is copied row for row, with the agency in front.
func TestDecodeRowsCopiesEncodedRows(t *testing.T) {
	const agency = 4
	bets := []messages.Bet{mustBet(t, agency, "Juan", "Perez", "30123456", "1990-05-17", "7574"),
		mustBet(t, agency, "Ana María", "de la Cruz", "1", "2001-01-01", "0")}
	batches := encodeAll(t, messages.NewBatchEncoder(agency, 10), bets)
	got, n, err := messages.DecodeRows(nil, agency, batches[0].Payload)
	want := "4,Juan,Perez,30123456,1990-05-17,7574\n4,Ana María,de la Cruz,1,2001-01-01,0\n"
	if err != nil || string(got) != want || n != 2 {
		t.Fatalf("DecodeRows = %q, %d, %v; want %q", got, n, err, want)
	}
}

func mustBet(t *testing.T, agency int, fields ...string) messages.Bet {
	t.Helper()
	b, err := messages.ParseBet(agency, fields)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzDecodeRows(f *testing.F) {
	for _, s := range []string{
		goodRow,
		"Juan,Perez,1,1990-05-17,0042\r\n\"Ana\",\" Gomez\",2,1991-01-01,0\n",
		"\"Perez, Juan\",\"O\"\"Brien\",0001,2000-02-29,0\n",
		"\\.,x,1,2000-01-01,1\n",
		"Juan,Perez,1,1990-02-30,1\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		checkDecodeRows(t, 7, payload)
	})
}

// AppendBetCSV is AppendCSV of ParseBet of the line's fields, errors
// included, and keeps dst.
func FuzzAppendBetCSV(f *testing.F) {
	for _, s := range []string{
		strings.TrimSuffix(goodRow, "\n"),
		"Juan,Perez,1,1990-05-17,0042",
		`"Perez, Juan","O""Brien",0001,2000-02-29,0`,
		`" Ana",\.,1,2000-02-29,1`,
		"Juan,Perez,1,1990-02-30,1",
		"Juan,Perez,1",
		`"Juan,Perez,1,1990-05-17,1`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var want []byte
		fields, err := messages.SplitRow(nil, string(line))
		if err == nil {
			var bet messages.Bet
			if bet, err = messages.ParseBet(1, fields); err == nil {
				want = bet.AppendCSV([]byte("kept,"))
			}
		}
		got, gotErr := messages.AppendBetCSV([]byte("kept,"), line)
		if (gotErr == nil) != (err == nil) || (err != nil && gotErr.Error() != err.Error()) {
			t.Fatalf("AppendBetCSV(%q) error %v, want %v", line, gotErr, err)
		}
		if err != nil {
			want = []byte("kept,")
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("AppendBetCSV(%q) = %q, want %q", line, got, want)
		}
	})
}
