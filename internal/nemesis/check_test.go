//go:build linux

package nemesis

import (
	"github.com/quiniela/quiniela/messages"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/internal/harness"
)

// The checker's parts fail what they must: they are what makes a run's
// pass mean something.

func TestCompareFindsMissingTwiceAndUnknownRows(t *testing.T) {
	want := []string{"a", "b", "c"}
	for _, tc := range []struct {
		got  []string
		find string
	}{
		{[]string{"c", "a", "b"}, ""},
		{[]string{"a", "b"}, "1 missing, 0 stored twice, 0 unknown"},
		{[]string{"a", "b", "c", "b"}, "0 missing, 1 stored twice, 0 unknown"},
		{[]string{"a", "b", "x"}, "1 missing, 0 stored twice, 1 unknown"},
	} {
		r := &Report{}
		compare(r, "the stream", want, tc.got)
		if tc.find == "" {
			if r.Failed() {
				t.Errorf("%v: %v, want no finding", tc.got, r.Findings)
			}
			continue
		}
		if len(r.Findings) != 1 || !strings.Contains(r.Findings[0], tc.find) {
			t.Errorf("%v: %v, want %q", tc.got, r.Findings, tc.find)
		}
	}
}

func TestCheckWritersFindsAWriteAfterAnotherTookTheLease(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 22, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	msg := func(seq uint64, writer string, ms int) StreamMsg {
		h := nats.Header{}
		if writer != "" {
			h.Set(messages.HeaderWriter, writer)
		}
		return StreamMsg{Seq: seq, Subject: "ledger.QUINIELA.agency.1", Header: h, Time: at(ms)}
	}
	// c1 active from 0 to 3 s; c2 from 5 s (it wrote); c1 again from 9 s.
	terms := []Term{
		{Central: "c1", Start: at(0), End: at(3000)},
		{Central: "c2", Start: at(5000), End: at(8000)},
		{Central: "c1", Start: at(9000)},
	}
	for _, tc := range []struct {
		name   string
		stream []StreamMsg
		find   string
	}{
		{"each in its term", []StreamMsg{msg(1, "c1", 100), msg(2, "c2", 5100), msg(3, "c1", 9100)}, ""},
		{"c1 in its next term", []StreamMsg{msg(1, "c2", 5100), msg(2, "c1", 9100)}, ""},
		{"c2 before it was active", []StreamMsg{msg(1, "c2", 4000)}, "before it was ever active"},
		{"no writer", []StreamMsg{msg(1, "", 100)}, "names no writer"},
	} {
		r := &Report{}
		checkWriters(r, tc.stream, slices.Clone(terms), 2*time.Second)
		got := strings.Join(r.Findings, "; ")
		if (tc.find == "") != (got == "") || !strings.Contains(got, tc.find) {
			t.Errorf("%s: findings %q, want %q", tc.name, got, tc.find)
		}
	}
	// A write sent in c1's term and stored 2.2 s after it ended, once c2
	// had taken over: late, counted, not failed.
	late := &Report{}
	checkWriters(late, []StreamMsg{msg(1, "c1", 100), msg(2, "c2", 5100), msg(3, "c1", 5200)}, slices.Clone(terms), 2*time.Second)
	if late.Failed() || late.LateWrites != 1 {
		t.Errorf("a late write: findings %v, %d late writes; want none and 1", late.Findings, late.LateWrites)
	}
	// Stored more than lateWindow after its term ended: not a late write.
	stale := &Report{}
	checkWriters(stale, []StreamMsg{msg(1, "c2", 5100), msg(2, "c1", 14000)}, slices.Clone(terms[:2]), 2*time.Second)
	if got := strings.Join(stale.Findings, "; "); !strings.Contains(got, "accepted from c1 at 22:00:14.000, after c2 took the lease") {
		t.Errorf("a write 11 s after its term: findings %q", got)
	}
	// Two centrals active at once: c1's term still open when c2 took over.
	both := []Term{{Central: "c1", Start: at(0)}, {Central: "c2", Start: at(5000)}}
	split := &Report{}
	checkWriters(split, []StreamMsg{msg(1, "c2", 5100), msg(2, "c1", 5200)}, both, 2*time.Second)
	if !split.Failed() {
		t.Error("c1 writing in its open term after c2 took the lease: want a finding")
	}

	// A term that ended at once with no write (a central that logged
	// itself active after its lease had lapsed) does not accuse the writer
	// whose term it fell in.
	blip := append(slices.Clone(terms[:1]), Term{Central: "c2", Start: at(1000), End: at(1001)})
	r := &Report{}
	checkWriters(r, []StreamMsg{msg(1, "c1", 2000)}, blip, 2*time.Second)
	if r.Failed() {
		t.Errorf("a write of c1 after c2's blip: %v, want no finding", r.Findings)
	}
}

func TestPlanIsReplayable(t *testing.T) {
	n := len(Kinds)
	a, b := Plan(42, n, Kinds), Plan(42, n, Kinds)
	if !slices.Equal(a, b) {
		t.Fatalf("two plans of seed 42 differ:\n%v\n%v", a, b)
	}
	if c := Plan(43, n, Kinds); slices.Equal(a, c) {
		t.Errorf("seeds 42 and 43 gave the same plan")
	}
	seen := map[Kind]bool{}
	for _, f := range a[:n] {
		seen[f.Kind] = true
		if f.AtDraw || f.Hold <= 0 {
			t.Errorf("fault %v: want a hold and not at the draw", f)
		}
	}
	if len(seen) != len(Kinds) {
		t.Errorf("%d faults of %d kinds used %d kinds: each kind comes once before any comes twice", n, n, len(seen))
	}
	if last := a[len(a)-1]; !last.AtDraw || !slices.Contains(drawKinds, last.Kind) {
		t.Errorf("the last fault %v: want one at the draw", last)
	}
	if _, err := ParseKinds("kill-node,nope"); err == nil {
		t.Error("ParseKinds accepted an unknown kind")
	}
}

