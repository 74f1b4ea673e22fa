package deploy_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natsauth"
	"github.com/quiniela/quiniela/services/central"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// The checks of a finished lottery: its logs, the winners, the nats CLI,
// and what each user may not do.

func checkAuth(t *testing.T, url string, users natsauth.Users) {
	t.Helper()
	connect := func(user, password string, opts ...nats.Option) (*nats.Conn, error) {
		opts = append(opts, nats.Name("deploy-test"), nats.UserInfo(user, password), nats.Timeout(5*time.Second))
		return nats.Connect(url, opts...)
	}
	// A publish or subscription the user may not make: the server answers
	// -ERR 'Permissions Violation ...', asynchronously, and keeps the
	// connection open.
	violation := func(user, what string, do func(*nats.Conn) error) {
		t.Helper()
		errs := make(chan error, 4)
		nc, err := connect(user, users.Passwords[user], nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))
		if err != nil {
			t.Errorf("connecting as %s: %v", user, err)
			return
		}
		defer nc.Close()
		if err := do(nc); err != nil {
			t.Errorf("%s: %s: %v", user, what, err)
			return
		}
		nc.Flush() // the -ERR comes before the PONG
		select {
		case err := <-errs:
			if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), what) {
				t.Errorf("%s: %s: got %v, want a permissions violation", user, what, err)
			} else {
				t.Logf("%s refused: %v", user, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: %s: allowed, want a permissions violation", user, what)
		}
	}
	agency1 := natsauth.AgencyUser(1)
	violation(natsauth.InspectorUser, `Publish to "bets.agency.1"`, func(nc *nats.Conn) error {
		return nc.Publish("bets.agency.1", []byte("x"))
	})
	violation(agency1, `Publish to "bets.agency.2"`, func(nc *nats.Conn) error {
		return nc.Publish("bets.agency.2", []byte("x"))
	})
	violation(agency1, `Subscription to "bets.>"`, func(nc *nats.Conn) error {
		_, err := nc.SubscribeSync("bets.>")
		return err
	})
	violation(agency1, `Subscription to "_INBOX.>"`, func(nc *nats.Conn) error {
		_, err := nc.SubscribeSync("_INBOX.>")
		return err
	})
	// The ledger is in an account of its own: the inspector reads counts,
	// not the stream, and nobody but the central's ledger user reaches it.
	violation(natsauth.InspectorUser, `Publish to "$JS.API.STREAM.INFO.QUINIELA"`, func(nc *nats.Conn) error {
		return nc.PublishRequest("$JS.API.STREAM.INFO.QUINIELA", "_INBOX.x", nil)
	})
	violation(natsauth.InspectorUser, `Subscription to "bets.>"`, func(nc *nats.Conn) error {
		_, err := nc.SubscribeSync("bets.>")
		return err
	})
	// micro answers $SRV requests on the service's connection, which may
	// not publish into agencies' inboxes; their replies go out as
	// central-replies, which may publish nowhere else.
	violation(natsauth.CentralUser, `Publish to "_INBOX_agency.1.x"`, func(nc *nats.Conn) error {
		return nc.Publish("_INBOX_agency.1.x", []byte("x"))
	})
	violation(natsauth.RepliesUser, `Publish to "_INBOX.x"`, func(nc *nats.Conn) error {
		return nc.Publish("_INBOX.x", []byte("x"))
	})
	violation(natsauth.LedgerUser, `Publish to "$JS.API.STREAM.PURGE.QUINIELA"`, func(nc *nats.Conn) error {
		return nc.PublishRequest("$JS.API.STREAM.PURGE.QUINIELA", "_INBOX.x", nil)
	})

	for _, c := range []struct{ user, password string }{
		{natsauth.InspectorUser, "wrong"},
		{agency1, users.Passwords[natsauth.AgencyUser(2)]},
		{"", ""},
	} {
		nc, err := connect(c.user, c.password)
		if err == nil {
			nc.Close()
			t.Errorf("user %q with a wrong password: connected, want refused", c.user)
		} else if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("user %q with a wrong password: %v, want %v", c.user, err, nats.ErrAuthorization)
		}
	}
}

// checkAuthCLI checks what the README shows: the nats CLI, as the
// inspector, cannot send a batch, and a wrong password is refused.
func checkAuthCLI(t *testing.T, inspector natsTool, url string) {
	t.Helper()
	_, err := runNATS(t.Context(), inspector, url, "pub", "bets.agency.1", "x")
	if err == nil || !strings.Contains(err.Error(), `Permissions Violation for Publish to "bets.agency.1"`) {
		t.Errorf("nats pub bets.agency.1 as the inspector: %v, want a permissions violation", err)
	}
	_, err = runNATS(t.Context(), inspector.as(inspector.user, "wrong"), url, "micro", "ls")
	if err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		t.Errorf("nats micro ls with a wrong password: %v, want an authorization violation", err)
	}
}

// checkLogs checks what the stack logged for a finished lottery and returns
// the central's log: every batch stored with success, one draw, each
// agency's winners as many as its bets on the winning number.
func checkLogs(t *testing.T, s *stack, want input) string {
	t.Helper()
	logs := s.logs(t, "central")
	stored := linesOf(logs, "apuesta_recibida")
	if len(stored) == 0 {
		t.Errorf("central logged no apuesta_recibida line; log:\n%s", tail(logs, 20))
	}
	for _, l := range stored {
		if l.Result != logline.Success || l.Fields["cantidad"] == "" {
			// Why: the apuesta_rechazada lines that follow a fail.
			t.Errorf("apuesta_recibida line %+v, want result success and cantidad; rejected: %+v", l, linesOf(logs, "apuesta_rechazada"))
			break
		}
	}
	if draws := linesOf(logs, "sorteo"); len(draws) != 1 || draws[0].Result != logline.Success {
		t.Errorf("central logged sorteo %d times (%+v), want one success", len(draws), draws)
	}
	checkWinners(t, s, want)
	return logs
}

