// Package lottery is the central's domain: the Lottery (each agency's
// batches applied once and in order, the done set, the draw and the
// winners), the Store it needs, declared whole, the state a store recovers
// (Progress, Recovered), every error of the domain and its stores, and the
// course's StoreBets, LoadBets and HasWon. It knows nothing of NATS nor of
// how a store keeps its bets: fileledger and jsledger are its stores, and
// the central's service turns its errors into wire codes.
package lottery

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/quiniela/quiniela/messages"
)

// Lottery is the central's domain: it applies each agency's batches once and
// in order, counts done notifications, runs the draw once when every agency
// is done and answers winners from the draw's result. It knows nothing of
// NATS; calls for different agencies run in parallel.
type Lottery struct {
	store    Store
	log      *slog.Logger
	agencies []agencyState // index agency-1

	mu        sync.Mutex // guards doneCount
	doneCount int

	// closeMu is held across the check of closed and the store's append of
	// a done agency's rows, and across the append of the last done: so rows
	// taken before the lottery closed precede the last done in the store,
	// and the draw sees them.
	closeMu  sync.Mutex
	accepted int  // done notifications accepted, durable or not
	closed   bool // every agency is done: nothing more is stored

	drawn   chan struct{} // closed when winners is set
	winners [][]string    // documents of each agency's winners, index agency-1
	drawErr error
}

type agencyState struct {
	mu       sync.Mutex // held across the sequence check and the append, so a batch is applied once
	Progress            // what is stored or queued for storing: LastBatch moves when a batch is queued

	// What the store has called back as durable: all a reply may name as
	// stored. An agency reads a 409's "expects batch N" as the
	// acknowledgement of every batch before N, and a batch queued but not
	// yet durable may still be lost to a failed write or a power cut.
	durable     atomic.Uint64 // the highest batch durable
	durableBets atomic.Int64

	// rowSums is messages.RowSum of the row stored for each line, read
	// from the store when a batch first names a stored line (an agency run
	// again), then kept up to date until the agency's next done; nil
	// otherwise, so that a lottery costs memory per batch, not per bet.
	rowSums map[uint64]uint64
}

// next is the batch a reply may say the central expects: the one after
// the last durable.
func (a *agencyState) next() uint64 { return a.durable.Load() + 1 }

// madeDurable records that the store called back batch seq's bets rows
// as durable.
func (a *agencyState) madeDurable(seq uint64, bets int) {
	for cur := a.durable.Load(); seq > cur && !a.durable.CompareAndSwap(cur, seq); cur = a.durable.Load() {
	}
	a.durableBets.Add(int64(bets))
}

// New returns a lottery of n agencies, resumed from what the store
// recovered. If every agency was already done it draws at once.
func New(ctx context.Context, n int, store Store, rec Recovered, log *slog.Logger) (*Lottery, error) {
	l := &Lottery{store: store, log: log, agencies: make([]agencyState, n), drawn: make(chan struct{})}
	for agency, p := range rec.Agencies {
		if agency < 1 || agency > n {
			return nil, fmt.Errorf("the store holds bets of agency %d, but this lottery has agencies 1 to %d: set CENTRAL_AGENCIES or use another bets file", agency, n)
		}
		l.agencies[agency-1].Progress = *p
		l.agencies[agency-1].durable.Store(p.LastBatch)
		l.agencies[agency-1].durableBets.Store(p.Bets)
		if p.Done {
			l.doneCount++
		}
	}
	l.accepted = l.doneCount
	if l.doneCount == n {
		l.closed = true
		go l.draw(ctx, rec.Drawn)
	}
	return l, nil
}

// Agencies is the number of agencies of the lottery.
func (l *Lottery) Agencies() int { return len(l.agencies) }

// CheckAgency refuses an agency number that is not of this lottery
// (ErrUnknownAgency).
func (l *Lottery) CheckAgency(n int) error {
	_, err := l.agency(n)
	return err
}

func (l *Lottery) agency(n int) (*agencyState, error) {
	if n < 1 || n > len(l.agencies) {
		return nil, fmt.Errorf("agency %d: %w (agencies are 1 to %d)", n, ErrUnknownAgency, len(l.agencies))
	}
	return &l.agencies[n-1], nil
}

