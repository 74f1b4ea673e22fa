package messages_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/quiniela/quiniela/messages"
)

// Bugs once known, each pinned by a test that failed while it was there.

// BatchSum is a CRC-32: two different valid one-row batches share a sum,
// so the central would acknowledge the second, sent under the number of
// the first, as a repeat (no 412) and drop its bet.
func TestKnownBugBatchSumCollides(t *testing.T) {
	a := []byte("Juan,Perez,29685295,1990-05-17,7574\n")
	b := []byte("Juan,Perez,32060020,1990-05-17,7574\n")
	for _, p := range [][]byte{a, b} {
		if _, err := messages.DecodeBets(nil, 1, p); err != nil {
			t.Fatalf("%q: %v", p, err)
		}
	}
	if sa, sb := messages.BatchSum(a), messages.BatchSum(b); sa == sb {
		t.Errorf("BatchSum(%q) = BatchSum(%q) = %#x: a different batch under a stored number passes as a repeat", a, b, sa)
	}
}

// FieldError.Value is cut at 40 bytes, which may split a UTF-8 rune.
func TestKnownBugFieldErrorValueSplitsRune(t *testing.T) {
	_, err := messages.ParseBet(1, with(0, strings.Repeat("€", 34))) // 102 bytes
	var fe *messages.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("ParseBet: %v", err)
	}
	if !utf8.ValidString(fe.Value) {
		t.Errorf("FieldError.Value %q is not valid UTF-8", fe.Value)
	}
}
