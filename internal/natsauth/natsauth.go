// Package natsauth confines each role to what it needs on the broker, with
// two NATS accounts:
//
//   - AGENCIES: one user per agency, the central's service user and its
//     replies user, the inspector (counts and stats) and the auditor (the
//     batches going by). No JetStream: no request made there can reach
//     the ledger, whatever its reply subject, and nats-server has no
//     JetStream API there to answer one.
//   - LEDGER: the central's ledger user alone, with JetStream, allowed only
//     its stream and the lease's bucket (no delete, no purge, no other
//     stream).
//
// The same rules configure the embedded server, the compose stacks'
// nats-server.conf and the tests' servers: ServerConf writes them, and
// Configure loads that text into a server's Options.
package natsauth

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/quiniela/quiniela/messages"
)

// User names.
const (
	CentralUser   = "central"         // the central's service: takes requests, answers the inspector's
	RepliesUser   = "central-replies" // the central's replies to agencies (into their inboxes only) and its claims
	LedgerUser    = "central-ledger"  // the central's ledger: its stream and lease
	InspectorUser = "inspector"       // operators: status and micro stats
	AuditorUser   = "auditor"         // operators, explicitly: the batches going by
)

// Accounts.
const (
	AgenciesAccount = "AGENCIES"
	LedgerAccount   = "LEDGER"
)

// LedgerEnvPrefix prefixes the central's ledger credentials in its
// environment: CENTRAL_LEDGER_NATS_USER, CENTRAL_LEDGER_NATS_PASSWORD…
const LedgerEnvPrefix = "CENTRAL_LEDGER_"

// RepliesEnvPrefix prefixes the credentials of the central's replies to
// agencies in its environment: CENTRAL_REPLIES_NATS_USER, …
const RepliesEnvPrefix = "CENTRAL_REPLIES_"

// DefaultStream is the ledger's stream (CENTRAL_STREAM's default).
const DefaultStream = "QUINIELA"

// InspectorInboxPrefix is where the inspector reads replies: nats.go's
// (and the nats CLI's) default inbox prefix, which in the AGENCIES account
// only the inspector may subscribe to.
const InspectorInboxPrefix = messages.DefaultInboxPrefix

// AgencyUser is agency N's user name.
func AgencyUser(agency int) string { return messages.AgencyName(agency) }

// InboxPrefix is agency N's reply inbox prefix, _INBOX_agency.N
// (messages.AgencyInboxPrefix): each agency may subscribe only there.
func InboxPrefix(agency int) string { return messages.AgencyInboxPrefix(agency) }

// AgencyInboxes matches every agency's reply inboxes: where the central
// may publish its replies to agencies.
const AgencyInboxes = messages.AgencyInboxes

// Users is the credentials file: the number of agencies and a password per
// user. It is generated for development (Generate) and never committed.
type Users struct {
	Agencies  int               `json:"agencies"`
	Passwords map[string]string `json:"passwords"`
	// Stream is the ledger's stream the ledger user may use (the lease is
	// bucket <Stream>_LEASE); empty: DefaultStream.
	Stream string `json:"stream,omitempty"`
}

// Permissions are what each user may do, in its Account. No user gets
// NATS's response permission (allow_responses): nats-server lets a client
// answer a request it received on any reply subject, even one its deny
// list names (client.go, pubAllowedFullCheck, v2.15.2), so a peer that
// sent `$SRV.PING` with reply subject bets.agency.2 could make the central
// publish a batch. Replies go only where Publish allows.
type Permissions struct {
	Account     string
	Publish     []string // subjects it may publish on
	PublishDeny []string // subjects it may never publish on, whatever Publish says
	Subscribe   []string
}

// CentralClaimSubject is where centrals claim a NATS server's lottery and
// answer each other's claims, so that only one serves it (the central's
// claim.go); only centrals publish or listen there.
const CentralClaimSubject = "central.claim"

// CentralInboxPrefix is where centrals answer each other's claims: the
// inboxes of the connection that claims (the replies user's), apart from
// the inspector's (_INBOX), where micro's answers may go.
const CentralInboxPrefix = "_INBOX_central"

// centralNeverPublishes are the subjects only agencies and the inspector
// publish on. Publish allows none of them already; the deny list keeps it
// so if an allow is ever widened.
var centralNeverPublishes = []string{messages.AllBetsSubjects, messages.AllWinnersSubjects, messages.AllQuinielaSubjects, messages.MicroSubjects}