// The draw's line may die with the central that wrote the draw; then, and
// only then, none is right.
func TestDrawnByKilledOnlyForTheKilledWriter(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 22, 0, 0, 0, time.UTC)
	h := nats.Header{}
	h.Set(messages.HeaderWriter, "c2")
	draw := []StreamMsg{{Seq: 9, Subject: "ledger.QUINIELA.draw", Header: h, Time: t0.Add(time.Second)}}
	killed := []Term{{Central: "c2", Start: t0, End: t0.Add(2 * time.Second), Killed: true}}
	if !drawnByKilled(draw, killed) {
		t.Error("a draw written by a central killed right after: want true")
	}
	steppedDown := []Term{{Central: "c2", Start: t0, End: t0.Add(2 * time.Second)}}
	if drawnByKilled(draw, steppedDown) {
		t.Error("a draw written by a central that lived on: want false")
	}
	other := []Term{{Central: "c1", Start: t0, End: t0.Add(2 * time.Second), Killed: true}}
	if drawnByKilled(draw, other) {
		t.Error("a draw written by c2 while c1 was killed: want false")
	}
}

func TestCheckStreamFindsGapsRepeatsAndBadParts(t *testing.T) {
	batch := func(seq uint64, agency, first string, counts string, part string, rows ...string) StreamMsg {
		h := nats.Header{}
		h.Set("Quiniela-Agency", agency)
		h.Set("Quiniela-Batch", first)
		h.Set(messages.HeaderCounts, counts)
		if part != "" {
			h.Set(messages.HeaderPart, part)
		}
		return StreamMsg{Seq: seq, Subject: "ledger.QUINIELA.agency." + agency, Header: h, Data: []byte(strings.Join(rows, ""))}
	}
	done := func(seq uint64, agency string) StreamMsg {
		h := nats.Header{}
		h.Set("Quiniela-Agency", agency)
		h.Set("Quiniela-Batches", "9")
		return StreamMsg{Seq: seq, Subject: "ledger.QUINIELA.agency." + agency, Header: h}
	}
	draw := StreamMsg{Seq: 99, Subject: "ledger.QUINIELA.draw", Header: nats.Header{}}
	row := func(n string) string { return "1,A,B," + n + ",1990-01-01,1\n" }
	input := []string{"1\x1fA\x1fB\x1f1\x1f1990-01-01\x1f1", "1\x1fA\x1fB\x1f2\x1f1990-01-01\x1f1", "1\x1fA\x1fB\x1f3\x1f1990-01-01\x1f1"}
	files := []harness.AgencyFile{{ID: 1}}
	for _, tc := range []struct {
		name   string
		stream []StreamMsg
		find   string
	}{
		{"whole", []StreamMsg{batch(1, "1", "1", "2,1", "", row("1"), row("2"), row("3")), done(2, "1"), draw}, ""},
		{"in parts", []StreamMsg{batch(1, "1", "1", "1", "1/2", row("1")), batch(2, "1", "1", "1", "2/2", row("2")), batch(3, "1", "2", "1", "", row("3")), done(4, "1"), draw}, ""},
		{"a gap", []StreamMsg{batch(1, "1", "1", "2", "", row("1"), row("2")), batch(2, "1", "3", "1", "", row("3")), done(3, "1"), draw}, "batch 3 where 2 was next"},
		{"a repeat", []StreamMsg{batch(1, "1", "1", "3", "", row("1"), row("2"), row("3")), batch(2, "1", "1", "1", "", row("1")), done(3, "1"), draw}, "1 stored twice"},
		{"a part skipped", []StreamMsg{batch(1, "1", "1", "1", "1/3", row("1")), batch(2, "1", "1", "1", "3/3", row("2")), batch(3, "1", "2", "1", "", row("3")), done(4, "1"), draw}, "part 3/3 out of order"},
		{"parts started over", []StreamMsg{batch(1, "1", "1", "1", "1/2", row("1")), batch(2, "1", "1", "1", "1/2", row("1")), batch(3, "1", "1", "1", "2/2", row("2")), batch(4, "1", "2", "1", "", row("3")), done(5, "1"), draw}, ""},
		{"a batch left in parts", []StreamMsg{batch(1, "1", "1", "1", "1/2", row("1")), batch(2, "1", "2", "1", "", row("3")), done(3, "1"), draw}, "left at part 1"},
		{"no done, two draws", []StreamMsg{batch(1, "1", "1", "3", "", row("1"), row("2"), row("3")), draw, draw}, "0 dones of agency 1"},
	} {
		r := &Report{}
		checkStream(r, tc.stream, input, files)
		got := strings.Join(r.Findings, "; ")
		if (tc.find == "") != (got == "") || !strings.Contains(got, tc.find) {
			t.Errorf("%s: findings %q, want %q", tc.name, got, tc.find)
		}
	}
}
