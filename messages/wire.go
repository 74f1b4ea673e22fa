package messages

import (
	"encoding/csv"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unsafe"

	"github.com/nats-io/nats.go"
)

// Headers every request carries. Headers, not a binary envelope, so that
// `nats sub 'bets.>'` shows a batch as readable text.
const (
	HeaderAgency  = "Quiniela-Agency"  // the sending agency, equal to the N of the subject
	HeaderBatch   = "Quiniela-Batch"   // batch sequence number of the agency: 1, 2, 3, …
	HeaderBatches = "Quiniela-Batches" // on done: how many batches the agency sent in all
	// HeaderLines (lines.go): on a batch, the file lines of its rows.
)

// The 8 kB rule: nothing that goes on the wire for one message may exceed
// MaxMessageBytes. That counts the protocol line (HPUB subject reply sizes),
// the headers, the payload and the CRLFs.
const (
	MaxMessageBytes = 8192

	// MaxReplyBytes is reserved for the reply subject the client library
	// adds (_INBOX.<22-char nuid>.<token>, or a custom inbox prefix).
	MaxReplyBytes = 128
)

// WireSize is the number of bytes a request with this subject, headers and
// payload takes on the wire, with the reply subject counted at its maximum.
func WireSize(subject string, h nats.Header, payloadLen int) int {
	return wireSize(len(subject), headerBytes(h), payloadLen)
}

// wireSize is WireSize from the sizes of the subject, the header block and
// the payload.
func wireSize(subject, hdr, payload int) int {
	total := hdr + payload
	// HPUB <subject> <reply> <hdr> <total>\r\n<headers><payload>\r\n
	return len("HPUB ") + subject + 1 + MaxReplyBytes + 1 +
		digits(hdr) + 1 + digits(total) + 2 + total + 2
}

// headerBytes is the size of h as NATS encodes it: NATS/1.0\r\n, one
// "Key: value\r\n" per value, and a closing \r\n.
func headerBytes(h nats.Header) int {
	if len(h) == 0 {
		return 0
	}
	n := len("NATS/1.0\r\n") + 2
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n
}

// HeaderBytes is the size of h as NATS encodes it, which a server's
// max_payload counts with the payload.
func HeaderBytes(h nats.Header) int { return headerBytes(h) }

func digits(n int) int { return digits64(uint64(n)) }

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

// MaxPayloadBytes is the largest payload a request on subject with headers h
// may carry under the 8 kB rule.
func MaxPayloadBytes(subject string, h nats.Header) int {
	// WireSize grows by one byte per payload byte, plus one per extra digit of
	// the total length; start from the bound and step down.
	p := MaxMessageBytes - WireSize(subject, h, 0)
	for p > 0 && WireSize(subject, h, p) > MaxMessageBytes {
		p--
	}
	return p
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

// DoneMsg is the done notification of an agency that sent batches batches.
func DoneMsg(agency int, batches uint64) *nats.Msg {
	h := nats.Header{}
	h.Set(HeaderAgency, strconv.Itoa(agency))
	h.Set(HeaderBatches, strconv.FormatUint(batches, 10))
	return &nats.Msg{Subject: DoneSubject(agency), Header: h}
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

// RowError is a bad row of a batch payload or of an agency's file.
type RowError struct {
	Row int // 1-based row of the payload, or line of the file
	Err error
}

func (e *RowError) Error() string { return fmt.Sprintf("row %d: %v", e.Row, e.Err) }
func (e *RowError) Unwrap() error { return e.Err }

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

// CSVReason drops encoding/csv's "record on line N" prefix: the caller
// names the row itself.
func CSVReason(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