// ledgerNeverPublishes are the JetStream API requests that destroy stored
// data: the ledger user's Publish allows none of them; the deny list keeps
// it so if an allow is ever widened.
var ledgerNeverPublishes = []string{"$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>",
	"$JS.API.STREAM.MSG.DELETE.>", "$JS.API.STREAM.SNAPSHOT.>", "$JS.API.STREAM.RESTORE.>",
	"$JS.API.ACCOUNT.>", "$JS.API.SERVER.>", "$JS.API.META.>"}

// PermissionsOf returns the permissions of user.
func (u Users) PermissionsOf(user string) (Permissions, error) {
	switch user {
	case CentralUser:
		// The micro service: it takes every request (bets, done, winners,
		// status, micro's PING/INFO/STATS) and answers only the
		// inspector's, on the inspector's inboxes. micro answers
		// $SRV.PING/INFO/STATS itself, on whatever reply subject the
		// requester names, and cannot be told otherwise: so this user may
		// publish nowhere else — not on the agencies' inboxes (their
		// replies go out as RepliesUser), not where centrals claim the
		// lottery (RepliesUser again), and its account holds no ledger.
		// Being allowed rather than granted per request, a reply still
		// goes out after a failover to another node.
		return Permissions{
			Account:     AgenciesAccount,
			Publish:     []string{InspectorInboxPrefix + ".>"},
			PublishDeny: append([]string{AgencyInboxes, CentralClaimSubject, CentralInboxPrefix + ".>"}, centralNeverPublishes...),
			Subscribe:   []string{messages.BatchSubjects, messages.DoneSubjects, messages.WinnersSubjects, messages.StatusSubject, messages.MicroSubjects},
		}, nil
	case RepliesUser:
		// The central's replies to agencies (batches, done, winners),
		// early or late, on their inboxes, and its claim on the lottery
		// (claims on CentralClaimSubject, their answers on
		// CentralInboxPrefix): it publishes nowhere else and reads only
		// claims. Which agency's inbox answers which request is the
		// central's check (and each agency checks the replies it gets);
		// only centrals publish claims, so a claim's reply subject is a
		// central's.
		return Permissions{
			Account:     AgenciesAccount,
			Publish:     []string{AgencyInboxes, CentralClaimSubject, CentralInboxPrefix + ".>"},
			PublishDeny: append([]string{InspectorInboxPrefix + ".>"}, centralNeverPublishes...),
			Subscribe:   []string{CentralClaimSubject, CentralInboxPrefix + ".>"},
		}, nil
	case LedgerUser:
		// The central's JetStream work, alone in its account: its stream
		// and the lease's bucket, created, updated, read, written and
		// consumed; replies on its own _INBOX.
		return Permissions{
			Account:     LedgerAccount,
			Publish:     ledgerPublishes(u.stream()),
			PublishDeny: ledgerNeverPublishes,
			Subscribe:   []string{messages.DefaultInboxPrefix + ".>"},
		}, nil
	case InspectorUser:
		// Counts and stats, no bet: `nats micro ls/info/stats` (requests
		// on $SRV) and `nats req quiniela.status ''` (everyone's
		// progress); replies on _INBOX. It cannot send bets or done, ask
		// winners, watch batches go by, nor reach the ledger (another
		// account).
		return Permissions{
			Account:   AgenciesAccount,
			Publish:   []string{messages.MicroSubjects, messages.StatusSubject},
			Subscribe: []string{InspectorInboxPrefix + ".>"},
		}, nil
	case AuditorUser:
		// Bet data, for an operator granted it: `nats sub 'bets.>'`, the
		// batches (and done notifications) as agencies send them. It
		// publishes nothing, so it can make no one answer anywhere, and
		// it reads neither replies nor the ledger.
		return Permissions{
			Account:   AgenciesAccount,
			Subscribe: []string{messages.AllBetsSubjects},
		}, nil
	}
	n, found := strings.CutPrefix(user, "agency-")
	agency, err := messages.ParseAgency(n)
	if !found || err != nil || agency > u.Agencies {
		return Permissions{}, fmt.Errorf("no user %q: users are %s, %s, %s, %s, %s and agency-1 to agency-%d", user, CentralUser, RepliesUser, LedgerUser, InspectorUser, AuditorUser, u.Agencies)
	}
	// Its own subjects only: not another's, and not quiniela.status, which
	// would tell it the other agencies' progress.
	return Permissions{
		Account:   AgenciesAccount,
		Publish:   []string{messages.BatchSubject(agency), messages.DoneSubject(agency), messages.WinnersSubject(agency)},
		Subscribe: []string{InboxPrefix(agency) + ".>"},
	}, nil
}

