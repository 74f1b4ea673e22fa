package central

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/quiniela/quiniela/internal/natsauth"
	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central/lottery"
)

var (
	errShuttingDown = errors.New("the central is shutting down: retry in a moment")
	errBusy         = errors.New("the central has too many requests queued: retry in a moment")
	errTooManyHeld  = errors.New("too many winners requests are waiting for the draw: ask again in a moment")
)

// errorCodes maps domain errors to wire codes: the one place that does.
var errorCodes = []struct {
	err  error
	code messages.Code
}{
	{lottery.ErrUnknownAgency, messages.CodeUnknownAgency},
	{lottery.ErrDrawPending, messages.CodeDrawPending},
	{errShuttingDown, messages.CodeUnavailable},
	{lottery.ErrLedgerClosed, messages.CodeUnavailable},
	{lottery.ErrNotActive, messages.CodeUnavailable},
	{errBusy, messages.CodeBusy},
	{errTooManyHeld, messages.CodeBusy},
}

// replyFor is the wire error for err: its code, and a description of one
// line, valid UTF-8, at most messages.MaxDescriptionBytes.
func replyFor(err error) *messages.Error {
	e := &messages.Error{Code: messages.CodeInternal}
	var wire *messages.Error
	var order *lottery.OutOfOrderError
	var closed *lottery.ClosedError
	var mismatch *lottery.BatchMismatchError
	var ledgerLimit *lottery.LedgerLimitError
	switch {
	case errors.As(err, &wire):
		e.Code, e.NextBatch = wire.Code, wire.NextBatch
	case errors.As(err, &order):
		e.Code, e.NextBatch = messages.CodeOutOfOrder, order.Next
	case errors.As(err, &closed):
		e.Code, e.Lines = messages.CodeClosed, closed.Lines.Cut(messages.MaxReplyLinesBytes)
	case errors.As(err, &mismatch):
		e.Code = messages.CodeBatchMismatch
	case errors.As(err, &ledgerLimit):
		e.Code = messages.CodeLedgerLimit
	case errors.Is(err, messages.ErrBetTooLarge):
		e.Code = messages.CodeTooLarge
	default:
		for _, ec := range errorCodes {
			if errors.Is(err, ec.err) {
				e.Code = ec.code
				break
			}
		}
	}
	e.Description = messages.Describe(describe(err, wire))
	return e
}

// describe is err's text with a wire error inside it told by its
// description alone: "batch 3 of agency 1: row 2: …", not "batch 3 of
// agency 1: central replied 422 invalid bet: row 2: …".
func describe(err error, wire *messages.Error) string {
	text := err.Error()
	if wire == nil {
		return text
	}
	if context, found := strings.CutSuffix(text, wire.Error()); found {
		return context + wire.Description
	}
	return text
}

// failNow answers c with err while its handler runs: through req if the
// reply goes to the inspector, else (an agency's) on the replies
// connection, as fail does; so micro's num_errors counts the inspector's
// error replies only (the endpoint's stats data counts them all).
func (s *Service) failNow(req micro.Request, c *call, err error) {
	if req == nil || toAgency(c.reply) {
		s.fail(c, err)
		return
	}
	e := s.wireError(c, err)
	if rerr := req.Error(strconv.Itoa(int(e.Code)), e.Description, nil, micro.WithHeaders(e.Headers())); rerr != nil {
		s.log.Warn("responder", "subject", c.subject, "error", rerr)
	}
	c.stats.count(c, e.Code)
}

// fail answers c with err after its handler returned (or for an agency).
func (s *Service) fail(c *call, err error) {
	e := s.wireError(c, err)
	msg := &nats.Msg{Subject: c.reply, Header: nats.Header(e.Headers())}
	msg.Header.Set(micro.ErrorHeader, e.Description)
	msg.Header.Set(micro.ErrorCodeHeader, strconv.Itoa(int(e.Code)))
	s.publish(c, msg, e.Code)
}

func (s *Service) wireError(c *call, err error) *messages.Error {
	e := replyFor(err)
	e.Agency, e.Batch = c.agency, c.batch
	return e
}

// respondNow answers c with v while its handler runs: through req if the
// reply goes to the inspector, else on the replies connection.
func (s *Service) respondNow(req micro.Request, c *call, v any) {
	if req == nil || toAgency(c.reply) {
		s.respond(c, v)
		return
	}
	if err := req.RespondJSON(v); err != nil {
		s.log.Warn("responder", "subject", c.subject, "error", err)
	}
	c.stats.count(c, 0)
}

