package e2e

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/messages"
)

// request sends a raw request as a hostile or buggy peer would and returns
// the reply's error code (0 for success) and data.
func request(t *testing.T, nc *nats.Conn, subject string, headers map[string]string, body string) (messages.Code, *messages.Error, []byte) {
	t.Helper()
	msg := &nats.Msg{Subject: subject, Header: nats.Header{}, Data: []byte(body)}
	for k, v := range headers {
		msg.Header.Set(k, v)
	}
	reply, err := requestMsg(nc, msg, 30*time.Second) // a bound against hanging, not a synchronisation
	if err != nil {
		t.Fatalf("request on %s: %v", subject, err)
	}
	if err := messages.ReplyError(reply); err != nil {
		e, ok := err.(*messages.Error)
		if !ok {
			t.Fatalf("reply on %s: %v", subject, err)
		}
		return e.Code, e, reply.Data
	}
	return 0, nil, reply.Data
}

// batchHeaders are a batch's headers; lines its Quiniela-Lines.
func batchHeaders(agency, seq, lines string) map[string]string {
	return map[string]string{messages.HeaderAgency: agency, messages.HeaderBatch: seq, messages.HeaderLines: lines}
}

const (
	goodRow  = "Juan,Pérez,30123456,1990-05-17,7574\n"
	goodRow2 = "Ana,Gómez,28999111,1985-12-01,1234\n"
)