func (u Users) stream() string {
	if u.Stream == "" {
		return DefaultStream
	}
	return u.Stream
}

// ledgerPublishes are the subjects the central's ledger user publishes on
// for stream: what a whole run, a takeover and a fresh start need (checked
// on nats-server 2.15.2 by the e2e tests, which fail on any permissions
// violation of the central).
func ledgerPublishes(stream string) []string {
	bucket := stream + "_LEASE"
	out := []string{
		"$JS.API.INFO",                  // is JetStream there
		messages.LedgerSubjects(stream), // the ledger's entries
		"$KV." + bucket + ".>",          // the lease
		"$JS.ACK." + stream + ".>",
	}
	// The stream and the lease bucket's stream: created or updated at
	// start, read, and read by message.
	for _, s := range []string{stream, "KV_" + bucket} {
		out = append(out,
			"$JS.API.STREAM.CREATE."+s, "$JS.API.STREAM.UPDATE."+s, "$JS.API.STREAM.INFO."+s,
			"$JS.API.STREAM.MSG.GET."+s, "$JS.API.DIRECT.GET."+s, "$JS.API.DIRECT.GET."+s+".>")
	}
	// The copy's ordered consumer: created, read, pulled, deleted and
	// created again on a reset.
	return append(out, "$JS.API.CONSUMER.*."+stream, "$JS.API.CONSUMER.*."+stream+".>",
		"$JS.API.CONSUMER.MSG.NEXT."+stream+".>")
}

func (u Users) names() []string {
	names := []string{CentralUser, RepliesUser, LedgerUser, InspectorUser, AuditorUser}
	for a := 1; a <= u.Agencies; a++ {
		names = append(names, AgencyUser(a))
	}
	return names
}

// Configure gives a server's options these accounts and users (those of
// ServerConf, loaded as nats-server loads the file): each user in its
// account with its permissions, JetStream for the LEDGER account only.
// JetStream itself the caller turns on (Options.JetStream).
func (u Users) Configure(o *server.Options) error {
	conf, err := u.ServerConf()
	if err != nil {
		return err
	}
	var loaded server.Options
	if err := loaded.ProcessConfigString(conf); err != nil {
		return fmt.Errorf("loading the accounts and users: %w", err)
	}
	o.Accounts = append(o.Accounts, loaded.Accounts...)
	o.Users = append(o.Users, loaded.Users...)
	return nil
}