// respond answers c with v after its handler returned (or for an agency).
func (s *Service) respond(c *call, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		s.fail(c, fmt.Errorf("encoding reply: %w", err))
		return
	}
	s.publish(c, &nats.Msg{Subject: c.reply, Data: data}, 0)
}

// publish sends a reply: an agency's on the replies connection, whose user
// may publish into agencies' inboxes and nowhere else; the inspector's on
// the service's.
func (s *Service) publish(c *call, msg *nats.Msg, code messages.Code) {
	nc := s.nc
	if toAgency(msg.Subject) {
		nc = s.replies
	}
	if err := nc.PublishMsg(msg); err != nil {
		s.log.Warn("responder", "subject", c.subject, "error", err)
	}
	c.stats.count(c, code)
}

// toAgency tells whether reply is an agency's inbox (answerable checked
// whose).
func toAgency(reply string) bool {
	_, ok := messages.InboxAgency(reply)
	return ok
}

// nameRequest reads, as far as it can, which agency and batch c is, so that
// even a refusal sent before anything is decoded (unknown agency, busy)
// names the request it answers, as agencies check. The decoders check
// these values; this only echoes them.
func (c *call) nameRequest() {
	c.agency, _ = messages.AgencyFromSubject(c.subject)
	if c.done {
		return
	}
	if v := c.header.Values(messages.HeaderBatch); len(v) == 1 {
		c.batch, _ = strconv.ParseUint(v[0], 10, 64)
	}
}

// answerable tells whether c may be answered on its reply subject: only
// where a reply belongs, an allow-list. A request on agency N's subjects
// is answered only into agency N's inboxes (_INBOX_agency.N.…), one on
// quiniela.status (and one on a subject naming no agency) only into the
// inspector's (_INBOX.…); a message without a reply subject is no
// request. Anything else — the ledger's subjects,
// the lease, the JetStream API, the service's own subjects, another
// agency's inbox — is a peer trying to make the central write where it
// may not (a relay), and is dropped unanswered, logged and counted
// (ignored in the endpoint's stats): the reply subject is the one thing
// that cannot be trusted. The broker holds the same line (the replies to
// agencies go out as a user that may publish into agencies' inboxes only,
// the service's user into the inspector's only, and the ledger is in
// another account), for micro's own $SRV answers too.
func (s *Service) answerable(c *call) bool {
	reason := refusedReply(c.subject, c.reply)
	if reason == "" {
		return true
	}
	s.ignore(c.stats, c.subject, c.reply, reason)
	return false
}

// ignore logs and counts a request dropped unanswered.
func (s *Service) ignore(stats *endpointStats, subject, reply, reason string) {
	s.log.Warn("solicitud_ignorada", "subject", subject, "reply", reply, "reason", reason)
	stats.ignored.Add(1)
}

// refusedReply is why a request on subject may not be answered on reply,
// or "" if it may.
func refusedReply(subject, reply string) string {
	if reply == "" {
		return "no reply subject: a request is needed"
	}
	if strings.ContainsAny(reply, "*> \t\r\n") {
		return "reply subject is not a plain subject"
	}
	if subject == messages.StatusSubject || strings.HasPrefix(subject, messages.MicroPrefix) {
		if !underPrefix(reply, natsauth.InspectorInboxPrefix) {
			return "reply subject is not the inspector's inbox (" + natsauth.InspectorInboxPrefix + ".…)"
		}
		return ""
	}
	agency, err := messages.AgencyFromSubject(subject)
	if err != nil {
		// No agency's: only the inspector (or a developer's plain
		// client, on _INBOX) hears the central's "unknown agency".
		if !underPrefix(reply, natsauth.InspectorInboxPrefix) {
			return "subject names no agency, and reply subject is not the inspector's inbox (" + natsauth.InspectorInboxPrefix + ".…)"
		}
		return ""
	}
	if owner, ok := messages.InboxAgency(reply); !ok || owner != agency || !underPrefix(reply, messages.AgencyInboxPrefix(agency)) {
		return "reply subject is not an inbox of agency " + strconv.Itoa(agency) + " (" + messages.AgencyInboxPrefix(agency) + ".…)"
	}
	return ""
}

// underPrefix tells whether subject is prefix followed by one or more tokens.
func underPrefix(subject, prefix string) bool {
	rest, found := strings.CutPrefix(subject, prefix+".")
	return found && rest != "" && !strings.HasPrefix(rest, ".") && !strings.HasSuffix(rest, ".") && !strings.Contains(rest, "..")
}
