package jsledger

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/quiniela/quiniela/messages"
)

// groupOf is n consecutive batches of agency 7's rows, 8 kB each, from batch 3.
func groupOf(n int) []ledgerItem {
	group := make([]ledgerItem, n)
	for i := range group {
		var rows bytes.Buffer
		for rows.Len() < 8000 {
			fmt.Fprintf(&rows, "7,Santiago Lionel,Lorca,%d,1999-03-17,%d\n", 30_000_000+i*1000+rows.Len(), 7574)
		}
		first := uint64(1 + 200*i)
		group[i] = ledgerItem{seq: uint64(3 + i), sum: uint64(1000 + i), rows: rows.Bytes(), count: 1,
			lines: messages.LineSet{{First: first, Last: first}}}
	}
	return group
}

// A group's message carries its batches' rows in order, in one body of
// exactly their size; a group of one carries its batch's rows as they are.
func TestGroupMsgBody(t *testing.T) {
	s := &Store{l: &Ledger{cfg: Config{Stream: "Q"}}}
	for _, n := range []int{1, 2, 5} {
		group := groupOf(n)
		var want []byte
		for _, it := range group {
			want = append(want, it.rows...)
		}
		msg := s.groupMsg(7, group)
		if !bytes.Equal(msg.Data, want) {
			t.Errorf("group of %d: body of %d bytes, want the %d bytes of its rows", n, len(msg.Data), len(want))
		}
		if alone := n == 1 && &msg.Data[0] == &group[0].rows[0]; n == 1 && !alone || n > 1 && cap(msg.Data) != len(want) {
			t.Errorf("group of %d: body of capacity %d (its batch's own rows: %v), want the rows alone as they are, or a body of exactly their %d bytes",
				n, cap(msg.Data), alone, len(want))
		}
		if got := msg.Header.Get(messages.HeaderBatch); got != "3" {
			t.Errorf("group of %d: %s %q, want 3", n, messages.HeaderBatch, got)
		}
	}
}

// BenchmarkGroupMsg is the central's work to make a stream message of 20
// batches (160 kB), the size a chain carries on scale.
func BenchmarkGroupMsg(b *testing.B) {
	s := &Store{l: &Ledger{cfg: Config{Stream: "Q"}}}
	group := groupOf(20)
	b.SetBytes(int64(20 * len(group[0].rows)))
	b.ReportAllocs()
	for b.Loop() {
		s.groupMsg(7, group)
	}
}