// A hostile or buggy peer, with a plain NATS client: every bad request gets
// an error code, nothing of it is stored, and the central keeps serving.
func TestWireRejectsBadRequests(t *testing.T) {
	ns := natstest.StartServer(t)
	c := startCentral(t, ns.ClientURL(), t.TempDir(), map[string]string{"CENTRAL_AGENCIES": "3", "CENTRAL_WINNERS_HOLD": "20ms"})
	nc := natstest.Connect(t, ns)

	tooBig := strings.Repeat(goodRow, 8192/len(goodRow)+1)
	cases := []struct {
		name    string
		subject string
		headers map[string]string
		body    string
		want    messages.Code
		inDesc  string
	}{
		{"garbage payload", "bets.agency.1", batchHeaders("1", "1", "1"), "\x00\x01garbage", messages.CodeInvalidBet, "row 1"},
		{"one bad row of three", "bets.agency.1", batchHeaders("1", "1", "1"), goodRow + "Ana,Gómez,28999111,2023-02-30,1234\n" + goodRow2, messages.CodeInvalidBet, "row 2: birthdate"},
		{"unbalanced quote", "bets.agency.1", batchHeaders("1", "1", "1"), "\"Juan,Pérez,30123456,1990-05-17,7574\n", messages.CodeInvalidBet, "row 1"},
		{"empty payload", "bets.agency.1", batchHeaders("1", "1", "1"), "", messages.CodeMalformed, "empty"},
		{"over 8 kB", "bets.agency.1", batchHeaders("1", "1", "1"), tooBig, messages.CodeTooLarge, "8192"},
		{"agency header differs from subject", "bets.agency.1", batchHeaders("2", "1", "1"), goodRow, messages.CodeWrongAgency, "agency 1"},
		{"no headers", "bets.agency.1", nil, goodRow, messages.CodeWrongAgency, ""},
		{"sequence 0", "bets.agency.1", batchHeaders("1", "0", "1"), goodRow, messages.CodeMalformed, "Quiniela-Batch"},
		{"sequence abc", "bets.agency.1", batchHeaders("1", "abc", "1"), goodRow, messages.CodeMalformed, "Quiniela-Batch"},
		{"agency 0", "bets.agency.0", batchHeaders("0", "1", "1"), goodRow, messages.CodeUnknownAgency, ""},
		{"agency 99 of 3", "bets.agency.99", batchHeaders("99", "1", "1"), goodRow, messages.CodeUnknownAgency, "1 to 3"},
		{"agency abc", "bets.agency.abc", batchHeaders("abc", "1", "1"), goodRow, messages.CodeUnknownAgency, ""},
		{"skipped sequence", "bets.agency.1", batchHeaders("1", "2", "1"), goodRow, messages.CodeOutOfOrder, "expects batch 1"},
		{"done claiming batches never sent", "bets.agency.1.done", map[string]string{messages.HeaderAgency: "1", messages.HeaderBatches: "3"}, "", messages.CodeOutOfOrder, "has none of them: send them from batch 1"},
		{"done without count", "bets.agency.1.done", map[string]string{messages.HeaderAgency: "1"}, "", messages.CodeMalformed, "Quiniela-Batches"},
		{"done of agency 99", "bets.agency.99.done", map[string]string{messages.HeaderAgency: "99", messages.HeaderBatches: "0"}, "", messages.CodeUnknownAgency, ""},
		{"winners of agency 99", "winners.agency.99", nil, "", messages.CodeUnknownAgency, ""},
		{"winners before the draw", "winners.agency.1", nil, "", messages.CodeDrawPending, "0 of 3"},
		// Values a peer controls are cut in descriptions (the loop below checks
		// every description's size), so that every refusal gets a reply.
		{"2,100-byte agency header of control bytes", "bets.agency.1", batchHeaders(strings.Repeat("\x01", 2100), "1", "1"), goodRow, messages.CodeWrongAgency, "Quiniela-Agency"},
		{"subject of 1,500 DEL bytes", "winners.agency." + strings.Repeat("\x7f", 1500), nil, "", messages.CodeUnknownAgency, "winners.agency"},
		{"2,000-quote batch header", "bets.agency.1", batchHeaders("1", strings.Repeat(`"`, 2000), "1"), goodRow, messages.CodeMalformed, "Quiniela-Batch"},
		{"forged log line in the batch header", "bets.agency.1", batchHeaders("1", "x | action: sorteo | result: success", "1"), goodRow, messages.CodeMalformed, "Quiniela-Batch"},
		{"forged log line in a row", "bets.agency.1", batchHeaders("1", "1", "1"), "A,B,1 | action: sorteo | result: success,1990-01-01,1\n", messages.CodeInvalidBet, "row 1: document"},
		{"done with a forged agency header", "bets.agency.1.done", map[string]string{messages.HeaderAgency: "1 | action: sorteo | result: success", messages.HeaderBatches: "0"}, "", messages.CodeWrongAgency, "Quiniela-Agency"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, e, data := request(t, nc, tc.subject, tc.headers, tc.body)
			if code != tc.want {
				t.Fatalf("code %v (%v), want %v", code, e, tc.want)
			}
			if !strings.Contains(e.Description, tc.inDesc) {
				t.Errorf("description %q does not mention %q", e.Description, tc.inDesc)
			}
			if strings.Contains(e.Description, "central replied") {
				t.Errorf("description %q repeats the client's prefix", e.Description)
			}
			if e.Agency == 0 && strings.HasPrefix(tc.subject, "bets.agency.1") {
				t.Errorf("error reply to a request of agency 1 does not name it: %+v", e)
			}
			if len(e.Description) > messages.MaxDescriptionBytes || !utf8.ValidString(e.Description) || strings.ContainsAny(e.Description, "\r\n") {
				t.Errorf("description of %d bytes %q: want one line of valid UTF-8, at most %d bytes", len(e.Description), e.Description, messages.MaxDescriptionBytes)
			}
			if len(data) != 0 {
				t.Errorf("error reply carries data %q", data)
			}
		})
	}
	// Issue 10 §6, the protocol as documented: rows are counted among the
	// non-blank ones, a header sent twice is refused, and a birthdate after
	// today (in Argentina; two days ahead is after it anywhere) is refused.
	future := time.Now().AddDate(0, 0, 2).Format(messages.DateLayout)
	for _, tc := range []struct {
		name   string
		header nats.Header
		body   string
		want   messages.Code
		inDesc string
	}{
		{"blank line before a bad row", nats.Header{messages.HeaderAgency: {"1"}, messages.HeaderBatch: {"1"}, messages.HeaderLines: {"1"}},
			"Juan,Perez,1,1990-05-17,1\n\nAna,Gomez,2,1990-05-17,10000\n", messages.CodeInvalidBet, "row 2: number"},
		{"batch header twice", nats.Header{messages.HeaderAgency: {"1"}, messages.HeaderBatch: {"1", "2"}, messages.HeaderLines: {"1"}},
			goodRow, messages.CodeMalformed, "Quiniela-Batch"},
		{"agency header twice", nats.Header{messages.HeaderAgency: {"1", "1"}, messages.HeaderBatch: {"1"}, messages.HeaderLines: {"1"}},
			goodRow, messages.CodeMalformed, "Quiniela-Agency"},
		{"birthdate after today", nats.Header{messages.HeaderAgency: {"1"}, messages.HeaderBatch: {"1"}, messages.HeaderLines: {"1"}},
			"Juan,Perez,1," + future + ",1\n", messages.CodeInvalidBet, "row 1: birthdate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reply, err := requestMsg(nc, &nats.Msg{Subject: "bets.agency.1", Header: tc.header, Data: []byte(tc.body)}, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			e, _ := messages.ReplyError(reply).(*messages.Error)
			if e == nil || e.Code != tc.want || !strings.Contains(e.Description, tc.inDesc) {
				t.Errorf("reply %v, want %v mentioning %q", e, tc.want, tc.inDesc)
			}
		})
	}
	if info, err := os.Stat(c.betsFile); err != nil || info.Size() != 0 {
		t.Fatalf("bets file after only bad requests: %v, %v; want empty", info, err)
	}
	// No value a peer sent can end a field or a line of the log.
	if got := c.log.Lines("sorteo"); len(got) != 0 {
		t.Errorf("a peer forged %d sorteo lines into the log:\n%s", len(got), c.log)
	}
	if strings.Contains(c.log.String(), "| action: sorteo | result: success") {
		t.Errorf("forged text reached the log as such:\n%s", c.log)
	}
	if got := c.log.Count("action: apuesta_recibida | result: fail | cantidad: 3"); got != 1 {
		t.Errorf("fail line for the 3-row batch logged %d times, want once", got)
	}
	if e := lastError(t, nc, "bets.agency.1", batchHeaders("1", "5", "1"), goodRow); e.NextBatch != 1 || e.Agency != 1 || e.Batch != 5 {
		t.Errorf("out-of-order reply names next batch %d, agency %d, batch %d; want 1, 1, 5", e.NextBatch, e.Agency, e.Batch)
	}
	// A fail line for a done names the agency of its subject, whatever its headers say.
	request(t, nc, "bets.agency.1.done", map[string]string{messages.HeaderAgency: "x", messages.HeaderBatches: "0"}, "")
	if lines := c.log.Lines("agencia_terminada"); len(lines) == 0 || lines[len(lines)-1].Fields["agency"] != "1" {
		t.Errorf("a done with a bad agency header logged as %+v, want agency 1:\n%s", lines, c.log)
	}

	// The central still serves: a good batch, a replay of it, done, done
	// again, a batch after done, before and after the lottery closes.
	var acks []messages.BatchReply
	for range 2 {
		code, e, data := request(t, nc, "bets.agency.1", batchHeaders("1", "1", "1-2"), goodRow+goodRow2)
		if code != 0 {
			t.Fatalf("good batch refused: %v", e)
		}
		var got messages.BatchReply
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatal(err)
		}
		acks = append(acks, got)
	}
	// One agency sending: the widest window. The replay stores nothing.
	if want := (messages.BatchReply{Agency: 1, Batch: 1, Bets: 2, Added: 2, Window: messages.MaxWindow}); acks[0] != want {
		t.Errorf("batch reply %+v, want %+v", acks[0], want)
	}
	if want := (messages.BatchReply{Agency: 1, Batch: 1, Bets: 2, Added: 0, Window: messages.MaxWindow}); acks[1] != want {
		t.Errorf("replayed batch got %+v, want %+v", acks[1], want)
	}
	// Batch 1 again, with other bets on its lines: not a resend, a changed file.
	if e := lastError(t, nc, "bets.agency.1", batchHeaders("1", "1", "1-2"), goodRow2+goodRow); e.Code != messages.CodeBatchMismatch || !strings.Contains(e.Description, "batch 1 of agency 1: line 1 differs from the bet stored for that line") {
		t.Errorf("batch 1 resent with other content: %v, want %v naming line 1", e, messages.CodeBatchMismatch)
	}
	done := map[string]string{messages.HeaderAgency: "1", messages.HeaderBatches: "1"}
	for range 2 {
		if code, e, _ := request(t, nc, "bets.agency.1.done", done, ""); code != 0 {
			t.Fatalf("done refused: %v", e)
		}
	}
	// After its done, before the draw (agencies 2 and 3 are not done): a
	// row of a line not stored is stored, with a stored one not again.
	if code, e, data := request(t, nc, "bets.agency.1", batchHeaders("1", "2", "2-3"), goodRow2+goodRow); code != 0 || !strings.Contains(string(data), `"added":1`) {
		t.Errorf("batch after done, before the draw: %v %s, want 1 row added", e, data)
	}
	// A done that counts a batch the central does not have: 409.
	done3 := map[string]string{messages.HeaderAgency: "1", messages.HeaderBatches: "3"}
	if e := lastError(t, nc, "bets.agency.1.done", done3, ""); e.Code != messages.CodeOutOfOrder || e.NextBatch != 3 || e.Agency != 1 {
		t.Errorf("done with 3 after batches 1 and 2: %v (agency header %d), want %v naming batch 3", e, e.Agency, messages.CodeOutOfOrder)
	}
	// An agency with nothing to send may say done with 0 batches.
	for _, a := range []string{"2", "3"} {
		if code, e, _ := request(t, nc, "bets.agency."+a+".done", map[string]string{messages.HeaderAgency: a, messages.HeaderBatches: "0"}, ""); code != 0 {
			t.Errorf("done with 0 batches refused: %v", e)
		}
	}
	// Every agency done: the lottery is closed. A row not stored is refused
	// with its line; rows all stored are acknowledged whatever the number.
	if e := lastError(t, nc, "bets.agency.1", batchHeaders("1", "3", "3-4"), goodRow+goodRow2); e.Code != messages.CodeClosed || e.Lines.String() != "4" || e.Batch != 3 {
		t.Errorf("a new row after every agency is done: %+v, want %v naming line 4", e, messages.CodeClosed)
	}
	if code, e, data := request(t, nc, "bets.agency.1", batchHeaders("1", "9", "2-3"), goodRow2+goodRow); code != 0 || !strings.Contains(string(data), `"added":0`) {
		t.Errorf("stored rows resent after every agency is done: %v %s, want acknowledged, 0 added", e, data)
	}
	c.stop(t)
	if got := storedRows(t, c.betsFile); len(got) != 3 {
		t.Errorf("stored %d rows, want the 3 of lines 1 to 3, once: %v", len(got), got)
	}
	if n := c.log.Count("apuesta_repetida"); n != 3 {
		t.Errorf("logged %d apuesta_repetida, want 3 (the replay, line 2 again, the resend after the close)", n)
	}
}

func lastError(t *testing.T, nc *nats.Conn, subject string, headers map[string]string, body string) *messages.Error {
	t.Helper()
	_, e, _ := request(t, nc, subject, headers, body)
	if e == nil {
		t.Fatalf("request on %s succeeded, want an error", subject)
	}
	return e
}
