package agency

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/quiniela/quiniela/messages"
)

// A peer that may watch bets.agency.N learns agency N's reply inboxes, and
// can make the central answer some other request of its own into them
// (`nats req '$SRV.PING' '' --reply <agency N's inbox>`). So an agency
// takes a message on its inbox as the answer to its request only if the
// message names that request: its agency and, for a batch, its number. A
// success reply names them in its JSON body, an error reply in the headers
// Quiniela-Agency and Quiniela-Batch. Anything else is logged and treated
// as no reply at all: the agency keeps waiting and resends on its timeout.

// expect is what the reply to one request must name.
type expect struct {
	agency  int
	batch   uint64   // a batch's number: its replies must name it; 0 for done and winners
	batches uint64   // a done's count of batches: its success reply must repeat it
	fields  []string // JSON fields a success reply must hold
}

// expectBatch needs no field check: agencies and batches are numbered from
// 1, so a reply without them reads as 0 and fails the comparison; that
// spares every batch reply a second JSON decode.
func expectBatch(agency int, batch uint64) expect {
	return expect{agency: agency, batch: batch}
}

// expectDone: a winners reply ({"agency":N,"winners":[…]}) has no
// "batches", so it cannot pass for the done of an agency without batches.
func expectDone(agency int, batches uint64) expect {
	return expect{agency: agency, batches: batches, fields: []string{"agency", "batches"}}
}

func expectWinners(agency int) expect {
	return expect{agency: agency, fields: []string{"agency", "winners"}}
}

// errForeign marks a message that is no answer to the request.
var errForeign = errors.New("not the reply to this request")

// check reads msg as the answer to the request: it returns the central's
// error reply, or nil after decoding a success reply into out, or an error
// wrapping errForeign when msg answers something else.
func (e expect) check(msg *nats.Msg, out any) error {
	if err := messages.ReplyError(msg); err != nil {
		var werr *messages.Error
		switch {
		case !errors.As(err, &werr):
			return fmt.Errorf("%w: %v", errForeign, err)
		case werr.Agency != e.agency:
			return fmt.Errorf("%w: error reply %d names agency %d (header %s), not %d", errForeign, werr.Code, werr.Agency, messages.HeaderAgency, e.agency)
		case e.batch > 0 && werr.Batch != e.batch:
			return fmt.Errorf("%w: error reply %d names batch %d (header %s), not %d", errForeign, werr.Code, werr.Batch, messages.HeaderBatch, e.batch)
		}
		return err
	}
	if len(e.fields) > 0 {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(msg.Data, &fields); err != nil {
			return fmt.Errorf("%w: success reply is not a JSON object", errForeign)
		}
		for _, f := range e.fields {
			if _, ok := fields[f]; !ok {
				return fmt.Errorf("%w: success reply has no %q", errForeign, f)
			}
		}
	}
	// Each decodes into a fresh value, so that a rejected reply leaves out
	// as it was.
	switch out := out.(type) {
	case *messages.BatchReply:
		var r messages.BatchReply
		if err := json.Unmarshal(msg.Data, &r); err != nil {
			return fmt.Errorf("%w: success reply does not read as a batch reply: %v", errForeign, err)
		}
		if r.Agency != e.agency || r.Batch != e.batch {
			return fmt.Errorf("%w: success reply names agency %d batch %d, not agency %d batch %d", errForeign, r.Agency, r.Batch, e.agency, e.batch)
		}
		*out = r
	case *messages.DoneReply:
		var r messages.DoneReply
		if err := json.Unmarshal(msg.Data, &r); err != nil {
			return fmt.Errorf("%w: success reply does not read as a done reply: %v", errForeign, err)
		}
		if r.Agency != e.agency || r.Batches != e.batches {
			return fmt.Errorf("%w: success reply names agency %d and %d batches, not agency %d and %d batches", errForeign, r.Agency, r.Batches, e.agency, e.batches)
		}
		*out = r
	case *messages.WinnersReply:
		var r messages.WinnersReply
		if err := json.Unmarshal(msg.Data, &r); err != nil {
			return fmt.Errorf("%w: success reply does not read as a winners reply: %v", errForeign, err)
		}
		if r.Agency != e.agency {
			return fmt.Errorf("%w: success reply names agency %d, not %d", errForeign, r.Agency, e.agency)
		}
		*out = r
	default:
		return fmt.Errorf("reading a reply into %T: not a reply type", out) // a bug of the caller
	}
	return nil
}

// logForeign logs a message on the agency's inbox that answers another
// request, at WARN: a peer relayed it, or a central speaks another protocol.
// Every value in it comes from the peer; logline escapes and bounds each.
func logForeign(ctx context.Context, log *slog.Logger, agency int, msg *nats.Msg, why error) {
	if !log.Enabled(ctx, slog.LevelWarn) {
		return // spare the string(msg.Data) copy
	}
	log.Warn("respuesta_ajena", "agency", agency,
		"subject", msg.Subject, "reason", why, "error_code", msg.Header.Get(micro.ErrorCodeHeader),
		"body", string(msg.Data), "detail", "ignored as no reply: waiting, and resending on timeout")
}
