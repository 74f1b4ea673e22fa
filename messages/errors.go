package messages

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Code is an error code the central sends in the Nats-Service-Error-Code
// header of a micro error reply, with a description in Nats-Service-Error.
// They follow HTTP's meanings, which micro tools and people already know.
type Code int

const (
	CodeMalformed     Code = 400 // headers or payload cannot be read
	CodeWrongAgency   Code = 403 // the agency in the headers is not the agency of the subject
	CodeUnknownAgency Code = 404 // the subject names no agency of this lottery (0, 99, abc)
	CodeOutOfOrder    Code = 409 // a batch skips ahead, or done before every batch arrived
	CodeClosed        Code = 410 // a row the central has not stored, after the draw: it can no longer enter
	CodeBatchMismatch Code = 412 // a row for a stored line differs from the row stored for it
	CodeTooLarge      Code = 413 // over the 8 kB rule
	CodeInvalidBet    Code = 422 // a row fails validation; the description names it
	CodeDrawPending   Code = 425 // winners asked before every agency is done: ask again
	CodeBusy          Code = 429 // too many requests of this agency queued: retry later
	CodeInternal      Code = 500 // the central failed to store; retry later
	CodeUnavailable   Code = 503 // the central is shutting down; retry later
	CodeLedgerLimit   Code = 507 // the ledger's servers, as configured, cannot store the batch: their operator must act
)

var codeNames = map[Code]string{
	CodeMalformed:     "malformed",
	CodeWrongAgency:   "wrong agency",
	CodeUnknownAgency: "unknown agency",
	CodeOutOfOrder:    "out of order",
	CodeClosed:        "lottery closed",
	CodeBatchMismatch: "batch mismatch",
	CodeTooLarge:      "too large",
	CodeInvalidBet:    "invalid bet",
	CodeDrawPending:   "draw pending",
	CodeBusy:          "busy",
	CodeInternal:      "internal",
	CodeUnavailable:   "unavailable",
	CodeLedgerLimit:   "ledger limit",
}

func (c Code) String() string {
	if n, ok := codeNames[c]; ok {
		return fmt.Sprintf("%d %s", int(c), n)
	}
	return strconv.Itoa(int(c))
}

// Retryable reports whether the same request may succeed if sent again later.
func (c Code) Retryable() bool {
	switch c {
	case CodeDrawPending, CodeBusy, CodeInternal, CodeUnavailable:
		return true
	}
	return false
}

// MaxReplyLinesBytes bounds Quiniela-Lines on an error reply, so that the
// reply fits a broker whose max_payload is 8 kB whatever the batch's gaps.
const MaxReplyLinesBytes = 1024

// HeaderNextBatch, on an out-of-order reply, is the batch the central expects next.
const HeaderNextBatch = "Quiniela-Next-Batch"

// Error is an error reply of the central, as the agency receives it.
type Error struct {
	Code        Code
	Description string
	NextBatch   uint64 // with CodeOutOfOrder: the batch the central expects
	// Lines, with CodeClosed, are the lines of the batch the central
	// has not stored and cannot store any more (header Quiniela-Lines): as
	// many leading ranges as fit in MaxReplyLinesBytes.
	Lines LineSet
	// Agency and Batch name the request the reply answers (headers
	// Quiniela-Agency, Quiniela-Batch), when the central could read them,
	// so that an agency can tell a reply to its own request from one a peer
	// made the central send to its inbox.
	Agency int
	Batch  uint64
}

// Error is one sentence: "central replied 425 draw pending: not every
// agency is done". What the description repeats of that prefix is left out:
// a central that sends an error's own text as the description (its Error(),
// or a sentinel's "draw pending: …") would otherwise have it said twice.
func (e *Error) Error() string {
	return fmt.Sprintf("central replied %v: %s", e.Code, e.reason())
}

// reason is the description without the parts Error's prefix already says.
func (e *Error) reason() string {
	d := strings.ReplaceAll(e.Description, "central replied "+e.Code.String()+": ", "")
	if name, ok := codeNames[e.Code]; ok {
		d = strings.TrimPrefix(d, name+": ")
	}
	return d
}

// Headers are the micro error headers that carry e, for micro's Request.Error.
func (e *Error) Headers() micro.Headers {
	h := micro.Headers{}
	if e.NextBatch > 0 {
		h[HeaderNextBatch] = []string{strconv.FormatUint(e.NextBatch, 10)}
	}
	if len(e.Lines) > 0 {
		h[HeaderLines] = []string{e.Lines.String()}
	}
	if e.Agency > 0 {
		h[HeaderAgency] = []string{strconv.Itoa(e.Agency)}
	}
	if e.Batch > 0 {
		h[HeaderBatch] = []string{strconv.FormatUint(e.Batch, 10)}
	}
	return h
}

// ReplyError returns the error that a reply message carries in its micro
// error headers, or nil for a success reply. nats.Conn.Request returns a
// nil error for an error reply, so every reply goes through here.
func ReplyError(msg *nats.Msg) error {
	if msg == nil {
		return errors.New("no reply")
	}
	code := msg.Header.Get(micro.ErrorCodeHeader)
	if code == "" {
		return nil
	}
	n, err := strconv.Atoi(code)
	if err != nil {
		return fmt.Errorf("central replied with error code %q: %s", code, msg.Header.Get(micro.ErrorHeader))
	}
	e := &Error{Code: Code(n), Description: msg.Header.Get(micro.ErrorHeader)}
	e.NextBatch, _ = strconv.ParseUint(msg.Header.Get(HeaderNextBatch), 10, 64)
	e.Agency, _ = strconv.Atoi(msg.Header.Get(HeaderAgency))
	e.Batch, _ = strconv.ParseUint(msg.Header.Get(HeaderBatch), 10, 64)
	e.Lines, _ = ParseLineSet(msg.Header.Get(HeaderLines))
	return e
}

// CodeOf returns the code of a central error reply in err's chain, or 0.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// RowError is a bad row of a batch payload or of an agency's file.
type RowError struct {
	Row int // 1-based row of the payload, or line of the file
	Err error
}

func (e *RowError) Error() string { return fmt.Sprintf("row %d: %v", e.Row, e.Err) }
func (e *RowError) Unwrap() error { return e.Err }

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
