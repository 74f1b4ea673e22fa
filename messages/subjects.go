package messages

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/micro"
)

// Subjects. An agency N publishes only on subjects that end in its own
// number, so the broker can confine it there (and the central checks it too).
const (
	betsPrefix    = betsRoot + "agency."
	winnersPrefix = winnersRoot + "agency."
	doneSuffix    = ".done"

	// BatchSubjects, DoneSubjects and WinnersSubjects are the wildcards the
	// central subscribes to.
	BatchSubjects   = betsPrefix + "*"
	DoneSubjects    = betsPrefix + "*" + doneSuffix
	WinnersSubjects = winnersPrefix + "*"

	// StatusSubject is the central's status endpoint: progress of every
	// agency and the draw (StatusReply). For operators, not for agencies.
	StatusSubject = quinielaRoot + "status"
)

// The roots of the protocol's subjects, as the broker's permissions name
// them.
const (
	// AllBetsSubjects, bets.>, matches every batch and done notification:
	// what the auditor may watch and the central may never publish on.
	AllBetsSubjects = betsRoot + ">"
	// AllWinnersSubjects, winners.>, matches every agency's winners
	// requests.
	AllWinnersSubjects = winnersRoot + ">"
	// AllQuinielaSubjects, quiniela.>, matches StatusSubject and whatever
	// the service adds beside it.
	AllQuinielaSubjects = quinielaRoot + ">"
	// MicroSubjects, $SRV.>, matches micro's own requests to every service
	// ($SRV.PING, $SRV.INFO.<name>, $SRV.STATS.<name>).
	MicroSubjects = MicroPrefix + ">"
	// MicroPrefix, "$SRV.", begins every subject of MicroSubjects.
	MicroPrefix = micro.APIPrefix + "."

	betsRoot     = "bets."
	winnersRoot  = "winners."
	quinielaRoot = "quiniela."
)

// DefaultInboxPrefix is nats.go's (and the nats CLI's) inbox prefix, where
// a client that sets none reads its replies: the inspector's and the
// central's ledger user's.
const DefaultInboxPrefix = "_INBOX"

// BatchSubject is where agency sends its batches: bets.agency.N.
func BatchSubject(agency int) string { return betsPrefix + strconv.Itoa(agency) }

// DoneSubject is where agency says it has sent every batch: bets.agency.N.done.
func DoneSubject(agency int) string { return BatchSubject(agency) + doneSuffix }

// WinnersSubject is where agency asks for its winners: winners.agency.N.
func WinnersSubject(agency int) string { return winnersPrefix + strconv.Itoa(agency) }

// AgencyFromSubject returns N from bets.agency.N, bets.agency.N.done or
// winners.agency.N. N must be a plain positive decimal ("1", not "01", "+1"
// or "0"), so that one agency has exactly one spelling.
func AgencyFromSubject(subject string) (int, error) {
	var token string
	switch {
	case strings.HasPrefix(subject, betsPrefix):
		token = strings.TrimSuffix(subject[len(betsPrefix):], doneSuffix)
	case strings.HasPrefix(subject, winnersPrefix):
		token = subject[len(winnersPrefix):]
	default:
		return 0, fmt.Errorf("subject %s is not a quiniela subject", Clip(subject))
	}
	n, err := ParseAgency(token)
	if err != nil {
		return 0, fmt.Errorf("subject %s: %w", Clip(subject), err)
	}
	return n, nil
}

// ParseAgency parses an agency number: a positive decimal without sign or
// leading zeros.
func ParseAgency(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || strconv.Itoa(n) != s {
		return 0, fmt.Errorf("agency %s is not a positive number", Clip(s))
	}
	return n, nil
}

// AgencyInboxPrefix is the prefix of agency N's reply inboxes,
// _INBOX_agency.N. Replies go to inboxes; an agency allowed the common
// _INBOX.> could read the others' replies, so each has its own, and with
// authorization on only agency N may subscribe there. The central answers
// agency N's subjects only there. N is a token of its own so that one
// wildcard, [AgencyInboxes], lets the central publish into every agency's
// inboxes: NATS has no wildcard inside a token (_INBOX_agency_*.> matches
// only a literal "*"), and one permission per agency cost the broker 65 MB
// and 200 ms per connection of the central at 100,000 agencies.
func AgencyInboxPrefix(agency int) string { return agencyInboxRoot + "." + strconv.Itoa(agency) }

const agencyInboxRoot = "_INBOX_agency"

// AgencyInboxes, _INBOX_agency.*.>, matches the reply inboxes of every
// agency.
const AgencyInboxes = agencyInboxRoot + ".*.>"

// InboxAgency is the agency whose inboxes reply is under, if it is under
// one's (_INBOX_agency.N.…): the only agency that may read it.
func InboxAgency(reply string) (int, bool) {
	rest, found := strings.CutPrefix(reply, agencyInboxRoot+".")
	if !found {
		return 0, false
	}
	token, _, _ := strings.Cut(rest, ".")
	agency, err := ParseAgency(token)
	return agency, err == nil
}

// AgencyName is agency N's name: "agency-N", its NATS user and the name of
// its connection.
func AgencyName(agency int) string { return "agency-" + strconv.Itoa(agency) }

// LedgerSubjects are the subjects of the central's ledger, the stream named
// stream: ledger.<stream>.>. No agency may use them, and they overlap none
// of an agency's, so an agency's request is never stored by accident. The
// package doc describes their messages.
func LedgerSubjects(stream string) string { return ledgerRoot + stream + ".>" }

// LedgerAgencySubject holds agency's accepted batches and then its done, in
// order: ledger.<stream>.agency.N.
func LedgerAgencySubject(stream string, agency int) string {
	return ledgerRoot + stream + ".agency." + strconv.Itoa(agency)
}

// LedgerDrawSubject holds the draw, written once: ledger.<stream>.draw.
func LedgerDrawSubject(stream string) string { return ledgerRoot + stream + ".draw" }

const ledgerRoot = "ledger."

// Headers of the ledger's messages, besides HeaderAgency, HeaderBatch,
// HeaderBatches and HeaderLines; the package doc describes them.
const (
	HeaderSums   = "Quiniela-Sums"   // the BatchSum of each batch of a message
	HeaderCounts = "Quiniela-Counts" // the rows stored of each batch of a message
	HeaderPart   = "Quiniela-Part"   // i/k: part i of k of a batch written in parts
	HeaderWriter = "Quiniela-Writer" // the CENTRAL_NAME of the central that wrote the message
)
