package jsledger

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The limit is read from nats-server's refusal, wrapped or not; a refusal
// that does not name it (or names one the batch is not over) counts as
// the most it can be, one under the parts; other errors are not it.
func TestAtomicTooLarge(t *testing.T) {
	refusal := func(d string) error {
		return fmt.Errorf("writing: %w", &jetstream.APIError{Code: 400, ErrorCode: 10199, Description: d})
	}
	for _, c := range []struct {
		err   error
		parts int
		limit int
		ok    bool
	}{
		{refusal("atomic publish batch is too large: 1"), 2, 1, true},
		{refusal("atomic publish batch is too large: 250"), 1001, 250, true},
		{refusal("atomic publish batch is too large"), 5, 4, true},
		{refusal("atomic publish batch is too large: 9"), 5, 4, true},
		{&jetstream.APIError{Code: 400, ErrorCode: 10176, Description: "atomic publish batch is incomplete"}, 5, 0, false},
		{fmt.Errorf("too large: 3"), 5, 0, false},
	} {
		if limit, ok := atomicTooLarge(c.err, c.parts); limit != c.limit || ok != c.ok {
			t.Errorf("atomicTooLarge(%v, %d) = %d, %v; want %d, %v", c.err, c.parts, limit, ok, c.limit, c.ok)
		}
	}
}

// What a central learnt holds: parts taken are not asked again; a refusal
// refuses more parts up front until it is atomicRecheck old, then they are
// asked again; a later take of more parts (the limit raised) forgets it,
// and a refusal brings what was taken down to it.
func TestAtomicLimitKnown(t *testing.T) {
	var a atomicLimit
	if taken, over, _ := a.known(2); taken || over != 0 {
		t.Fatalf("nothing learnt: known(2) = %v, %d; want to ask", taken, over)
	}
	a.took(3)
	if taken, _, _ := a.known(3); !taken {
		t.Error("3 parts taken, known(3) says ask")
	}
	a.refused(2)
	if taken, over, fresh := a.known(3); taken || over != 2 || !fresh {
		t.Errorf("refused over 2 just now: known(3) = %v, %d, %v; want refused up front, limit 2", taken, over, fresh)
	}
	if taken, _, _ := a.known(2); !taken {
		t.Error("refused over 2: known(2) says ask, though the refusal says 2 is taken")
	}
	a.learnt = time.Now().Add(-atomicRecheck)
	if taken, over, fresh := a.known(3); taken || over != 2 || fresh {
		t.Errorf("a refusal %v old: known(3) = %v, %d, %v; want asked again", atomicRecheck, taken, over, fresh)
	}
	a.took(4)
	if taken, over, _ := a.known(4); !taken || over != 0 {
		t.Errorf("4 parts taken since: known(4) = %v, %d; want taken", taken, over)
	}
}