// checkWinners checks that each agency logged its winners: as many as its
// bets on the winning number.
func checkWinners(t *testing.T, s *stack, want input) {
	t.Helper()
	for i := 1; i <= agencies; i++ {
		agencyLog := s.logs(t, fmt.Sprintf("agency%d", i))
		got := linesOf(agencyLog, "consulta_ganadores")
		wantN := strconv.Itoa(len(want.winners[i]))
		if len(got) != 1 || got[0].Result != logline.Success || got[0].Fields["cant_ganadores"] != wantN {
			t.Errorf("agency %d logged consulta_ganadores %+v, want one success with cant_ganadores: %s; log:\n%s", i, got, wantN, tail(agencyLog, 20))
		}
	}
}

// checkCLI inspects the central with the nats CLI, as deploy/README.md shows.
func checkCLI(t *testing.T, cli, agency1 natsTool, url string, want input) {
	t.Helper()
	nats := func(args ...string) string {
		t.Helper()
		out, err := runNATS(t.Context(), cli, url, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if out := nats("micro", "ls"); !strings.Contains(out, central.ServiceName) {
		t.Errorf("nats micro ls does not list %s:\n%s", central.ServiceName, out)
	}
	info := nats("micro", "info", central.ServiceName)
	for _, s := range []string{"batch", "bets.agency.*", "done", "bets.agency.*.done", "winners", "winners.agency.*"} {
		if !strings.Contains(info, s) {
			t.Errorf("nats micro info %s does not show %q:\n%s", central.ServiceName, s, info)
		}
	}

	var stats []struct {
		Name      string `json:"name"`
		Endpoints []struct {
			Name        string `json:"name"`
			NumRequests int    `json:"num_requests"`
			NumErrors   int    `json:"num_errors"`
		} `json:"endpoints"`
	}
	out := nats("micro", "stats", central.ServiceName, "--json")
	if err := json.Unmarshal([]byte(out), &stats); err != nil || len(stats) != 1 {
		t.Fatalf("nats micro stats --json: %v, %d services:\n%s", err, len(stats), out)
	}
	requests := map[string]int{}
	for _, e := range stats[0].Endpoints {
		requests[e.Name] = e.NumRequests
	}
	if requests["batch"] == 0 || requests["done"] < agencies || requests["winners"] < agencies {
		t.Errorf("nats micro stats: requests per endpoint %v, want batches and at least %d done and winners", requests, agencies)
	}
	t.Logf("nats micro stats: requests per endpoint %v", requests)

	// The winners of agency 1 after the draw, as agency 1 on its inboxes
	// (the only ones the central answers it into): its documents on the
	// winning number.
	nats = func(args ...string) string {
		t.Helper()
		out, err := runNATS(t.Context(), agency1, url, append([]string{"--inbox-prefix", natsauth.InboxPrefix(1)}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if out := nats("req", "winners.agency.1", ""); !strings.Contains(out, `"agency":1`) {
		t.Errorf("nats req winners.agency.1 shows no winners JSON:\n%s", out)
	}
	var reply struct {
		Agency  int      `json:"agency"`
		Winners []string `json:"winners"`
	}
	raw := nats("req", "--raw", "winners.agency.1", "")
	if err := json.Unmarshal([]byte(raw), &reply); err != nil {
		t.Fatalf("nats req --raw winners.agency.1: %v: %q", err, raw)
	}
	slices.Sort(reply.Winners)
	if reply.Agency != 1 || !slices.Equal(reply.Winners, want.winners[1]) {
		t.Errorf("nats req winners.agency.1 = %+v, want agency 1's documents on %d: %v", reply, lottery.WinningNumber, want.winners[1])
	}
}

// checkSub checks that the CLI's subscriber printed the batches readably:
// their subjects, and the bets as the CSV rows of the agencies' files.
func checkSub(t *testing.T, sub *subscriber, want input) {
	t.Helper()
	// An agency says done after its last batch is acknowledged, and NATS
	// keeps one connection's order: once every done is printed, so is every batch.
	var dones []string
	for i := 1; i <= agencies; i++ {
		dones = append(dones, fmt.Sprintf("bets.agency.%d.done", i))
	}
	out := sub.stop(t, dones, 30*time.Second)
	// A resent batch is printed again: count distinct rows.
	seen := map[string]bool{}
	for line := range strings.SplitSeq(out, "\n") {
		if line = strings.TrimRight(line, "\r"); want.lines[line] != 0 {
			seen[line] = true
		}
	}
	for i := 1; i <= agencies; i++ {
		if subject := fmt.Sprintf("%q", fmt.Sprintf("bets.agency.%d", i)); !strings.Contains(out, subject) {
			t.Errorf("nats sub 'bets.>' printed no batch on %s; output starts:\n%s", subject, head(out, 20))
		}
	}
	if len(seen) != len(want.lines) {
		t.Errorf("nats sub 'bets.>' printed %d of the %d bets as CSV rows; output starts:\n%s", len(seen), len(want.lines), head(out, 20))
	}
	t.Logf("nats sub 'bets.>' printed all %d bets as CSV rows (%d bytes)", len(seen), len(out))
}
