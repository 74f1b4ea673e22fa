package messages_test

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/quiniela/quiniela/messages"
)

// encodeAll runs bets through enc the documented way (Add until false, Flush,
// Add again) and returns the batches.
func encodeAll(t testing.TB, enc *messages.BatchEncoder, bets []messages.Bet) []*messages.Batch {
	t.Helper()
	var out []*messages.Batch
	for i, bet := range bets {
		for tries := 0; ; tries++ {
			added, err := enc.Add(bet)
			if err != nil {
				t.Fatalf("Add(bet %d %+v): %v", i, bet, err)
			}
			if added {
				break
			}
			if tries > 0 {
				t.Fatalf("Add(bet %d) refused by a fresh batch without an error", i)
			}
			b := enc.Flush()
			if b == nil {
				t.Fatalf("Add(bet %d) refused, yet Flush returned nil", i)
			}
			out = append(out, b)
		}
	}
	if b := enc.Flush(); b != nil {
		out = append(out, b)
	}
	if b := enc.Flush(); b != nil {
		t.Fatalf("second Flush returned %+v, want nil", b)
	}
	return out
}

// csvRow is the row of bet as a standard CSV writer puts it.
func csvRow(bet messages.Bet) []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write(bet.AppendRow(nil))
	w.Flush()
	return b.Bytes()
}

func batchHeader(agency int, seq uint64) nats.Header {
	h := nats.Header{}
	h.Set(messages.HeaderAgency, strconv.Itoa(agency))
	h.Set(messages.HeaderBatch, strconv.FormatUint(seq, 10))
	return h
}

// runes to build names from, of 1 to 4 bytes, with those CSV must quote.
var nameRunes = []rune{'a', 'Z', 'm', ' ', ',', '"', '\'', 'ñ', 'é', 'Ü', '€', 'ㅎ', '😀', '𝄞', '\u2028', '\ufeff'}

// randName returns a valid name of about n bytes (1 to 100).
func randName(r *rand.Rand, n int) string {
	var b strings.Builder
	for b.Len() < n {
		c := nameRunes[r.IntN(len(nameRunes))]
		if b.Len()+utf8.RuneLen(c) > n {
			c = 'x'
		}
		b.WriteRune(c)
	}
	return b.String()
}

func randNameLen(r *rand.Rand) int {
	switch r.IntN(4) {
	case 0:
		return 1
	case 1:
		return messages.MaxNameBytes
	default:
		return 1 + r.IntN(messages.MaxNameBytes)
	}
}

func randDigits(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + r.IntN(10))
	}
	return string(b)
}

// randBet returns a random valid bet of agency, made through ParseBet.
func randBet(t testing.TB, r *rand.Rand, agency int) messages.Bet {
	t.Helper()
	number := strconv.Itoa(r.IntN(messages.MaxNumber + 1))
	if r.IntN(10) == 0 {
		number = fmt.Sprintf("%04s", number) // leading zeros
	}
	name := func() string {
		for {
			if n := randName(r, randNameLen(r)); strings.TrimSpace(n) != "" {
				return n // a blank name is invalid
			}
		}
	}
	fields := []string{
		name(),
		name(),
		randDigits(r, 1+r.IntN(messages.MaxDocDigits)),
		fmt.Sprintf("%04d-%02d-%02d", 1900+r.IntN(125), 1+r.IntN(12), 1+r.IntN(28)),
		number,
	}
	bet, err := messages.ParseBet(agency, fields)
	if err != nil {
		t.Fatalf("ParseBet(%q): %v", fields, err)
	}
	return bet
}