// StoreBatch applies batch seq of agency, whose rows come from the file
// lines rows.Lines. A batch stored before (same number, lines and rows) is
// acknowledged again without a look at its rows. Otherwise each row is
// stored unless its line is stored already, with the same row: a row for a
// stored line that differs refuses the batch (*BatchMismatchError, naming the
// line); once every agency is done a row not stored refuses it
// (*ClosedError). The next batch in sequence is recorded under its number,
// even if it adds no row; an earlier number records only the rows it adds
// (an agency run again with lines it had skipped, fixed); a later one is
// refused (*OutOfOrderError). When it returns nil, reply is called once the
// outcome is durable, with the number of rows stored by this call.
func (l *Lottery) StoreBatch(agency int, seq uint64, sum uint64, rows Rows, reply func(added int, err error)) error {
	a, err := l.agency(agency)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := l.store.Usable(); err != nil {
		return err
	}
	repeat := func() error { return l.store.Sync(func(err error) { reply(0, err) }) }
	switch {
	case seq <= a.LastBatch && a.Sums[seq-1] == sum:
		return repeat()
	case seq > a.LastBatch+1 && !l.isClosed():
		return &OutOfOrderError{Agency: agency, Got: seq, Next: a.next()}
	case seq == a.LastBatch+1 && !a.Done && len(rows.Lines) > 0 && rows.Lines[0].First > a.MaxLine:
		// Lines after every stored one: the agency's first run.
		return l.appendRows(a, agency, seq, sum, rows, reply)
	}
	// Some of its lines may be stored: an agency run again.
	if err := l.loadRowSums(a, agency); err != nil {
		return fmt.Errorf("batch %d of agency %d: reading the rows stored for its lines: %w", seq, agency, err)
	}
	added, err := a.unstored(agency, seq, rows)
	if err != nil {
		return err
	}
	if !a.Done {
		return l.appendRows(a, agency, seq, sum, added, reply)
	}
	l.closeMu.Lock()
	defer l.closeMu.Unlock()
	if l.closed {
		if added.Bets > 0 {
			return &ClosedError{Agency: agency, Batch: seq, Lines: added.Lines}
		}
		return repeat()
	}
	return l.appendRows(a, agency, seq, sum, added, reply)
}

// appendRows stores rows, all at lines not stored yet, for batch seq: under
// that number if it is the next, else as rows added to an earlier batch.
func (l *Lottery) appendRows(a *agencyState, agency int, seq, sum uint64, rows Rows, reply func(int, error)) error {
	if seq <= a.LastBatch && rows.Bets == 0 {
		return l.store.Sync(func(err error) { reply(0, err) })
	}
	if err := l.store.AppendBatch(agency, seq, sum, rows, func(err error) {
		if err == nil {
			a.madeDurable(seq, rows.Bets)
		}
		reply(rows.Bets, err)
	}); err != nil {
		return err
	}
	a.Apply(seq, sum, rows.Bets, rows.Lines)
	if a.rowSums != nil {
		eachRow(rows.Data, rows.Lines, func(line uint64, row []byte) { a.rowSums[line] = messages.RowSum(row) })
	}
	return nil
}

// unstored checks each row of rows against the row stored for its line
// and returns those whose line is not stored. A row that differs from the
// one stored for its line refuses the batch.
func (a *agencyState) unstored(agency int, seq uint64, rows Rows) (Rows, error) {
	out := Rows{Data: rows.Data[:0:0]}
	var mismatch uint64
	eachRow(rows.Data, rows.Lines, func(line uint64, row []byte) {
		stored, ok := a.rowSums[line]
		switch {
		case !ok:
			out.Data = append(out.Data, row...)
			out.Lines = out.Lines.Add(line)
			out.Bets++
		case stored != messages.RowSum(row) && mismatch == 0:
			mismatch = line
		}
	})
	if mismatch > 0 {
		return Rows{}, &BatchMismatchError{Agency: agency, Batch: seq, Line: mismatch}
	}
	return out, nil
}

