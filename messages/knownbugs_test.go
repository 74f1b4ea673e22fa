package messages_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/quiniela/quiniela/messages"
)

// Regression tests of bugs the package once had, each failing if its bug
// came back.

// BatchSum was once a CRC-32, under which these two valid one-row batches
// share a sum: the central would have acknowledged the second, sent under
// the number of the first, as a repeat (no 412) and dropped its bet. It is
// the first 8 bytes of a SHA-256 now.
func TestBatchSumTellsCollidingCRC32BatchesApart(t *testing.T) {
	a := []byte("Juan,Perez,29685295,1990-05-17,7574\n")
	b := []byte("Juan,Perez,32060020,1990-05-17,7574\n")
	for _, p := range [][]byte{a, b} {
		if _, err := messages.DecodeBets(nil, 1, p); err != nil {
			t.Fatalf("%q: %v", p, err)
		}
	}
	if sa, sb := messages.BatchSum("1", a), messages.BatchSum("1", b); sa == sb {
		t.Errorf("BatchSum(%q) = BatchSum(%q) = %#x: a different batch under a stored number passes as a repeat", a, b, sa)
	}
}

// FieldError.Value is cut at 40 bytes; the cut once split a UTF-8 rune.
func TestFieldErrorValueKeepsRunesWhole(t *testing.T) {
	_, err := messages.ParseBet(1, with(0, strings.Repeat("€", 34))) // 102 bytes
	var fe *messages.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("ParseBet: %v", err)
	}
	if !utf8.ValidString(fe.Value) {
		t.Errorf("FieldError.Value %q is not valid UTF-8", fe.Value)
	}
}