// checkBatches asserts the invariants of the batches that encoded bets.
// It returns how many batches the byte limit cut.
func checkBatches(t *testing.T, agency, maxAmount int, bets []messages.Bet, batches []*messages.Batch) (byteCuts int) {
	t.Helper()
	var decoded []messages.Bet
	next := 0 // index in bets of the first bet of the batch
	for i, b := range batches {
		if b.Agency != agency {
			t.Fatalf("batch %d: agency %d, want %d", i, b.Agency, agency)
		}
		if want := uint64(i + 1); b.Seq != want {
			t.Fatalf("batch %d: seq %d, want %d", i, b.Seq, want)
		}
		if b.Bets < 1 || b.Bets > maxAmount {
			t.Fatalf("batch %d: %d bets, want 1 to %d", i, b.Bets, maxAmount)
		}
		m := b.Msg()
		if m.Subject != messages.BatchSubject(agency) {
			t.Fatalf("batch %d: subject %q", i, m.Subject)
		}
		// Add numbers the bets' lines 1, 2, 3, …
		want := batchHeader(agency, b.Seq)
		want.Set(messages.HeaderLines, messages.LineSet{{First: uint64(next + 1), Last: uint64(next + b.Bets)}}.String())
		if !reflect.DeepEqual(m.Header, want) {
			t.Fatalf("batch %d: header %v, want %v", i, m.Header, want)
		}
		if !bytes.Equal(m.Data, b.Payload) {
			t.Fatalf("batch %d: Msg().Data differs from Payload", i)
		}
		size := messages.WireSize(m.Subject, m.Header, len(b.Payload))
		if size > messages.MaxMessageBytes {
			t.Fatalf("batch %d: WireSize %d > %d", i, size, messages.MaxMessageBytes)
		}
		real := len(wireBytes(m, replySubject))
		if real > messages.MaxMessageBytes {
			t.Fatalf("batch %d: %d bytes on the wire > %d", i, real, messages.MaxMessageBytes)
		}
		if real != size {
			t.Fatalf("batch %d: WireSize %d, but %d bytes on the wire with a %d-byte reply", i, size, real, len(replySubject))
		}
		got, err := messages.DecodeBets(nil, agency, b.Payload)
		if err != nil {
			t.Fatalf("batch %d: DecodeBets: %v\npayload %q", i, err, b.Payload)
		}
		if len(got) != b.Bets {
			t.Fatalf("batch %d: Bets %d, payload holds %d", i, b.Bets, len(got))
		}
		decoded = append(decoded, got...)
		next += b.Bets
		// Greedy: a batch that is not full by count could not have taken
		// the next bet.
		if i < len(batches)-1 && b.Bets < maxAmount {
			grown := len(b.Payload) + len(csvRow(bets[next]))
			h := batchHeader(agency, b.Seq)
			h.Set(messages.HeaderLines, messages.LineSet{{First: uint64(next - b.Bets + 1), Last: uint64(next + 1)}}.String())
			if s := messages.WireSize(m.Subject, h, grown); s <= messages.MaxMessageBytes {
				t.Fatalf("batch %d: cut at %d bets and %d bytes, but the next row fits (%d bytes on the wire)", i, b.Bets, size, s)
			}
			byteCuts++
		}
	}
	if len(decoded) != len(bets) {
		t.Fatalf("decoded %d bets, encoded %d", len(decoded), len(bets))
	}
	for i := range bets {
		if decoded[i] != bets[i] {
			t.Fatalf("bet %d: decoded %+v, encoded %+v", i, decoded[i], bets[i])
		}
	}
	return byteCuts
}

// TestEncoderProperties encodes many random sequences of bets and checks
// every batch against the 8 kB rule, counts, sequence numbers and the round
// trip through DecodeBets.
func TestEncoderProperties(t *testing.T) {
	if len(replySubject) != messages.MaxReplyBytes {
		t.Fatalf("reply subject of %d bytes, want %d", len(replySubject), messages.MaxReplyBytes)
	}
	r := rand.New(rand.NewPCG(2024, 7))
	agencies := []int{1, 7, 42, 999, 123456789}
	sequences, batches, bets, byteCuts := 200, 0, 0, 0
	if testing.Short() {
		sequences = 40
	}
	for s := 0; s < sequences; s++ {
		agency := agencies[r.IntN(len(agencies))]
		maxAmount := 1 + r.IntN(500)
		n := r.IntN(1200)
		in := make([]messages.Bet, n)
		for i := range in {
			in[i] = randBet(t, r, agency)
		}
		out := encodeAll(t, messages.NewBatchEncoder(agency, maxAmount), in)
		if n == 0 && len(out) != 0 {
			t.Fatalf("sequence %d: no bets gave %d batches", s, len(out))
		}
		byteCuts += checkBatches(t, agency, maxAmount, in, out)
		batches += len(out)
		bets += n
	}
	t.Logf("%d sequences, %d bets, %d batches, %d cut by bytes", sequences, bets, batches, byteCuts)
	if byteCuts == 0 || byteCuts == batches {
		t.Errorf("%d of %d batches cut by bytes: the sequences should exercise both cuts", byteCuts, batches)
	}
}

