package lottery

import (
	"errors"
	"fmt"

	"github.com/quiniela/quiniela/messages"
)

// Every error of the domain and its stores; the service turns them into
// wire codes in one table (reply.go).

// Errors of the domain.
var (
	ErrUnknownAgency = errors.New("no such agency in this lottery")
	ErrDrawPending   = errors.New("the draw waits for every agency to be done")
)

// Errors of the stores, which the domain and the service's table name.
var (
	// ErrLedgerClosed is returned for work handed to a closed store.
	ErrLedgerClosed = errors.New("store is closed")
	// ErrForeignStore is returned for a bets file the ledger did not write,
	// or that holds more than its journal explains: it is left as it was.
	ErrForeignStore = errors.New("not a store of this central's file ledger")
	// ErrDrawnElsewhere: another central wrote the draw first.
	ErrDrawnElsewhere = errors.New("the draw was already written by another central")
	// ErrNotActive: this central no longer holds the lease; another one
	// serves (the service answers 503 and agencies retry).
	ErrNotActive = errors.New("this central is not the active one any more: retry in a moment")
)

// BatchMismatchError refuses a batch with a row that differs from the bet
// stored for its line: the agency's file changed there since it was sent
// (README, "Not promised", says why and what to do).
type BatchMismatchError struct {
	Agency int
	Batch  uint64
	Line   uint64 // the first line that differs
}

func (e *BatchMismatchError) Error() string {
	return fmt.Sprintf("batch %d of agency %d: line %d differs from the bet stored for that line: the agency's file changed there since it was sent",
		e.Batch, e.Agency, e.Line)
}

// ClosedError refuses a batch with rows the central has not stored once
// every agency is done: the draw runs (or ran) without them, and they
// cannot enter the lottery any more.
type ClosedError struct {
	Agency int
	Batch  uint64
	Lines  messages.LineSet // of the rows not stored
}

func (e *ClosedError) Error() string {
	return fmt.Sprintf("batch %d of agency %d: lines %s are not stored and cannot be any more: every agency is done and the draw ran without them",
		e.Batch, e.Agency, clipLines(e.Lines))
}

// clipLines writes ls for a description, cut after a few ranges.
func clipLines(ls messages.LineSet) string {
	const show = 8
	if len(ls) <= show {
		return ls.String()
	}
	return fmt.Sprintf("%s and %d more", ls[:show], ls[show:].Count())
}

// OutOfOrderError refuses a batch (or a done) that does not follow what is
// stored: the agency must resend from Next.
type OutOfOrderError struct {
	Agency int
	Got    uint64
	Next   uint64
	Done   bool // the refused request was a done notification
}

func (e *OutOfOrderError) Error() string {
	switch {
	case e.Done && e.Next == 1:
		return fmt.Sprintf("agency %d says it sent %d batches, but the central has none of them: send them from batch 1", e.Agency, e.Got)
	case e.Done:
		return fmt.Sprintf("agency %d says it sent %d batches, but the central has batches 1 to %d: send batch %d next",
			e.Agency, e.Got, e.Next-1, e.Next)
	}
	return fmt.Sprintf("batch %d of agency %d is out of order: the central expects batch %d", e.Got, e.Agency, e.Next)
}

// LedgerLimitError refuses a batch that the ledger's servers cannot store
// as they are configured: the ledger writes it in Parts stream messages (as
// many as their max_payload makes it need), one atomic batch, and they
// commit at most Limit messages as one. Nothing of it is stored, and sending
// it again changes nothing: the servers' configuration must change, or the
// agency must send smaller batches. Its text, the remedy included, fits a
// wire description (messages.MaxDescriptionBytes) whatever its numbers.
type LedgerLimitError struct {
	Agency int
	Batch  uint64
	Parts  int
	Limit  int
}

func (e *LedgerLimitError) Error() string {
	return fmt.Sprintf("batch %d of agency %d needs %d stream messages; the servers' atomic batch limit is %d: raise jetstream { limits { batch { max_msgs } } } to %d or max_payload, or send smaller batches",
		e.Batch, e.Agency, e.Parts, e.Limit, e.Parts)
}
