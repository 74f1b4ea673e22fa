package jsledger

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiniela/quiniela/services/central/lottery"
)

// nats-server commits at most so many messages as one atomic batch: its
// jetstream { limits { batch { max_msgs } } }, 1000 by default, which an
// operator may set lower, on some servers of a cluster and not others, and
// change by a reload. A batch written in parts over it is refused (10199,
// naming the limit) whatever is tried again: a configuration of the
// servers, not a lost lease. The store asks the stream before it queues
// such a batch (probeAtomicLimit), so that the lottery, which counts a
// batch as stored once queued, never counts one the servers will refuse;
// the answer is kept, so that batches of as many parts as were taken cost
// no question.

// atomicRecheck is how long a limit learnt from a refusal holds without
// asking again: an operator who raises it and reloads the servers sees
// batches over the old limit taken within that.
const atomicRecheck = 10 * time.Second

// atomicLimit is what this central learnt of the servers' limit, kept by
// the Ledger across activations.
type atomicLimit struct {
	mu     sync.Mutex
	limit  int       // the limit the servers last refused a batch with; 0 if none was
	learnt time.Time // when
	fits   int       // the most parts the servers took (or said they would) as one atomic batch since
}

// refused records that the servers refused a batch over limit.
func (a *atomicLimit) refused(limit int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.limit, a.learnt = limit, time.Now()
	a.fits = min(a.fits, limit)
}

// took records that the servers take parts messages as one atomic batch.
func (a *atomicLimit) took(parts int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fits = max(a.fits, parts)
	if a.limit > 0 && parts > a.limit {
		a.limit = 0 // raised since
	}
}

// known says what is known of parts: taken (no need to ask), or over
// the limit last refused with (0 if not known to be), and whether that
// refusal is recent enough to hold without asking again.
func (a *atomicLimit) known(parts int) (taken bool, over int, fresh bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if parts <= a.fits {
		return true, 0, false
	}
	if a.limit > 0 && parts > a.limit {
		return false, a.limit, time.Since(a.learnt) < atomicRecheck
	}
	return false, 0, false
}

// checkAtomicLimit refuses batch seq of agency, to be written in parts
// messages as one atomic batch, if the servers commit fewer as one, with a
// *lottery.LedgerLimitError. Where the stream cannot tell (no leader, say)
// it lets the batch go, unless the servers refused as many parts before:
// the write finds out.
func (s *Store) checkAtomicLimit(agency int, seq uint64, parts int) error {
	taken, over, fresh := s.l.atomic.known(parts)
	if taken || parts < 2 {
		// Any limit takes one message; and the question cannot be asked of
		// it: a message numbered 1 starts a batch the server keeps.
		return nil
	}
	if !fresh {
		limit, err := s.probeAtomicLimit(agencyLedgerSubject(s.l.cfg.Stream, agency), parts)
		switch {
		case err != nil:
			s.l.log.Warn("consultar_limite_lote", "agency", agency, "batch", seq, "parts", parts,
				"error", fmt.Errorf("asking stream %s whether it commits %d messages as one atomic batch: %w; the write will tell", s.l.cfg.Stream, parts, err))
		case limit > 0:
			s.l.atomic.refused(limit)
			over = limit
		default:
			s.l.atomic.took(parts)
			over = 0
		}
	}
	if over > 0 {
		return &lottery.LedgerLimitError{Agency: agency, Batch: seq, Parts: parts, Limit: over}
	}
	return nil
}

// probeAtomicLimit asks the stream, storing nothing, whether it commits
// parts messages as one atomic batch, and returns its limit if it does
// not, 0 if it does. The question is a lone message numbered parts of an
// atomic batch the stream has not seen: nats-server (its
// processJetStreamAtomicBatchMsg) answers it at once, and keeps nothing of
// it, with "too large" and its limit (10199) if parts is over the limit,
// else with "incomplete batch" (10176).
func (s *Store) probeAtomicLimit(subject string, parts int) (int, error) {
	msg := nats.NewMsg(subject)
	msg.Header.Set(headerBatchID, newBatchID())
	msg.Header.Set(headerBatchSeq, strconv.Itoa(parts))
	reply, err := s.l.js.Conn().RequestMsg(msg, publishTimeout)
	if err != nil {
		return 0, err
	}
	var resp struct {
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(reply.Data, &resp); err != nil {
		return 0, fmt.Errorf("reading its answer %q: %w", reply.Data, err)
	}
	switch {
	case resp.Error == nil:
		return 0, fmt.Errorf("it answered %q, not a refusal", reply.Data)
	case resp.Error.ErrorCode == jsErrCodeAtomicIncomplete:
		return 0, nil
	}
	if limit, ok := atomicTooLarge(resp.Error, parts); ok {
		return limit, nil
	}
	return 0, resp.Error
}

// atomicTooLarge reports an atomic batch of parts messages refused as
// over the servers' limit (10199, "atomic publish batch is too large:
// {size}"), and that limit; parts-1, the most it can be, if the
// description does not end with it.
func atomicTooLarge(err error, parts int) (int, bool) {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != jsErrCodeAtomicTooLarge {
		return 0, false
	}
	_, size, _ := strings.Cut(apiErr.Description, "too large: ")
	if limit, err := strconv.Atoi(size); err == nil && limit >= 1 && limit < parts {
		return limit, true
	}
	return max(1, parts-1), true
}

// jsErrCodeAtomicTooLarge is nats-server's JSAtomicPublishTooLargeBatchErrF.
const jsErrCodeAtomicTooLarge jetstream.ErrorCode = 10199