// TestEncoderWireRealClient sends batches near the limit through the real
// nats.go client and counts the bytes it writes.
func TestEncoderWireRealClient(t *testing.T) {
	w := newNATSWire(t)
	r := rand.New(rand.NewPCG(1, 2))
	for _, agency := range []int{1, 99, 123456789} {
		var in []messages.Bet
		for range 300 {
			in = append(in, randBet(t, r, agency))
		}
		out := encodeAll(t, messages.NewBatchEncoder(agency, 1000), in)
		msgs := make([]*nats.Msg, len(out))
		for i, b := range out {
			msgs[i] = b.Msg()
		}
		for i, raw := range w.publish(t, msgs...) {
			if len(raw) > messages.MaxMessageBytes {
				t.Errorf("agency %d batch %d: the client wrote %d bytes, over %d", agency, out[i].Seq, len(raw), messages.MaxMessageBytes)
			}
			if ws := messages.WireSize(msgs[i].Subject, msgs[i].Header, len(msgs[i].Data)); ws != len(raw) {
				t.Errorf("agency %d batch %d: WireSize %d, the client wrote %d", agency, out[i].Seq, ws, len(raw))
			}
		}
	}
}

func bet(t testing.TB, first, last string) messages.Bet {
	t.Helper()
	b, err := messages.ParseBet(1, []string{first, last, "30123456", "1990-05-17", "7574"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sizes(batches []*messages.Batch) []int {
	s := make([]int, len(batches))
	for i, b := range batches {
		s[i] = b.Bets
	}
	return s
}

func TestEncoderCutsAtMaxAmount(t *testing.T) {
	tests := []struct {
		maxAmount, bets int
		want            []int
	}{
		{3, 7, []int{3, 3, 1}},
		{3, 6, []int{3, 3}},
		{1, 3, []int{1, 1, 1}},
		{10, 1, []int{1}},
		{0, 2, []int{1, 1}},  // maxAmount below 1 counts as 1
		{-5, 2, []int{1, 1}}, // idem
	}
	for _, tt := range tests {
		var in []messages.Bet
		for i := range tt.bets {
			in = append(in, bet(t, "Juan", fmt.Sprint("Perez", i)))
		}
		out := encodeAll(t, messages.NewBatchEncoder(1, tt.maxAmount), in)
		if got := sizes(out); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("maxAmount %d, %d bets: batches of %v, want %v", tt.maxAmount, tt.bets, got, tt.want)
		}
		checkBatches(t, 1, max(tt.maxAmount, 1), in, out)
	}
}

func TestEncoderAddFalseWhenFull(t *testing.T) {
	enc := messages.NewBatchEncoder(1, 2)
	for i, want := range []bool{true, true, false, false} {
		added, err := enc.Add(bet(t, "Juan", "Perez"))
		if err != nil || added != want {
			t.Fatalf("Add %d = %v, %v; want %v, nil", i, added, err, want)
		}
	}
	if enc.Len() != 2 {
		t.Fatalf("Len = %d, want 2", enc.Len())
	}
	b := enc.Flush()
	if b == nil || b.Bets != 2 || b.Seq != 1 {
		t.Fatalf("Flush = %+v, want 2 bets, seq 1", b)
	}
	if enc.Len() != 0 {
		t.Fatalf("Len after Flush = %d", enc.Len())
	}
	if added, err := enc.Add(bet(t, "Juan", "Perez")); !added || err != nil {
		t.Fatalf("Add after Flush = %v, %v", added, err)
	}
	if b := enc.Flush(); b == nil || b.Seq != 2 || b.Bets != 1 {
		t.Fatalf("second Flush = %+v, want seq 2 with 1 bet", b)
	}
}

// A released batch's memory carries a later batch, whose payload is its
// own rows only; batches not released keep theirs.
func TestEncoderReusesReleasedPayloads(t *testing.T) {
	enc := messages.NewBatchEncoder(1, 1)
	flush := func(first string) *messages.Batch {
		t.Helper()
		if added, err := enc.Add(bet(t, first, "Perez")); !added || err != nil {
			t.Fatalf("Add = %v, %v", added, err)
		}
		return enc.Flush()
	}
	long := flush("Maximiliano Sebastián")
	kept := flush("Ana")
	keptPayload := string(kept.Payload)
	reused := &long.Payload[:1][0]
	enc.Release(long)
	if long.Payload != nil {
		t.Error("a released batch keeps its payload")
	}
	next := flush("Juan")
	if &next.Payload[:1][0] != reused {
		t.Error("the next batch did not reuse the released payload")
	}
	if want := "Juan,Perez,30123456,1990-05-17,7574\n"; string(next.Payload) != want {
		t.Errorf("reused payload %q, want %q", next.Payload, want)
	}
	if string(kept.Payload) != keptPayload {
		t.Errorf("a batch not released changed: %q, was %q", kept.Payload, keptPayload)
	}
}

func TestEncoderCutsByBytes(t *testing.T) {
	long := strings.Repeat("n", messages.MaxNameBytes)
	var in []messages.Bet
	for range 1000 {
		in = append(in, bet(t, long, long))
	}
	rowLen := len(csvRow(in[0]))
	out := encodeAll(t, messages.NewBatchEncoder(1, 1000), in)
	if len(out) < 2 {
		t.Fatalf("%d batches of 1000 rows of %d bytes: want a cut by bytes", len(out), rowLen)
	}
	checkBatches(t, 1, 1000, in, out)
	for _, b := range out[:len(out)-1] {
		m := b.Msg()
		size := messages.WireSize(m.Subject, m.Header, len(b.Payload))
		if size > messages.MaxMessageBytes || size+rowLen <= messages.MaxMessageBytes {
			t.Errorf("batch %d: %d bytes with %d-byte rows; want over %d and at most %d", b.Seq, size, rowLen, messages.MaxMessageBytes-rowLen, messages.MaxMessageBytes)
		}
		if len(b.Payload) != b.Bets*rowLen {
			t.Errorf("batch %d: payload %d bytes for %d rows of %d", b.Seq, len(b.Payload), b.Bets, rowLen)
		}
	}
}

// TestEncoderTinyRows fills batches with the smallest rows: the byte limit,
// not maxAmount, cuts them, through the sequence numbers growing a digit.
func TestEncoderTinyRows(t *testing.T) {
	tiny, err := messages.ParseBet(5, []string{"a", "b", "1", "2000-01-01", "0"})
	if err != nil {
		t.Fatal(err)
	}
	rowLen := len(csvRow(tiny))
	if rowLen != len("a,b,1,2000-01-01,0\n") {
		t.Fatalf("row of %d bytes", rowLen)
	}
	perBatch := 8192 / rowLen
	in := make([]messages.Bet, perBatch*105) // past batch 100
	for i := range in {
		in[i] = tiny
	}
	out := encodeAll(t, messages.NewBatchEncoder(5, 1_000_000), in)
	checkBatches(t, 5, 1_000_000, in, out)
	if len(out) < 100 {
		t.Fatalf("%d batches, want 100 or more", len(out))
	}
	for _, b := range out[:len(out)-1] {
		m := b.Msg()
		room := messages.MaxPayloadBytes(m.Subject, m.Header) - len(b.Payload)
		if room < 0 || room >= rowLen {
			t.Errorf("batch %d: %d payload bytes left, want 0 to %d", b.Seq, room, rowLen-1)
		}
	}
}

func TestMaxPayloadBytes(t *testing.T) {
	for _, agency := range []int{1, 12, 123456789} {
		for _, seq := range []uint64{1, 9, 10, 99, 100, 1 << 40} {
			h := batchHeader(agency, seq)
			subject := messages.BatchSubject(agency)
			p := messages.MaxPayloadBytes(subject, h)
			if got := messages.WireSize(subject, h, p); got != messages.MaxMessageBytes {
				// The payload may stop one short only where one more byte
				// adds a digit to the length; not at these sizes.
				t.Errorf("agency %d seq %d: WireSize(MaxPayloadBytes=%d) = %d, want %d", agency, seq, p, got, messages.MaxMessageBytes)
			}
			if got := messages.WireSize(subject, h, p+1); got <= messages.MaxMessageBytes {
				t.Errorf("agency %d seq %d: one byte more is %d on the wire, within the limit", agency, seq, got)
			}
			m := &nats.Msg{Subject: subject, Header: h, Data: make([]byte, p)}
			if real := len(wireBytes(m, replySubject)); real != messages.MaxMessageBytes {
				t.Errorf("agency %d seq %d: %d bytes really on the wire, want %d", agency, seq, real, messages.MaxMessageBytes)
			}
		}
	}
}

// TestEncoderExactFit: a row that fills the payload budget to the byte is
// taken; one byte more is refused as too large.
func TestEncoderExactFit(t *testing.T) {
	h := batchHeader(1, 1)
	h.Set(messages.HeaderLines, "1")
	budget := messages.MaxPayloadBytes(messages.BatchSubject(1), h)
	base := messages.Bet{FirstName: "", LastName: "b", Document: "1", Birthdate: date(t, "2000-01-01"), Number: 0}
	fill := budget - len(csvRow(base)) // bytes of first name that fill the budget
	exact := base
	exact.FirstName = strings.Repeat("a", fill)
	if n := len(csvRow(exact)); n != budget {
		t.Fatalf("row of %d bytes, budget %d", n, budget)
	}
	enc := messages.NewBatchEncoder(1, 10)
	if added, err := enc.Add(exact); !added || err != nil {
		t.Fatalf("Add(row of exactly %d bytes) = %v, %v; want true, nil", budget, added, err)
	}
	b := enc.Flush()
	if ws := messages.WireSize(b.Msg().Subject, b.Msg().Header, len(b.Payload)); ws != messages.MaxMessageBytes {
		t.Errorf("exact batch: WireSize %d, want %d", ws, messages.MaxMessageBytes)
	}

	over := exact
	over.FirstName += "a"
	enc = messages.NewBatchEncoder(1, 10)
	if added, err := enc.Add(over); added || !errors.Is(err, messages.ErrBetTooLarge) {
		t.Fatalf("Add(row of %d bytes, budget %d) = %v, %v; want false, ErrBetTooLarge", budget+1, budget, added, err)
	}
}

func TestEncoderBetTooLarge(t *testing.T) {
	huge := messages.Bet{Agency: 1, FirstName: strings.Repeat("a", 9000), LastName: "b", Document: "1", Birthdate: date(t, "2000-01-01"), Number: 1}
	enc := messages.NewBatchEncoder(1, 10)
	added, err := enc.Add(huge)
	if added || !errors.Is(err, messages.ErrBetTooLarge) {
		t.Fatalf("Add(9000-byte name) on an empty batch = %v, %v; want false, ErrBetTooLarge", added, err)
	}
	if enc.Len() != 0 || enc.Flush() != nil {
		t.Fatalf("the refused bet was kept")
	}
	// In a batch that already holds a bet, the encoder only says "full";
	// the fresh batch after Flush then refuses it for good.
	if added, err := enc.Add(bet(t, "Juan", "Perez")); !added || err != nil {
		t.Fatalf("Add(small) = %v, %v", added, err)
	}
	if added, err := enc.Add(huge); added || err != nil {
		t.Fatalf("Add(huge) on a non-empty batch = %v, %v; want false, nil", added, err)
	}
	b := enc.Flush()
	if b == nil || b.Bets != 1 || b.Seq != 1 {
		t.Fatalf("Flush = %+v", b)
	}
	if added, err := enc.Add(huge); added || !errors.Is(err, messages.ErrBetTooLarge) {
		t.Fatalf("Add(huge) after Flush = %v, %v; want false, ErrBetTooLarge", added, err)
	}
	// The refused bet used no sequence number.
	if added, err := enc.Add(bet(t, "Ana", "Gomez")); !added || err != nil {
		t.Fatalf("Add(small) = %v, %v", added, err)
	}
	if b := enc.Flush(); b == nil || b.Seq != 2 {
		t.Fatalf("next batch %+v, want seq 2", b)
	}
}

func TestEncoderFlushEmpty(t *testing.T) {
	enc := messages.NewBatchEncoder(3, 10)
	if b := enc.Flush(); b != nil {
		t.Fatalf("Flush on a new encoder = %+v, want nil", b)
	}
	if b := enc.Flush(); b != nil {
		t.Fatalf("second Flush = %+v, want nil", b)
	}
	enc.Add(bet(t, "Juan", "Perez"))
	if b := enc.Flush(); b == nil || b.Seq != 1 {
		t.Fatalf("empty Flushes used sequence numbers: first batch %+v, want seq 1", b)
	}
}

// TestBatchPayloadIsCopied: a Batch keeps its payload after the encoder goes on.
func TestBatchPayloadIsCopied(t *testing.T) {
	enc := messages.NewBatchEncoder(1, 1)
	enc.Add(bet(t, "Juan", "Perez"))
	b1 := enc.Flush()
	want := string(b1.Payload)
	enc.Add(bet(t, "Zzzzzzzzz", "Yyyyyyyyyyy"))
	enc.Flush()
	if string(b1.Payload) != want {
		t.Fatalf("first payload changed to %q, was %q", b1.Payload, want)
	}
	if want != "Juan,Perez,30123456,1990-05-17,7574\n" {
		t.Fatalf("payload %q", want)
	}
}

// TestEncoderQuotesOnlyWhereNeeded pins the row format of the wire contract.
func TestEncoderQuotesOnlyWhereNeeded(t *testing.T) {
	tests := []struct{ first, last, row string }{
		{"Juan", "Perez", "Juan,Perez,30123456,1990-05-17,7574\n"},
		{"Perez, Juan", "Ñandú", "\"Perez, Juan\",Ñandú,30123456,1990-05-17,7574\n"},
		{`O"Brien`, "de la Cruz", "\"O\"\"Brien\",de la Cruz,30123456,1990-05-17,7574\n"},
		{" Ana", "Gomez", "\" Ana\",Gomez,30123456,1990-05-17,7574\n"},
	}
	for _, tt := range tests {
		enc := messages.NewBatchEncoder(1, 10)
		if added, err := enc.Add(bet(t, tt.first, tt.last)); !added || err != nil {
			t.Fatal(added, err)
		}
		if got := string(enc.Flush().Payload); got != tt.row {
			t.Errorf("row of %q %q = %q, want %q", tt.first, tt.last, got, tt.row)
		}
	}
}

// TestLargestValidBetFits: the longest row ParseBet allows fits in a batch of
// its own, even for the longest agency number; doc.go quotes these numbers.
func TestLargestValidBetFits(t *testing.T) {
	quotes := strings.Repeat(`"`, messages.MaxNameBytes)
	worst, err := messages.ParseBet(math.MaxInt, []string{quotes, quotes, "999999999999", "1999-12-31", "9999"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(csvRow(worst)); n != 435 {
		t.Errorf("longest row of %d bytes; doc.go says 435", n)
	}
	enc := messages.NewBatchEncoder(math.MaxInt, 1)
	if added, err := enc.Add(worst); !added || err != nil {
		t.Fatalf("Add(longest valid bet) = %v, %v", added, err)
	}
	b := enc.Flush()
	got, err := messages.DecodeBets(nil, math.MaxInt, b.Payload)
	if err != nil || len(got) != 1 || got[0] != worst {
		t.Fatalf("DecodeBets = %+v, %v", got, err)
	}
	h := batchHeader(1, 1)
	h.Set(messages.HeaderLines, "1-170")
	if n := len(wireBytes(&nats.Msg{Subject: "x", Header: h}, "")) - len("HPUB x  74 74\r\n\r\n"); n != 74 {
		t.Errorf("agency 1's first batch headers take %d bytes; doc.go says 74", n)
	}
	if p := messages.MaxPayloadBytes(messages.BatchSubject(1), h); p != 7959 {
		t.Errorf("agency 1's first batch may carry %d payload bytes; doc.go says 7959", p)
	}
}

// TestDocCodeTable: doc.go's table has a line for every code, with its
// number, name and whether it is retryable.
func TestDocCodeTable(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	lines := map[int]string{}
	for _, l := range strings.Split(string(doc), "\n") {
		f := strings.Fields(strings.TrimPrefix(l, "//"))
		if len(f) > 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n >= 400 && n < 600 {
				lines[n] = l
			}
		}
	}
	named := 0
	for c := messages.Code(400); c < 600; c++ {
		if c.String() == strconv.Itoa(int(c)) {
			if _, ok := lines[int(c)]; ok {
				t.Errorf("doc.go lists code %d, which the package does not name", int(c))
			}
			continue
		}
		named++
		l, ok := lines[int(c)]
		if !ok {
			t.Errorf("doc.go has no line for code %v", c)
			continue
		}
		name := strings.TrimPrefix(c.String(), strconv.Itoa(int(c))+" ")
		if !strings.Contains(l, " "+name+" ") {
			t.Errorf("doc.go line %q does not name code %v", l, c)
		}
		if yes := strings.HasSuffix(strings.TrimSpace(l), " yes"); yes != c.Retryable() {
			t.Errorf("doc.go line %q: retryable %v, Retryable() %v", l, yes, c.Retryable())
		}
	}
	if named < 12 {
		t.Errorf("only %d named codes", named)
	}
}

// TestEncoderLinesWithGaps: bets of lines with gaps (rows skipped as
// invalid) are cut by a header that grows with every gap, and still keep
// to the 8 kB rule to the byte and name each bet's line.
func TestEncoderLinesWithGaps(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 3))
	for s := 0; s < 50; s++ {
		const agency = 4
		enc := messages.NewBatchEncoder(agency, 1+r.IntN(400))
		var lines []uint64
		var batches []*messages.Batch
		line := uint64(r.IntN(1 << 40))
		for i := 0; i < 1000; i++ {
			line += 1 + uint64(r.IntN(3))*uint64(r.IntN(1<<20)) // often the next line, often a gap
			bet := randBet(t, r, agency)
			for {
				added, err := enc.AddCSVAt(bet.AppendCSV(nil), line)
				if err != nil {
					t.Fatal(err)
				}
				if added {
					break
				}
				batches = append(batches, enc.Flush())
			}
			lines = append(lines, line)
		}
		batches = append(batches, enc.Flush())
		var got []uint64
		for i, b := range batches {
			m := b.Msg()
			if size, real := messages.WireSize(m.Subject, m.Header, len(m.Data)), len(wireBytes(m, replySubject)); size != real || size > messages.MaxMessageBytes {
				t.Fatalf("sequence %d batch %d: WireSize %d, %d bytes on the wire, limit %d", s, i, size, real, messages.MaxMessageBytes)
			}
			bh, err := messages.DecodeBatchHeader(m.Subject, m.Header)
			if err != nil || bh.Lines.Count() != uint64(b.Bets) {
				t.Fatalf("sequence %d batch %d: %+v, %v, for %d bets", s, i, bh, err, b.Bets)
			}
			bh.Lines.All(func(l uint64) bool { got = append(got, l); return true })
		}
		if !reflect.DeepEqual(got, lines) {
			t.Fatalf("sequence %d: the batches name lines %v…, the bets came from %v…", s, got[:min(5, len(got))], lines[:5])
		}
	}
	enc := messages.NewBatchEncoder(1, 10)
	row := []byte(goodRow)
	if ok, err := enc.AddCSVAt(row, 5); !ok || err != nil {
		t.Fatalf("AddCSVAt(line 5) = %v, %v", ok, err)
	}
	for _, l := range []uint64{5, 4, 0} {
		if ok, err := enc.AddCSVAt(row, l); ok || err == nil {
			t.Errorf("AddCSVAt(line %d) after line 5 = %v, %v; want an error", l, ok, err)
		}
	}
}
