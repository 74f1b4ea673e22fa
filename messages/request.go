package messages

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
)

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

// MaxDescriptionBytes bounds an error description: one line that names the
// header, field or row at fault, far under any broker's header limit.
const MaxDescriptionBytes = 200

// Describe makes s fit an error description: valid UTF-8, no control bytes
// (each becomes a space), at most MaxDescriptionBytes, cut at a rune with
// "…".
func Describe(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c >= utf8.RuneSelf {
			clean = false
			break
		}
	}
	if clean && len(s) <= MaxDescriptionBytes {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r == utf8.RuneError || r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			r = ' '
		}
		if b.Len()+utf8.RuneLen(r) > MaxDescriptionBytes-len("…") {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// clipBytes is how much of a value a peer sent an error quotes.
const clipBytes = 40

// Clip quotes a value a peer sent for an error description or a log line:
// Go-quoted, and cut to 40 bytes of the original with "…" after the quote.
func Clip(v string) string {
	if cut, short := cutAt(v, clipBytes); !short {
		return fmt.Sprintf("%q…", cut)
	}
	return fmt.Sprintf("%q", v)
}

// cutAt is v cut to at most n bytes without splitting a character, and
// whether v was that short already.
func cutAt(v string, n int) (string, bool) {
	if len(v) <= n {
		return v, true
	}
	for n > 0 && !utf8.RuneStart(v[n]) {
		n--
	}
	return v[:n], false
}
