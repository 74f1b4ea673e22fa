package jsledger

import (
	"bytes"
	"strings"
	"testing"

	"github.com/quiniela/quiniela/messages"
)

// cutRows cuts at rows, each part's rows and lines within room, the lines
// shared out with their rows, and refuses a row that no part can hold.
func TestCutRows(t *testing.T) {
	rows := []byte("1,aa\n1,bbbb\n1,c\n1,dddddd\n")
	lines := messages.LineSet{{First: 2, Last: 3}, {First: 7, Last: 8}}
	parts, err := cutRows(rows, lines, 16)
	if err != nil {
		t.Fatal(err)
	}
	var joined []byte
	var got []uint64
	counts := 0
	for _, p := range parts {
		if len(p.rows)+len(p.lines.String()) > 16 || p.count == 0 || bytes.Count(p.rows, []byte("\n")) != p.count || int(p.lines.Count()) != p.count {
			t.Errorf("part %q, lines %s, count %d", p.rows, p.lines, p.count)
		}
		joined = append(joined, p.rows...)
		counts += p.count
		p.lines.All(func(l uint64) bool { got = append(got, l); return true })
	}
	if !bytes.Equal(joined, rows) || counts != 4 || len(parts) < 2 || len(got) != 4 || got[0] != 2 || got[3] != 8 {
		t.Errorf("%d parts, joined %q, %d rows, lines %v", len(parts), joined, counts, got)
	}
	if _, err := cutRows(rows, lines, 9); err == nil || !strings.Contains(err.Error(), "a row of 9 bytes") {
		t.Errorf("a row over the room: %v, want a refusal naming it", err)
	}
}
