package lottery_test

import (
	"bytes"
	"sync"

	"github.com/quiniela/quiniela/services/central/lottery"
)

// stubStore is a Store in memory that answers at once: what the domain's
// tests need of a store, with no disk and no NATS. It counts its calls.
type stubStore struct {
	mu                           sync.Mutex
	rows                         []byte
	appends, dones, draws, syncs int
	refuse                       error // what Usable answers
}

var _ lottery.Store = (*stubStore)(nil)

func (s *stubStore) AppendBatch(_ int, _ uint64, _ uint64, rows lottery.Rows, done func(error)) error {
	s.mu.Lock()
	s.rows = append(s.rows, rows.Data...)
	s.appends++
	s.mu.Unlock()
	done(nil)
	return nil
}

func (s *stubStore) MarkDone(_ int, _ uint64, done func(error)) error {
	s.count(&s.dones)
	done(nil)
	return nil
}

func (s *stubStore) MarkDrawn(done func(error)) error {
	s.count(&s.draws)
	done(nil)
	return nil
}

func (s *stubStore) Sync(done func(error)) error {
	s.count(&s.syncs)
	done(nil)
	return nil
}

func (s *stubStore) count(n *int) {
	s.mu.Lock()
	*n++
	s.mu.Unlock()
}

// calls is what the store was asked: appends, dones, draws.
func (s *stubStore) calls() [3]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return [3]int{s.appends, s.dones, s.draws}
}

func (s *stubStore) Settle() error { return nil }
func (s *stubStore) Usable() error { return s.refuse }

func (s *stubStore) Bets() (lottery.Bets, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return memBets{bytes.NewReader(bytes.Clone(s.rows))}, nil
}

// memBets are rows in memory as lottery.Bets.
type memBets struct{ *bytes.Reader }

func (memBets) Name() string { return "the stub store" }
func (memBets) Close() error { return nil }

// heldStore is a Store whose appends wait, not durable, until the test
// calls them back.
type heldStore struct {
	stubStore
	appends []func(error)
}

func (h *heldStore) AppendBatch(_ int, _ uint64, _ uint64, _ lottery.Rows, done func(error)) error {
	h.appends = append(h.appends, done)
	return nil
}
