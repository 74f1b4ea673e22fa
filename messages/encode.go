package messages

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
)

// Encoding: an agency's bets into batch requests, and its done notification.
// decode.go is the other direction, the central's.

// Batch is an encoded batch of one agency, ready to send.
type Batch struct {
	Agency  int
	Seq     uint64 // 1 for the agency's first batch
	Bets    int
	Lines   LineSet // the file lines of its rows, one per bet
	Payload []byte  // CSV rows, LF-terminated
}

// Msg is the batch as a NATS request message.
func (b *Batch) Msg() *nats.Msg {
	h := batchHeader(b.Agency, b.Seq)
	h.Set(HeaderLines, b.Lines.String())
	return &nats.Msg{
		Subject: BatchSubject(b.Agency),
		Header:  h,
		Data:    b.Payload,
	}
}

func batchHeader(agency int, seq uint64) nats.Header {
	h := nats.Header{}
	h.Set(HeaderAgency, strconv.Itoa(agency))
	h.Set(HeaderBatch, strconv.FormatUint(seq, 10))
	return h
}

// ErrBetTooLarge is returned for a bet whose row alone cannot fit in a
// message. Bets that pass ParseBet always fit: their fields are bounded
// (MaxNameBytes, MaxDocDigits, MaxNumber) to a row of a few hundred bytes.
var ErrBetTooLarge = errors.New("bet does not fit in one 8 kB message")

// BatchEncoder cuts an agency's bets into batches of at most maxAmount bets
// and at most MaxMessageBytes on the wire. It numbers them 1, 2, 3, ….
// Use: Add until it reports false, Flush, Add the same bet again.
type BatchEncoder struct {
	agency    int
	maxAmount int
	subject   int // bytes of the subject
	header    int // bytes of the next batch's header block, Quiniela-Lines empty

	seq      uint64
	n        int
	payload  []byte
	lines    LineSet // of the rows in payload
	linesLen int     // of lines as HeaderLines writes it
	nextLine uint64
	row      []byte   // Add's scratch
	free     [][]byte // payloads of released batches, for the next ones
}

// NewBatchEncoder returns an encoder for agency's batches, numbered from 1.
func NewBatchEncoder(agency, maxAmount int) *BatchEncoder {
	e := &BatchEncoder{agency: agency, maxAmount: max(maxAmount, 1), seq: 1, nextLine: 1}
	e.setBudget()
	return e
}

// setBudget measures the subject and the header block of the next batch
// with an empty Quiniela-Lines (the sequence number grows a digit now and
// then), to which the value of Quiniela-Lines adds byte for byte.
func (e *BatchEncoder) setBudget() {
	h := batchHeader(e.agency, e.seq)
	h.Set(HeaderLines, "")
	e.subject, e.header = len(BatchSubject(e.agency)), headerBytes(h)
}

// Add appends bet to the current batch. It returns false, adding nothing,
// when the batch is full (maxAmount bets, or no room for the row); call Flush
// and Add it again. It fails with ErrBetTooLarge when even an empty batch
// cannot take the row.
func (e *BatchEncoder) Add(bet Bet) (bool, error) {
	e.row = bet.AppendCSV(e.row[:0])
	return e.AddCSV(e.row)
}

// AddCSV is Add for a bet given as its CSV row, as AppendCSV (or
// AppendBetCSV) writes it, from the line after the last bet's.
func (e *BatchEncoder) AddCSV(row []byte) (bool, error) {
	return e.AddCSVAt(row, e.nextLine)
}

// AddCSVAt is AddCSV for the bet of line of the agency's file, which must
// come after the line of every bet added before.
func (e *BatchEncoder) AddCSVAt(row []byte, line uint64) (bool, error) {
	if line < e.nextLine || line == 0 {
		return false, fmt.Errorf("adding the bet of line %d after line %d: want increasing lines", line, e.nextLine-1)
	}
	if e.n == e.maxAmount {
		return false, nil
	}
	linesLen := linesLenAfterAdd(e.linesLen, e.lines, line)
	if size := wireSize(e.subject, e.header+linesLen, len(e.payload)+len(row)); size > MaxMessageBytes {
		if e.n == 0 {
			return false, fmt.Errorf("%w: row of %d bytes makes a batch of %d bytes on the wire", ErrBetTooLarge, len(row), size)
		}
		return false, nil
	}
	e.payload = append(e.payload, row...)
	e.lines, e.linesLen, e.nextLine = e.lines.Add(line), linesLen, line+1
	e.n++
	return true, nil
}

// Len is the number of bets in the current batch.
func (e *BatchEncoder) Len() int { return e.n }

// Flush returns the current batch and starts the next one. It returns nil
// when the batch is empty.
func (e *BatchEncoder) Flush() *Batch {
	if e.n == 0 {
		return nil
	}
	var payload []byte
	if n := len(e.free); n > 0 {
		payload, e.free = e.free[n-1][:0], e.free[:n-1]
	}
	b := &Batch{
		Agency:  e.agency,
		Seq:     e.seq,
		Bets:    e.n,
		Lines:   e.lines,
		Payload: append(payload, e.payload...),
	}
	e.payload = e.payload[:0]
	e.lines, e.linesLen = nil, 0
	e.n = 0
	e.seq++
	e.setBudget()
	return b
}

// Release gives the payload of b, a batch of this encoder, back for a later
// batch: b must not be used after. An agency releases a batch once it is
// acknowledged, so that its batches in flight reuse a window's worth of
// memory instead of touching fresh pages for every one.
func (e *BatchEncoder) Release(b *Batch) {
	e.free = append(e.free, b.Payload)
	b.Payload = nil
}

// DoneMsg is the done notification of an agency that sent batches batches.
func DoneMsg(agency int, batches uint64) *nats.Msg {
	h := nats.Header{}
	h.Set(HeaderAgency, strconv.Itoa(agency))
	h.Set(HeaderBatches, strconv.FormatUint(batches, 10))
	return &nats.Msg{Subject: DoneSubject(agency), Header: h}
}

// AppendBetCSV validates line, one line of an agency's file without its
// line end, by ParseBet's rules, and appends the bet's CSV row (AppendCSV)
// to dst: the line itself, when it is in that form already.
func AppendBetCSV(dst []byte, line []byte) ([]byte, error) {
	text := readOnly(line)
	var buf [Fields + 1]string
	fields, v, quoted, err := readBet(buf[:0], text)
	if err != nil {
		return dst, err
	}
	return appendValid(dst, text, fields, v, quoted), nil
}

// Rows travel and are stored as encoding/csv writes them. Almost every row
// needs no quoting, and for those the per-field work of csv.Writer and
// csv.Reader is most of the cost of a bet, so both directions (AppendCSV
// here, splitPlain in decode.go) take a fast path for them and hand
// anything quoted to encoding/csv. Tests check that the fast paths agree
// with encoding/csv byte for byte.

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
