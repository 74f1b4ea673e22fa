package messages

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Rows travel and are stored as encoding/csv writes them. Almost every row
// needs no quoting, and for those the per-field work of csv.Writer and
// csv.Reader is most of the cost of a bet, so both directions take a fast
// path for them and hand anything quoted to encoding/csv. Tests check that
// the fast paths agree with encoding/csv byte for byte.

// AppendCSV appends the bet's row (first_name,last_name,document,
// birthdate,number and a newline) to dst exactly as csv.Writer writes it.
func (b Bet) AppendCSV(dst []byte) []byte {
	if needsQuotes(b.FirstName) || needsQuotes(b.LastName) {
		return appendRecord(dst, b.AppendRow(nil))
	}
	dst = append(dst, b.FirstName...)
	dst = append(dst, ',')
	dst = append(dst, b.LastName...)
	dst = append(dst, ',')
	dst = append(dst, b.Document...)
	dst = append(dst, ',')
	dst = appendDate(dst, b.Birthdate)
	dst = append(dst, ',')
	dst = strconv.AppendInt(dst, int64(b.Number), 10)
	return append(dst, '\n')
}

// appendDate appends t as YYYY-MM-DD: Time.AppendFormat, which parses its
// layout on every call, was a tenth of an agency's time.
func appendDate(dst []byte, t time.Time) []byte {
	y, m, d := t.Date()
	if y < 0 || y > 9999 {
		return t.AppendFormat(dst, DateLayout)
	}
	return append(dst, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+m/10), byte('0'+m%10), '-', byte('0'+d/10), byte('0'+d%10))
}

// needsQuotes is csv.Writer's rule (fieldNeedsQuotes) for a comma-separated
// file: a field is quoted if it holds a comma, quote, CR or LF, is `\.`, or
// starts with a space. Documents, dates and numbers never need it.
func needsQuotes(field string) bool {
	if field == "" {
		return false
	}
	if field == `\.` {
		return true
	}
	for i := 0; i < len(field); i++ {
		switch field[i] {
		case ',', '"', '\r', '\n':
			return true
		}
	}
	return leadingSpace(field)
}

// leadingSpace reports whether a non-empty field starts with a space, as
// csv.Writer reads one.
func leadingSpace(field string) bool {
	if c := field[0]; c < utf8.RuneSelf {
		return c == ' ' || c == '\t' || c == '\v' || c == '\f' // unicode.IsSpace for ASCII, less \r \n
	}
	r, _ := utf8.DecodeRuneInString(field)
	return unicode.IsSpace(r)
}

// appendRecord appends fields as csv.Writer writes them: the slow path.
func appendRecord(dst []byte, fields []string) []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write(fields) // cannot fail: writes go to a bytes.Buffer
	w.Flush()
	return append(dst, buf.Bytes()...)
}

// SplitRow cuts one line (without its newline) into fields, appending them
// to dst. A line without quotes is split on commas, which is all CSV means
// for it; one with quotes goes through encoding/csv. A line is always one
// record: a quoted field cannot run into the next line.
func SplitRow(dst []string, line string) ([]string, error) {
	if fields, plain := splitPlain(dst, line); plain {
		return fields, nil
	}
	cr := csv.NewReader(strings.NewReader(line))
	cr.FieldsPerRecord = -1
	rec, err := cr.Read()
	if err != nil {
		return dst, CSVReason(err)
	}
	if _, err := cr.Read(); err != io.EOF {
		return dst, errors.New("quoted field holds a line break")
	}
	return append(dst, rec...), nil
}

// splitPlain is SplitRow for a line without quotes, in one pass: it cuts
// it on its commas, appending the fields to dst. It reports false, and dst
// as it was, for a line that holds a quote.
func splitPlain(dst []string, line string) ([]string, bool) {
	if strings.IndexByte(line, '"') >= 0 {
		return dst, false
	}
	for {
		i := strings.IndexByte(line, ',')
		if i < 0 {
			return append(dst, line), true
		}
		dst = append(dst, line[:i])
		line = line[i+1:]
	}
}

// Lines calls fn with each line of text that is not blank (without LF or
// CRLF) and its 1-based number among those lines, until fn returns false.
// Rows are numbered so in error replies: blank lines are not rows.
func Lines(text string, fn func(n int, line string) bool) {
	n := 0
	for text != "" {
		line, rest, _ := strings.Cut(text, "\n")
		text = rest
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		n++
		if !fn(n, line) {
			return
		}
	}
}
