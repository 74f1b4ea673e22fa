package jsledger

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// entryAt is a lease entry at revision rev, written at created.
type entryAt struct {
	jetstream.KeyValueEntry
	rev     uint64
	created time.Time
}

func (e entryAt) Revision() uint64   { return e.rev }
func (e entryAt) Created() time.Time { return e.created }

// A standby asks fast once the holder's entry may expire soon: written
// over half the TTL ago by its timestamp, even if first seen just now (a
// standby that starts after its holder died), but not while it is fresh.
func TestStalenessOlderThan(t *testing.T) {
	const half = time.Second
	var fresh, old staleness
	fresh.entry(entryAt{rev: 7, created: time.Now()})
	old.entry(entryAt{rev: 7, created: time.Now().Add(-2 * half)})
	if fresh.olderThan(half) {
		t.Error("an entry written and seen just now is taken for an old one")
	}
	if !old.olderThan(half) {
		t.Error("an entry written two halves ago, first seen now, is taken for a fresh one")
	}
	// A renewal seen moves it: fresh again.
	old.entry(entryAt{rev: 8, created: time.Now()})
	if old.olderThan(half) {
		t.Error("a renewal seen does not make the entry fresh")
	}
}
