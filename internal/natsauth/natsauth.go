// Package natsauth confines each agency to its own subjects on the broker:
// one NATS user per agency, one for the central, one read-only for
// inspection. The same rules configure the embedded server, the compose
// stack's nats-server.conf and the tests' servers.
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
	CentralUser   = "central"
	InspectorUser = "inspector"
)

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
}

// Permissions are what each user may do. No user gets NATS's response
// permission (allow_responses): nats-server lets a client answer a request
// it received on any reply subject, even one its deny list names
// (client.go, pubAllowedFullCheck, v2.15.2), so a peer that sent
// `$SRV.PING` with reply subject bets.agency.2 could make the central
// publish a batch. Replies go only where Publish allows.
type Permissions struct {
	Publish     []string // subjects it may publish on
	PublishDeny []string // subjects it may never publish on, whatever Publish says
	Subscribe   []string
}

// CentralClaimSubject is where centrals claim a NATS server's lottery and
// answer each other's claims, so that only one serves it (the central's
// claim.go); only centrals publish or listen there.
const CentralClaimSubject = "central.claim"

// centralNeverPublishes are the subjects only agencies and the inspector
// publish on. Publish allows none of them already; the deny list keeps it
// so if an allow is ever widened.
var centralNeverPublishes = []string{"bets.>", "winners.>", "quiniela.>", "$SRV.>"}

// PermissionsOf returns the permissions of user.
func (u Users) PermissionsOf(user string) (Permissions, error) {
	switch user {
	case CentralUser:
		// It only answers requests: the agencies' (bets, done, winners) on
		// their inboxes, and the inspector's (winners, status, micro's
		// PING/INFO/STATS) on the default _INBOX. Being allowed rather than
		// granted per request, a reply still goes out after a failover to
		// another node. Which agency's inbox answers which request is the
		// central's check (and each agency checks the replies it gets).
		// With CENTRAL_LEDGER=jetstream it also writes and reads its
		// ledger stream (ledger.>) and the lease (a KV bucket) through the
		// JetStream API, whose replies come to its own _INBOX.
		return Permissions{
			Publish:     append([]string{"_INBOX.>", AgencyInboxes, CentralClaimSubject}, centralJetStream...),
			PublishDeny: centralNeverPublishes,
			Subscribe:   []string{messages.BatchSubjects, messages.DoneSubjects, messages.WinnersSubjects, messages.StatusSubject, "$SRV.>", "_INBOX.>", CentralClaimSubject},
		}, nil
	case InspectorUser:
		// Read-only: `nats micro ls/info/stats` (requests on $SRV),
		// `nats sub 'bets.>'` (watch batches go by), `nats req
		// winners.agency.N ''` (what an agency sees), `nats req
		// quiniela.status ''` (everyone's progress); replies on _INBOX. It
		// cannot send bets or done.
		// With the JetStream ledger: `nats stream info QUINIELA`, `nats
		// stream get`, `nats kv ls`, `nats kv get QUINIELA_LEASE active`;
		// no consumer, no write.
		return Permissions{
			Publish:   append([]string{"$SRV.>", messages.WinnersSubjects, messages.StatusSubject}, inspectorJetStream...),
			Subscribe: []string{"_INBOX.>", "bets.>"},
		}, nil
	}
	n, found := strings.CutPrefix(user, "agency-")
	agency, err := messages.ParseAgency(n)
	if !found || err != nil || agency > u.Agencies {
		return Permissions{}, fmt.Errorf("no user %q: users are %s, %s and agency-1 to agency-%d", user, CentralUser, InspectorUser, u.Agencies)
	}
	// Its own subjects only: not another's, and not quiniela.status, which
	// would tell it the other agencies' progress.
	return Permissions{
		Publish:   []string{messages.BatchSubject(agency), messages.DoneSubject(agency), messages.WinnersSubject(agency)},
		Subscribe: []string{InboxPrefix(agency) + ".>"},
	}, nil
}

