package messages_test

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/quiniela/quiniela/messages"
)

func TestCodeStringAndRetryable(t *testing.T) {
	tests := []struct {
		code      messages.Code
		value     int
		str       string
		retryable bool
	}{
		{messages.CodeMalformed, 400, "400 malformed", false},
		{messages.CodeWrongAgency, 403, "403 wrong agency", false},
		{messages.CodeUnknownAgency, 404, "404 unknown agency", false},
		{messages.CodeOutOfOrder, 409, "409 out of order", false},
		{messages.CodeClosed, 410, "410 lottery closed", false},
		{messages.CodeBatchMismatch, 412, "412 batch mismatch", false},
		{messages.CodeTooLarge, 413, "413 too large", false},
		{messages.CodeInvalidBet, 422, "422 invalid bet", false},
		{messages.CodeDrawPending, 425, "425 draw pending", true},
		{messages.CodeBusy, 429, "429 busy", true},
		{messages.CodeInternal, 500, "500 internal", true},
		{messages.CodeUnavailable, 503, "503 unavailable", true},
		{messages.CodeLedgerLimit, 507, "507 ledger limit", false},
		{messages.Code(0), 0, "0", false},
		{messages.Code(418), 418, "418", false},
		{messages.Code(-1), -1, "-1", false},
	}
	known := map[messages.Code]bool{}
	for _, tt := range tests {
		known[tt.code] = true
		if int(tt.code) != tt.value {
			t.Errorf("%s = %d, want %d", tt.str, int(tt.code), tt.value)
		}
		if got := tt.code.String(); got != tt.str {
			t.Errorf("Code(%d).String() = %q, want %q", tt.value, got, tt.str)
		}
		if got := tt.code.Retryable(); got != tt.retryable {
			t.Errorf("Code(%d).Retryable() = %v, want %v", tt.value, got, tt.retryable)
		}
	}
	// Every named code is in the table above (and in doc.go's table).
	for c := messages.Code(0); c < 1000; c++ {
		if c.String() != strconv.Itoa(int(c)) && !known[c] {
			t.Errorf("code %v is not in this table", c)
		}
		if c.Retryable() && !known[c] {
			t.Errorf("code %d is retryable and not in this table", int(c))
		}
	}
}

func TestBatchSum(t *testing.T) {
	// The first 8 bytes of SHA-256("1-3\n123456789").
	if got := messages.BatchSum("1-3", []byte("123456789")); got != 0x90f3b3fe0df3e61e {
		t.Errorf("BatchSum(1-3, 123456789) = %#x, want 0x90f3b3fe0df3e61e", got)
	}
	a := []byte(goodRow)
	b := []byte(strings.Replace(goodRow, "7574", "7575", 1))
	if messages.BatchSum("1", a) == messages.BatchSum("1", b) {
		t.Errorf("two payloads one digit apart have the same sum")
	}
	if messages.BatchSum("1", a) == messages.BatchSum("2", a) {
		t.Errorf("one payload on two lines has one sum")
	}
	if messages.BatchSum("", nil) != 0x01ba4719c80b6fe9 {
		t.Errorf("BatchSum(\"\", nil) = %#x, want the SHA-256 of a LF", messages.BatchSum("", nil))
	}
}

func TestErrorMessage(t *testing.T) {
	e := &messages.Error{Code: messages.CodeOutOfOrder, Description: "batch 5, expected 3", NextBatch: 3}
	if got, want := e.Error(), "central replied 409 out of order: batch 5, expected 3"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	h := e.Headers()
	if got := h[messages.HeaderNextBatch]; len(got) != 1 || got[0] != "3" {
		t.Errorf("Headers() = %v, want %s: 3", h, messages.HeaderNextBatch)
	}
	if h := (&messages.Error{Code: messages.CodeBusy, Description: "x"}).Headers(); len(h) != 0 {
		t.Errorf("Headers() without NextBatch = %v, want none", h)
	}
}

// TestErrorSaysItOnce pins the wording of error replies as an agency prints
// them: one sentence, whatever of its prefix the central's description
// repeats (a sentinel's "draw pending: …", or a wire error's own text,
// wrapped or not, as the central sends err.Error()).
func TestErrorSaysItOnce(t *testing.T) {
	invalid := &messages.Error{Code: messages.CodeInvalidBet, Description: `row 1: first_name "": empty`}
	malformed := &messages.Error{Code: messages.CodeMalformed, Description: `header Quiniela-Batch "x": want a positive number`}
	tests := []struct {
		code        string
		description string
		want        string
	}{
		{"425", "draw pending: not every agency is done",
			"central replied 425 draw pending: not every agency is done"},
		{"422", invalid.Error(),
			`central replied 422 invalid bet: row 1: first_name "": empty`},
		{"400", malformed.Error(),
			`central replied 400 malformed: header Quiniela-Batch "x": want a positive number`},
		{"422", fmt.Errorf("batch 2 of agency 1: %w", invalid).Error(),
			`central replied 422 invalid bet: batch 2 of agency 1: row 1: first_name "": empty`},
		{"400", fmt.Errorf("batch 3 of agency 1: %w", malformed).Error(),
			`central replied 400 malformed: batch 3 of agency 1: header Quiniela-Batch "x": want a positive number`},
		{"409", "batch 5, expected 3",
			"central replied 409 out of order: batch 5, expected 3"},
		// Another code's text is not this reply's prefix: kept.
		{"500", "storing: central replied 503 unavailable: x",
			"central replied 500 internal: storing: central replied 503 unavailable: x"},
	}
	for _, tt := range tests {
		err := messages.ReplyError(errorReply(tt.code, tt.description, nil))
		if err == nil || err.Error() != tt.want {
			t.Errorf("description %q: Error() = %v, want %q", tt.description, err, tt.want)
		}
	}
}

