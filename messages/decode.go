package messages

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unsafe"

	"github.com/nats-io/nats.go"
)

// Decoding: a request as the central reads it, in the order it reads it,
// from DecodeBatch to the rows its store keeps. encode.go is the other
// direction, the agency's.

// BatchRequest is a batch as the central reads it off the wire.
type BatchRequest struct {
	Agency int     // from the subject and header; 0 if they could not be read
	Seq    uint64  // from the header; 0 if it could not be read
	Sum    uint64  // BatchSum of the lines and the payload
	Lines  LineSet // the file line of each row, from the header
	Stored []byte  // the bets as the store's rows (DecodeRows)
	Rows   int     // rows of the payload (what a fail line counts); the bets, if valid
}

// DecodeBatch reads a batch request whole: its size on the wire, its
// subject and headers, every row, and its checksum. The bets are appended to
// dst as the store's rows (DecodeRows). On error the request holds what
// could be read (Agency and Seq name the batch when the headers did), and no
// bets: a batch is taken whole or not at all.
func DecodeBatch(dst []byte, subject string, h nats.Header, payload []byte) (BatchRequest, error) {
	req := BatchRequest{Stored: dst}
	bh, err := DecodeBatchHeader(subject, h)
	if err != nil {
		req.Rows = countRows(payload)
		return req, err
	}
	req.Agency, req.Seq, req.Lines = bh.Agency, bh.Seq, bh.Lines
	if size := WireSize(subject, h, len(payload)); size > MaxMessageBytes {
		req.Rows = countRows(payload)
		return req, &Error{Code: CodeTooLarge,
			Description: fmt.Sprintf("batch %d of agency %d is %d bytes on the wire, over the %d-byte limit: send fewer bets per batch", bh.Seq, bh.Agency, size, MaxMessageBytes)}
	}
	stored, n, err := DecodeRows(dst, bh.Agency, payload)
	if err != nil {
		var e *Error
		if wrapped, ok := err.(*Error); ok {
			e = &Error{Code: wrapped.Code, Description: fmt.Sprintf("batch %d of agency %d: %s", bh.Seq, bh.Agency, wrapped.Description)}
		} else {
			e = &Error{Code: CodeMalformed, Description: fmt.Sprintf("batch %d of agency %d: %v", bh.Seq, bh.Agency, err)}
		}
		req.Rows = countRows(payload)
		return req, e
	}
	if lines := bh.Lines.Count(); lines != uint64(n) {
		req.Rows = n
		return req, &Error{Code: CodeMalformed,
			Description: fmt.Sprintf("batch %d of agency %d has %d rows, but header %s names %d lines: want one line per row", bh.Seq, bh.Agency, n, HeaderLines, lines)}
	}
	req.Stored, req.Rows, req.Sum = stored, n, BatchSum(h.Get(HeaderLines), payload)
	return req, nil
}

// countRows is the number of rows of a payload, as DecodeBets numbers them
// (Lines). Only a refused batch needs it, for its fail line.
func countRows(payload []byte) int {
	n := 0
	Lines(string(payload), func(int, string) bool { n++; return true })
	return n
}

// BatchHeader is what the central reads from a batch's headers.
type BatchHeader struct {
	Agency int
	Seq    uint64
	Lines  LineSet
}

// DecodeBatchHeader checks a batch request's subject and headers: the agency
// of the subject and of the header must be the same, the sequence a
// positive number, and the lines lines (ParseLineSet), at least one.
func DecodeBatchHeader(subject string, h nats.Header) (BatchHeader, error) {
	if err := headersOnce(h); err != nil {
		return BatchHeader{}, err
	}
	agency, err := agencyOf(subject, h)
	if err != nil {
		return BatchHeader{}, err
	}
	seq, err := positive(h, HeaderBatch)
	if err != nil {
		return BatchHeader{}, err
	}
	v := h.Get(HeaderLines)
	lines, err := ParseLineSet(v)
	if err == nil && len(lines) == 0 {
		err = errors.New("want the file lines of the rows, such as 1-120")
	}
	if err != nil {
		return BatchHeader{}, &Error{Code: CodeMalformed, Description: fmt.Sprintf("header %s %s: %v", HeaderLines, Clip(v), err)}
	}
	return BatchHeader{Agency: agency, Seq: seq, Lines: lines}, nil
}

// headersOnce refuses a request that carries a Quiniela-* header more than
// once, whatever the values and however the names are spelt (NATS keeps
// header names as sent: Quiniela-Batch and quiniela-batch are two keys):
// two Quiniela-Batch values leave no single batch to store.
func headersOnce(h nats.Header) error {
	var seen map[string]int
	for k, vs := range h {
		if len(k) < len(quinielaPrefix) || !strings.EqualFold(k[:len(quinielaPrefix)], quinielaPrefix) {
			continue
		}
		if seen == nil {
			seen = map[string]int{}
		}
		seen[strings.ToLower(k)] += len(vs)
	}
	for _, name := range []string{HeaderAgency, HeaderBatch, HeaderBatches, HeaderLines} {
		if n := seen[strings.ToLower(name)]; n > 1 {
			return &Error{Code: CodeMalformed, Description: fmt.Sprintf("header %s is sent %d times: send it once", name, n)}
		}
	}
	for k, n := range seen {
		if n > 1 {
			return &Error{Code: CodeMalformed, Description: fmt.Sprintf("a Quiniela-* header (%s) is sent %d times: send each once", Clip(k), n)}
		}
	}
	return nil
}

// quinielaPrefix starts the name of every header of the protocol.
const quinielaPrefix = "Quiniela-"