// loadRowSums reads the rows stored for agency into a.rowSums, once.
func (l *Lottery) loadRowSums(a *agencyState, agency int) error {
	if a.rowSums != nil {
		return nil
	}
	if err := l.store.Settle(); err != nil {
		return err
	}
	sums := make(map[uint64]uint64, a.Bets)
	lines := a.storedLines()
	bets, err := l.store.Bets()
	if err != nil {
		return err
	}
	defer bets.Close()
	err = agencyRows(bets, agency, func(row []byte) bool {
		line, ok := lines()
		if ok {
			sums[line] = messages.RowSum(row)
		}
		return ok
	})
	if err == nil && int64(len(sums)) != a.Bets {
		err = fmt.Errorf("%s holds %d rows of agency %d, its ledger %d", bets.Name(), len(sums), agency, a.Bets)
	}
	if err != nil {
		return err
	}
	a.rowSums = sums
	return nil
}

// eachRow calls fn with each row of data (one per LF) and its line.
func eachRow(data []byte, lines messages.LineSet, fn func(line uint64, row []byte)) {
	lines.All(func(line uint64) bool {
		end := bytes.IndexByte(data, '\n') + 1
		if end == 0 {
			return false
		}
		fn(line, data[:end])
		data = data[end:]
		return true
	})
}

// isClosed reports whether every agency is done.
func (l *Lottery) isClosed() bool {
	l.closeMu.Lock()
	defer l.closeMu.Unlock()
	return l.closed
}

// Done records that agency sent all its batches, batches in all. It is
// idempotent; when the last agency is done, the draw runs. reply is called
// once the notification is durable.
func (l *Lottery) Done(ctx context.Context, agency int, batches uint64, reply func(messages.DoneReply, error)) error {
	a, err := l.agency(agency)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := l.store.Usable(); err != nil {
		return err
	}
	// Every batch the agency sent is stored when the central has batches up
	// to its count: an agency run again may send fewer batches than the
	// central has (another maxAmount), each of whose rows it has.
	// Once the lottery is closed a done agency's batches are answered by
	// their rows and none is recorded, so its count goes unchecked.
	if batches > a.LastBatch && !(a.Done && l.isClosed()) {
		return &OutOfOrderError{Agency: agency, Got: batches, Next: a.next(), Done: true}
	}
	ack := messages.DoneReply{Agency: agency, Batches: batches, Bets: a.Bets}
	a.rowSums = nil // the run that needed them is over; another reads them again
	if a.Done {
		return l.store.Sync(func(err error) { reply(ack, err) })
	}
	l.closeMu.Lock()
	defer l.closeMu.Unlock()
	if err := l.store.MarkDone(agency, batches, func(err error) {
		if err == nil {
			l.agencyDone(ctx)
		}
		reply(ack, err)
	}); err != nil {
		return err
	}
	a.Done = true
	a.Batches = batches
	l.accepted++
	l.closed = l.accepted == len(l.agencies)
	return nil
}

func (l *Lottery) agencyDone(ctx context.Context) {
	l.mu.Lock()
	l.doneCount++
	all := l.doneCount == len(l.agencies)
	l.mu.Unlock()
	if all {
		go l.draw(ctx, false)
	}
}

// NotDone is how many agencies are not done yet: any of them may send.
func (l *Lottery) NotDone() int { return len(l.agencies) - l.DoneCount() }

// DoneCount is how many agencies are done.
func (l *Lottery) DoneCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.doneCount
}

// Status is every agency's progress and the draw's state: the agencies that
// stored a batch or are done (up to messages.StatusListMax of them), and,
// after the draw, how many winners each has — never who.
func (l *Lottery) Status() messages.StatusReply {
	st := messages.StatusReply{Agencies: []messages.AgencyStatus{}, Of: len(l.agencies), Done: l.DoneCount()}
	select {
	case <-l.drawn:
		st.Drawn = l.drawErr == nil
	default:
	}
	if st.Drawn {
		st.Winners = map[string]int{}
	}
	for i := range l.agencies {
		a := &l.agencies[i]
		a.mu.Lock()
		// Durable batches only: a status names nothing a failed write can take back.
		as := messages.AgencyStatus{Agency: i + 1, Batches: a.durable.Load(), Bets: a.durableBets.Load(), Done: a.Done}
		a.mu.Unlock()
		st.Bets += as.Bets
		if as.Batches == 0 && !as.Done {
			continue
		}
		if len(st.Agencies) == messages.StatusListMax {
			continue
		}
		st.Agencies = append(st.Agencies, as)
		if st.Drawn {
			st.Winners[strconv.Itoa(i+1)] = len(l.winners[i])
		}
	}
	return st
}