// The JetStream API subjects the central and the inspector may use.
var (
	centralJetStream   = []string{"$JS.API.>", "$KV.>", "ledger.>"}
	inspectorJetStream = []string{"$JS.API.INFO", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST",
		"$JS.API.STREAM.INFO.*", "$JS.API.STREAM.MSG.GET.*", "$JS.API.DIRECT.GET.>"}
)

func (u Users) names() []string {
	names := []string{CentralUser, InspectorUser}
	for a := 1; a <= u.Agencies; a++ {
		names = append(names, AgencyUser(a))
	}
	return names
}

// ServerUsers are the users for an embedded or test server's Options.Users.
func (u Users) ServerUsers() ([]*server.User, error) {
	var out []*server.User
	for _, name := range u.names() {
		pw, ok := u.Passwords[name]
		if !ok || pw == "" {
			return nil, fmt.Errorf("credentials file has no password for %s", name)
		}
		p, err := u.PermissionsOf(name)
		if err != nil {
			return nil, err
		}
		perms := &server.Permissions{
			// A nil list would allow everything: deny all but what is listed.
			Publish:   &server.SubjectPermission{Allow: orNone(p.Publish), Deny: p.PublishDeny},
			Subscribe: &server.SubjectPermission{Allow: orNone(p.Subscribe)},
		}
		out = append(out, &server.User{Username: name, Password: pw, Permissions: perms})
	}
	return out, nil
}

// orNone turns an empty list into one that matches nothing a client can use.
func orNone(subjects []string) []string {
	if len(subjects) == 0 {
		return []string{"_nothing_"}
	}
	return subjects
}

// ServerConf is the authorization block of a nats-server.conf with the
// same users and permissions, for the compose stack.
func (u Users) ServerConf() (string, error) {
	var b strings.Builder
	b.WriteString("# Generated by quiniela (natsauth): development credentials, do not commit.\nauthorization {\n  users = [\n")
	for _, name := range u.names() {
		p, err := u.PermissionsOf(name)
		if err != nil {
			return "", err
		}
		q := func(list []string) string {
			data, _ := marshalNoEscape(orNone(list))
			return string(data)
		}
		fmt.Fprintf(&b, "    {user: %q, password: %q, permissions: {publish: {allow: %s", name, u.Passwords[name], q(p.Publish))
		if len(p.PublishDeny) > 0 {
			fmt.Fprintf(&b, ", deny: %s", q(p.PublishDeny))
		}
		fmt.Fprintf(&b, "}, subscribe: {allow: %s}}}\n", q(p.Subscribe))
	}
	b.WriteString("  ]\n}\n")
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

// NewUsers makes random passwords for the central, the inspector and
// agencies 1..n.
func NewUsers(n int) Users {
	u := Users{Agencies: n, Passwords: map[string]string{}}
	for _, name := range u.names() {
		u.Passwords[name] = rand.Text()
	}
	return u
}

// Generate writes development credentials for n agencies into dir, unless
// they are there already for as many agencies: users.json (for the
// embedded server), nats-server.conf (for a nats-server), and one
// <user>.env file a user with NATS_USER and NATS_PASSWORD.
func Generate(dir string, n int) (Users, error) {
	path := filepath.Join(dir, "users.json")
	if u, err := ReadUsers(path); err == nil && u.Agencies == n {
		return u, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Users{}, fmt.Errorf("creating credentials folder: %w", err)
	}
	u := NewUsers(n)
	data, _ := json.MarshalIndent(u, "", "  ")
	conf, err := u.ServerConf()
	if err != nil {
		return u, err
	}
	files := map[string]string{"users.json": string(data), "nats-server.conf": conf}
	for _, name := range u.names() {
		files[name+".env"] = fmt.Sprintf("NATS_USER=%s\nNATS_PASSWORD=%s\n", name, u.Passwords[name])
	}
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