// agencyOf checks that the subject names an agency and that the header names
// the same one.
func agencyOf(subject string, h nats.Header) (int, error) {
	agency, err := AgencyFromSubject(subject)
	if err != nil {
		return 0, &Error{Code: CodeUnknownAgency, Description: err.Error()}
	}
	v := h.Get(HeaderAgency)
	if v != strconv.Itoa(agency) {
		return 0, &Error{Code: CodeWrongAgency, Description: fmt.Sprintf("header %s %s differs from agency %d of the subject", HeaderAgency, Clip(v), agency)}
	}
	return agency, nil
}

func positive(h nats.Header, key string) (uint64, error) {
	v := h.Get(key)
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		return 0, &Error{Code: CodeMalformed, Description: fmt.Sprintf("header %s %s: want a positive number", key, Clip(v))}
	}
	return n, nil
}

// DecodeRows validates a batch payload as DecodeBets does and appends its
// bets to dst as the store keeps them, a row each: the agency, a comma, and
// the bet's CSV row (AppendCSV). A row that is in that form already, as an
// agency's encoder writes it, is copied as it came, with no Bet built. It
// returns the rows and how many there are; on error, dst as it was.
func DecodeRows(dst []byte, agency int, payload []byte) ([]byte, int, error) {
	start := len(dst)
	var lead [24]byte
	prefix := append(strconv.AppendInt(lead[:0], int64(agency), 10), ',')
	n, err := eachBet(readOnly(payload), func(line string, fields []string, v validBet, quoted bool) {
		dst = appendValid(append(dst, prefix...), line, fields, v, quoted)
	})
	if err != nil {
		return dst[:start], 0, err
	}
	return dst, n, nil
}

// eachBet validates every row of a payload, calling fn with each valid row:
// its line, its fields, what checkBet read of them, and whether the line
// holds quotes. It fails on the first bad row, naming its line; fn has been
// called for the rows before it.
func eachBet(payload string, fn func(line string, fields []string, v validBet, quoted bool)) (int, error) {
	if len(payload) == 0 {
		return 0, &Error{Code: CodeMalformed, Description: "empty batch: want one CSV row per bet"}
	}
	var buf [Fields + 1]string
	var bad error
	rows := 0
	Lines(payload, func(n int, line string) bool {
		fields, v, quoted, err := readBet(buf[:0], line)
		if err != nil {
			bad = &Error{Code: CodeInvalidBet, Description: (&RowError{Row: n, Err: err}).Error()}
			return false
		}
		fn(line, fields, v, quoted)
		rows++
		return true
	})
	switch {
	case bad != nil:
		return 0, bad
	case rows == 0:
		return 0, &Error{Code: CodeMalformed, Description: "batch holds no bets: want one CSV row per bet"}
	}
	return rows, nil
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

// readBet cuts a line into its fields (appended to buf) and checks them by
// ParseBet's rules; quoted says whether the line holds quotes.
func readBet(buf []string, line string) (fields []string, v validBet, quoted bool, err error) {
	fields, plain := splitPlain(buf, line)
	if !plain {
		if fields, err = SplitRow(buf, line); err != nil {
			return nil, validBet{}, true, err
		}
	}
	v, err = checkBet(fields)
	return fields, v, !plain, err
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

// CSVReason drops encoding/csv's "record on line N" prefix: the caller
// names the row itself.
func CSVReason(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// appendValid appends the CSV row of a valid bet: its line as it came, if
// AppendCSV would write the same (no quotes, none needed, the number
// without leading zeros), else what AppendCSV writes. Of csv.Writer's rule
// (needsQuotes) only `\.` and a leading space can apply to a valid name
// read from a line without quotes: it holds no comma, quote, CR or LF.
func appendValid(dst []byte, line string, fields []string, v validBet, quoted bool) []byte {
	plainName := func(f string) bool { return f != `\.` && !leadingSpace(f) }
	if !quoted && plainName(fields[0]) && plainName(fields[1]) && (len(fields[4]) == 1 || fields[4][0] != '0') {
		return append(append(dst, line...), '\n')
	}
	return v.bet(0, fields).AppendCSV(dst)
}

// readOnly is b as a string that shares its memory, to read a row's fields
// in place without a copy of every line. It is sound because nothing made
// from it outlives the call that reads it (fieldErr copies what it quotes)
// and b is not written meanwhile.
func readOnly(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// DecodeBets parses a batch payload into bets of agency, appending them to
// dst. It fails on the first bad row, naming its line, and then returns no
// bets: a batch is stored whole or not at all.
func DecodeBets(dst []Bet, agency int, payload []byte) ([]Bet, error) {
	start := len(dst)
	// One string for the whole payload: the bets' fields are slices of it.
	_, err := eachBet(string(payload), func(_ string, fields []string, v validBet, _ bool) {
		dst = append(dst, v.bet(agency, fields))
	})
	if err != nil {
		return dst[:start], err
	}
	return dst, nil
}

// DecodeDone reads a done request: its agency and the number of batches the
// agency says it sent.
func DecodeDone(subject string, h nats.Header) (agency int, batches uint64, err error) {
	if err := headersOnce(h); err != nil {
		return 0, 0, err
	}
	agency, err = agencyOf(subject, h)
	if err != nil {
		return 0, 0, err
	}
	v := h.Get(HeaderBatches)
	batches, err = strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, 0, &Error{Code: CodeMalformed, Description: fmt.Sprintf("header %s %s: want the number of batches sent (0 or more)", HeaderBatches, Clip(v))}
	}
	return agency, batches, nil
}