// errorReply is the reply micro's Request.Error sends, with e's headers.
func errorReply(code, description string, extra micro.Headers) *nats.Msg {
	h := nats.Header{
		micro.ErrorHeader:     []string{description},
		micro.ErrorCodeHeader: []string{code},
	}
	for k, v := range extra {
		h[k] = v
	}
	return &nats.Msg{Subject: "_INBOX.x", Header: h}
}

func TestReplyError(t *testing.T) {
	t.Run("success replies", func(t *testing.T) {
		for _, m := range []*nats.Msg{
			{Subject: "_INBOX.x", Data: []byte(`{"agency":1,"batch":1,"bets":1}`)},
			{Subject: "_INBOX.x", Header: nats.Header{"Other": []string{"1"}}},
			{Subject: "_INBOX.x", Header: nats.Header{}},
		} {
			if err := messages.ReplyError(m); err != nil {
				t.Errorf("ReplyError(%+v) = %v, want nil", m, err)
			}
		}
	})
	t.Run("error with next batch", func(t *testing.T) {
		sent := &messages.Error{Code: messages.CodeOutOfOrder, Description: "batch 7 of agency 1: want batch 4", NextBatch: 4}
		err := messages.ReplyError(errorReply("409", sent.Description, sent.Headers()))
		var e *messages.Error
		if !errors.As(err, &e) {
			t.Fatalf("ReplyError = %v (%T), want *messages.Error", err, err)
		}
		if !reflect.DeepEqual(e, sent) {
			t.Errorf("ReplyError = %+v, want %+v", *e, *sent)
		}
	})
	t.Run("lottery closed with lines", func(t *testing.T) {
		sent := &messages.Error{Code: messages.CodeClosed, Description: "batch 1 of agency 1: lines 50 are not stored", Agency: 1, Batch: 1,
			Lines: messages.LineSet{{First: 50, Last: 50}, {First: 70, Last: 72}}}
		h := sent.Headers()
		if got := h[messages.HeaderLines]; len(got) != 1 || got[0] != "50,70-72" {
			t.Errorf("Headers()[%s] = %q, want 50,70-72", messages.HeaderLines, got)
		}
		err := messages.ReplyError(errorReply("410", sent.Description, h))
		var e *messages.Error
		if !errors.As(err, &e) || !reflect.DeepEqual(e, sent) {
			t.Errorf("ReplyError = %+v, want %+v", err, *sent)
		}
	})
	t.Run("codes", func(t *testing.T) {
		for _, c := range []messages.Code{messages.CodeMalformed, messages.CodeInvalidBet, messages.CodeBusy, messages.CodeUnavailable, 418} {
			err := messages.ReplyError(errorReply(fmt.Sprint(int(c)), "because", nil))
			var e *messages.Error
			if !errors.As(err, &e) || e.Code != c || e.Description != "because" || e.NextBatch != 0 {
				t.Errorf("code %d: ReplyError = %#v", int(c), err)
			}
			if messages.CodeOf(err) != c {
				t.Errorf("CodeOf = %v, want %v", messages.CodeOf(err), c)
			}
		}
	})
	t.Run("non-numeric code", func(t *testing.T) {
		err := messages.ReplyError(errorReply("teapot", "short and stout", nil))
		if err == nil {
			t.Fatal("ReplyError = nil, want an error")
		}
		if !strings.Contains(err.Error(), "teapot") || !strings.Contains(err.Error(), "short and stout") {
			t.Errorf("ReplyError = %q; want the code and description in it", err)
		}
		if c := messages.CodeOf(err); c != 0 {
			t.Errorf("CodeOf = %v, want 0", c)
		}
	})
}

func TestCodeOf(t *testing.T) {
	busy := &messages.Error{Code: messages.CodeBusy, Description: "later"}
	tests := []struct {
		name string
		err  error
		want messages.Code
	}{
		{"nil", nil, 0},
		{"plain", errors.New("x"), 0},
		{"direct", busy, messages.CodeBusy},
		{"wrapped", fmt.Errorf("batch 3: %w", busy), messages.CodeBusy},
		{"wrapped twice", fmt.Errorf("send: %w", fmt.Errorf("batch 3: %w", busy)), messages.CodeBusy},
		{"joined", errors.Join(errors.New("x"), busy), messages.CodeBusy},
		{"not wrapped", fmt.Errorf("batch 3: %v", busy), 0},
		{"field error", &messages.FieldError{Field: "number"}, 0},
	}
	for _, tt := range tests {
		if got := messages.CodeOf(tt.err); got != tt.want {
			t.Errorf("%s: CodeOf(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestLineSetCut(t *testing.T) {
	ls := messages.LineSet{{First: 1, Last: 20}, {First: 22, Last: 22}, {First: 30, Last: 400}}
	for _, tc := range []struct {
		max  int
		want string
	}{
		{100, "1-20,22,30-400"},
		{14, "1-20,22,30-400"},
		{13, "1-20,22"},
		{7, "1-20,22"},
		{6, "1-20"},
		{3, ""},
	} {
		if got := ls.Cut(tc.max).String(); got != tc.want {
			t.Errorf("Cut(%d) = %q, want %q", tc.max, got, tc.want)
		}
	}
}
