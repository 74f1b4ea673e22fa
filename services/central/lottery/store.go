package lottery

import "github.com/quiniela/quiniela/messages"

// Store is what the Lottery needs of its storage: fileledger.Ledger and
// jsledger.Store are the real ones. Each method that takes done calls it
// once its work is durable (or failed).
type Store interface {
	// AppendBatch stores a batch; rows.Data is the caller's again once it
	// returns.
	AppendBatch(agency int, seq uint64, sum uint64, rows Rows, done func(error)) error
	MarkDone(agency int, batches uint64, done func(error)) error
	MarkDrawn(done func(error)) error
	Sync(done func(error)) error
	// Settle returns once every row appended so far is durable and in
	// what Bets reads.
	Settle() error
	// Bets opens the rows stored so far for reading: the draw's scan, and
	// the check of an agency run again against the rows stored for its lines.
	Bets() (Bets, error)
	// Usable is the store's own refusal, asked before the lottery answers
	// anything from its state: the JetStream store refuses once this
	// central's lease has ended, and then the lottery must not answer from
	// a view another central may have moved past (a 409 naming a batch the
	// agency has had acknowledged since). A store that no other central can
	// move past (the file ledger, locked) is always usable: it refuses work
	// in the calls that write.
	Usable() error
}

// Progress is what a store holds of one agency: what its recovery read
// back (the journal, the stream), and what the Lottery keeps current.
type Progress struct {
	LastBatch uint64   // the highest batch sequence stored (batches are stored in order)
	Sums      []uint64 // messages.BatchSum of batch i+1, to tell a resend from a reused number
	Bets      int64
	Done      bool
	Batches   uint64 // with Done: how many batches the agency said it sent first
	// Stored are the file lines of the agency's stored rows, in the order
	// stored: one range for a file sent whole in one run.
	Stored  []messages.LineRange
	MaxLine uint64 // the last line stored
}

// Recovered is the state a store read back when it opened.
type Recovered struct {
	Agencies     map[int]*Progress
	Drawn        bool
	DroppedBytes int64 // torn or uncommitted tail cut from bets.csv
}

// Apply records rows of batch seq at lines as stored: under number seq if
// it is the next, else as rows added to batch seq. The journal's and the
// stream's recoveries replay their records through it.
func (p *Progress) Apply(seq, sum uint64, bets int, lines messages.LineSet) {
	if seq == p.LastBatch+1 {
		p.LastBatch = seq
		p.Sums = append(p.Sums, sum)
	}
	p.Bets += int64(bets)
	for _, r := range lines {
		if n := len(p.Stored); n > 0 && p.Stored[n-1].Last+1 == r.First {
			p.Stored[n-1].Last = r.Last
		} else {
			p.Stored = append(p.Stored, r)
		}
		p.MaxLine = max(p.MaxLine, r.Last)
	}
}

// storedLines returns the lines of the agency's stored rows one at a
// time, in the order stored.
func (p *Progress) storedLines() func() (uint64, bool) {
	i, next := 0, uint64(0) // next 0: the start of range i (lines are 1 or more)
	return func() (uint64, bool) {
		if i == len(p.Stored) {
			return 0, false
		}
		r := p.Stored[i]
		if next == 0 {
			next = r.First
		}
		line := next
		if line == r.Last {
			i, next = i+1, 0
		} else {
			next++
		}
		return line, true
	}
}
