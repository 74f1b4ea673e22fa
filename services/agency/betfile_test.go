package agency_test

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/agency"
)

type readResult struct {
	docs []string       // documents of the bets read, in order
	bad  map[int]string // line → error text
}

func readAll(t *testing.T, content string) readResult {
	t.Helper()
	path := writeFile(t, "agency-1.csv", content)
	f, err := agency.OpenBetFile(path, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res := readResult{bad: map[int]string{}}
	var row []byte
	for {
		row, err = f.Next(row[:0])
		if err == io.EOF {
			return res
		}
		var bad *agency.InvalidRowError
		if errors.As(err, &bad) {
			if !strings.HasPrefix(bad.Error(), path+":") {
				t.Errorf("row error %q does not start with file:line", bad)
			}
			res.bad[bad.Line] = bad.Error()
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		bets, err := messages.DecodeBets(nil, 1, row)
		if err != nil || len(bets) != 1 {
			t.Fatalf("row %q: %v, %v; want one valid bet", row, bets, err)
		}
		res.docs = append(res.docs, bets[0].Document)
	}
}

const (
	row1 = "Santiago Lionel,Lorca,30904465,1999-03-17,7574"
	row2 = "Agustin Emanuel,Zambrano,21689196,2000-05-10,9325"
)

func TestBetFile(t *testing.T) {
	long := "A" + strings.Repeat("x", 10000) + ",B,1,1990-01-01,1"
	cases := []struct {
		name    string
		content string
		docs    string         // documents read, comma-separated
		bad     map[int]string // line → text the error must contain
	}{
		{"CRLF", row1 + "\r\n" + row2 + "\r\n", "30904465,21689196", nil},
		{"LF", row1 + "\n" + row2 + "\n", "30904465,21689196", nil},
		{"mixed CRLF and LF, no final newline", row1 + "\n" + row2 + "\r\n" + row1, "30904465,21689196,30904465", nil},
		{"UTF-8 BOM", "\xef\xbb\xbf" + row1 + "\r\n", "30904465", nil},
		{"blank lines", "\r\n" + row1 + "\r\n\r\n\n" + row2 + "\n\n", "30904465,21689196", nil},
		{"empty file", "", "", nil},
		{"quoted field with a comma", `"Lorca, Santiago",Lorca,30904465,1999-03-17,1` + "\n", "30904465", nil},
		{"too few fields", "A,B,1,1990-01-01\n" + row1 + "\n", "30904465", map[int]string{1: "4 fields"}},
		{"too many fields", row1 + ",extra\n" + row2 + "\n", "21689196", map[int]string{1: "6 fields"}},
		{"unbalanced quote stays on its line", `"Santiago,Lorca,30904465,1999-03-17,7574` + "\n" + row2 + "\n", "21689196", map[int]string{1: `"`}},
		{"bare quote", `San"tiago,Lorca,30904465,1999-03-17,7574` + "\n" + row2 + "\n", "21689196", map[int]string{1: `bare "`}},
		{"impossible date", "A,B,1,2023-02-30,1\n" + row2 + "\n", "21689196", map[int]string{1: "birthdate"}},
		{"date in another format", "A,B,1,17/03/1999,1\n", "", map[int]string{1: "birthdate"}},
		{"document with letters", "A,B,12a45,1990-01-01,1\n", "", map[int]string{1: "document"}},
		{"negative number", "A,B,1,1990-01-01,-1\n", "", map[int]string{1: "number"}},
		{"non-integer number", "A,B,1,1990-01-01,12.5\n", "", map[int]string{1: "number"}},
		{"empty fields", ",,,,\n", "", map[int]string{1: "first_name"}},
		{"empty last name", "A,,1,1990-01-01,1\n", "", map[int]string{1: "last_name"}},
		{"field too long for 8 kB", long + "\n" + row2 + "\n", "21689196", map[int]string{1: "longer than"}},
		{"name over the limit", strings.Repeat("x", messages.MaxNameBytes+1) + ",B,1,1990-01-01,1\n", "", map[int]string{1: "first_name"}},
		{"invalid UTF-8", "Jos\xe9,B,1,1990-01-01,1\n" + row1 + "\n", "30904465", map[int]string{1: "UTF-8"}},
		{"line numbers count blank lines", "\n\n" + "A,B,x,1990-01-01,1\n", "", map[int]string{3: "document"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := readAll(t, tc.content)
			if got := strings.Join(res.docs, ","); got != tc.docs {
				t.Errorf("read documents %q, want %q", got, tc.docs)
			}
			if len(res.bad) != len(tc.bad) {
				t.Errorf("bad lines %v, want %v", res.bad, tc.bad)
			}
			for line, text := range tc.bad {
				if !strings.Contains(res.bad[line], text) {
					t.Errorf("line %d: error %q, want it to mention %q", line, res.bad[line], text)
				}
			}
		})
	}
}

func TestBetFileMissing(t *testing.T) {
	_, err := agency.OpenBetFile("/nonexistent/agency-1.csv", 1)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/agency-1.csv") {
		t.Fatalf("error %v, want one naming the file", err)
	}
}

// DefaultMaxAmount is as many of the shortest valid bets as one message
// holds: by default the encoder's 8 kB budget, not the count, ends a batch.
func TestDefaultMaxAmountIsAFullMessage(t *testing.T) {
	shortest, err := messages.ParseBet(1, []string{"a", "b", "1", fmt.Sprintf("%d-01-01", messages.MinBirthYear), "0"})
	if err != nil {
		t.Fatal(err)
	}
	enc := messages.NewBatchEncoder(1, 10*agency.DefaultMaxAmount)
	fit := 0
	for {
		ok, err := enc.Add(shortest)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		fit++
	}
	batch := enc.Flush()
	if size := messages.WireSize(batch.Msg().Subject, batch.Msg().Header, len(batch.Payload)); size > messages.MaxMessageBytes {
		t.Fatalf("a full batch is %d bytes on the wire", size)
	}
	if fit != agency.DefaultMaxAmount {
		t.Errorf("%d of the shortest bets fit in a message, DefaultMaxAmount is %d: make them equal", fit, agency.DefaultMaxAmount)
	}
}

// A file the agency's user may not read: the error names that user and
// what to do, as an operator needs who mounted a file into the container
// (uid 65532).
func TestBetFileUnreadableNamesTheUser(t *testing.T) {
	if os.Getuid() == 0 {
		t.Skip("SKIP: root reads any file: run as another user to test a file it may not read")
	}
	path := filepath.Join(t.TempDir(), "agency-1.csv")
	if err := os.WriteFile(path, []byte("Juan,Perez,30904465,1999-03-17,7574\n"), 0o200); err != nil {
		t.Fatal(err)
	}
	_, err := agency.OpenBetFile(path, 1)
	if !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("OpenBetFile(%s) with mode 0200: %v, want a permission error", path, err)
	}
	for _, want := range []string{"opening bets of agency 1", path, fmt.Sprintf("runs as uid %d, gid %d", os.Getuid(), os.Getgid()), "chmod o+r"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