// Account is the account named name of o (after Configure), for a test
// that adds a user of its own to it.
func Account(o *server.Options, name string) *server.Account {
	for _, a := range o.Accounts {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// orNone turns an empty list into one that matches nothing a client can use.
func orNone(subjects []string) []string {
	if len(subjects) == 0 {
		return []string{"_nothing_"}
	}
	return subjects
}

// ServerConf is the accounts block of a nats-server.conf with these
// users and permissions, for the compose stacks (and, through Configure,
// the embedded and the tests' servers).
func (u Users) ServerConf() (string, error) {
	byAccount := map[string][]string{}
	for _, name := range u.names() {
		pw, ok := u.Passwords[name]
		if !ok || pw == "" {
			return "", fmt.Errorf("credentials file has no password for %s", name)
		}
		p, err := u.PermissionsOf(name)
		if err != nil {
			return "", err
		}
		q := func(list []string) string {
			data, _ := marshalNoEscape(orNone(list))
			return string(data)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "      {user: %q, password: %q, permissions: {publish: {allow: %s", name, pw, q(p.Publish))
		if len(p.PublishDeny) > 0 {
			fmt.Fprintf(&b, ", deny: %s", q(p.PublishDeny))
		}
		fmt.Fprintf(&b, "}, subscribe: {allow: %s}}}\n", q(p.Subscribe))
		byAccount[p.Account] = append(byAccount[p.Account], b.String())
	}
	var b strings.Builder
	b.WriteString("# Generated by quiniela (natsauth): development credentials, do not commit.\n")
	b.WriteString("# AGENCIES: agencies, the central's service and replies, the inspector, the auditor; no JetStream.\n")
	b.WriteString("# LEDGER: the central's stream and lease; JetStream (the server's -js or jetstream block).\n")
	b.WriteString("accounts {\n")
	for _, account := range []string{AgenciesAccount, LedgerAccount} {
		fmt.Fprintf(&b, "  %s {\n", account)
		if account == LedgerAccount {
			b.WriteString("    jetstream: enabled\n")
		}
		b.WriteString("    users = [\n")
		for _, line := range byAccount[account] {
			b.WriteString(line)
		}
		b.WriteString("    ]\n  }\n")
	}
	b.WriteString("}\n")
	return b.String(), nil
}

// ReadUsers reads a credentials file.
func ReadUsers(path string) (Users, error) {
	var u Users
	data, err := os.ReadFile(path)
	if err != nil {
		return u, fmt.Errorf("reading credentials: %w", err)
	}
	if err := json.Unmarshal(data, &u); err != nil {
		return u, fmt.Errorf("credentials file %s: %w", path, err)
	}
	if u.Agencies < 1 {
		return u, fmt.Errorf("credentials file %s: agencies %d, want at least 1", path, u.Agencies)
	}
	return u, nil
}

// complete tells whether every user has a password (a file from before a
// user was added has not).
func (u Users) complete() bool {
	for _, name := range u.names() {
		if u.Passwords[name] == "" {
			return false
		}
	}
	return true
}

// NewUsers makes random passwords for the central, the inspector and
// agencies 1..n.
func NewUsers(n int) Users {
	u := Users{Agencies: n, Passwords: map[string]string{}}
	for _, name := range u.names() {
		u.Passwords[name] = rand.Text()
	}
	return u
}

// CentralEnv is the central's environment for its three users: NATS_USER
// and NATS_PASSWORD (its service), CENTRAL_REPLIES_NATS_* (its replies to
// agencies), CENTRAL_LEDGER_NATS_* (its ledger), and CENTRAL_STREAM when
// the ledger user is granted another stream than DefaultStream; as
// KEY=value lines, in that order.
func (u Users) CentralEnv() []string {
	env := []string{"NATS_USER=" + CentralUser, "NATS_PASSWORD=" + u.Passwords[CentralUser]}
	for _, user := range []struct{ prefix, name string }{{RepliesEnvPrefix, RepliesUser}, {LedgerEnvPrefix, LedgerUser}} {
		env = append(env, user.prefix+"NATS_USER="+user.name, user.prefix+"NATS_PASSWORD="+u.Passwords[user.name])
	}
	if u.stream() != DefaultStream {
		env = append(env, "CENTRAL_STREAM="+u.stream())
	}
	return env
}

// Generate writes development credentials for n agencies into dir, unless
// they are there already for as many agencies: users.json (for the
// embedded server), nats-server.conf (for a nats-server), and one
// <user>.env file a user with NATS_USER and NATS_PASSWORD; central.env
// holds the central's three users (CentralEnv).
func Generate(dir string, n int) (Users, error) {
	return GenerateStream(dir, n, "")
}

// GenerateStream is Generate with the ledger user granted stream (and its
// lease bucket <stream>_LEASE) instead of DefaultStream; empty: the
// default.
func GenerateStream(dir string, n int, stream string) (Users, error) {
	if stream == DefaultStream {
		stream = ""
	}
	path := filepath.Join(dir, "users.json")
	if u, err := ReadUsers(path); err == nil && u.Agencies == n && u.Stream == stream && u.complete() {
		return u, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Users{}, fmt.Errorf("creating credentials folder: %w", err)
	}
	u := NewUsers(n)
	u.Stream = stream
	data, _ := json.MarshalIndent(u, "", "  ")
	conf, err := u.ServerConf()
	if err != nil {
		return u, err
	}
	files := map[string]string{"users.json": string(data), "nats-server.conf": conf}
	for _, name := range u.names() {
		files[name+".env"] = fmt.Sprintf("NATS_USER=%s\nNATS_PASSWORD=%s\n", name, u.Passwords[name])
	}
	files[CentralUser+".env"] = strings.Join(u.CentralEnv(), "\n") + "\n"
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return u, fmt.Errorf("writing credentials: %w", err)
		}
	}
	return u, nil
}

// marshalNoEscape is json.Marshal without HTML escaping: nats-server.conf
// reads "$SRV.>" literally, not "$SRV.\u003e".
func marshalNoEscape(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	err := enc.Encode(v)
	return bytes.TrimSpace(b.Bytes()), err
}
