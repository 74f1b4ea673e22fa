package central_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/services/central"
	"github.com/quiniela/quiniela/services/central/lottery/lotterytest"
)

// runCentral runs a central with env until ctx ends: its log, and where
// Run's error comes.
func runCentral(ctx context.Context, env map[string]string) (*natstest.Log, chan error) {
	log := &natstest.Log{}
	errc := make(chan error, 1)
	go func() { errc <- central.Run(ctx, natstest.Env(env), log) }()
	return log, errc
}

// Two file-ledger centrals, each with its own bets file, started at once on
// one NATS server: exactly one serves, the other exits saying which holds
// the lottery, before it adds an endpoint. Then a third, started later, is
// refused by the one serving.
func TestOneCentralPerLottery(t *testing.T) {
	ns := natstest.StartServer(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := func(name string) (*natstest.Log, chan error) {
		return runCentral(ctx, map[string]string{"NATS_URL": ns.ClientURL(), "CENTRAL_BETS_FILE": filepath.Join(dir, name+".csv")})
	}
	logs := make([]*natstest.Log, 2)
	errcs := make([]chan error, 2)
	for i, name := range []string{"a", "b"} {
		logs[i], errcs[i] = start(name)
	}
	// The loser exits on its own; the winner serves until cancelled.
	var loser, winner int
	select {
	case err := <-errcs[0]:
		loser, winner = 0, 1
		errcs[0] <- err
	case err := <-errcs[1]:
		loser, winner = 1, 0
		errcs[1] <- err
	case <-time.After(time.Minute):
		t.Fatalf("neither central exited within a minute; logs:\n%s\n%s", logs[0], logs[1])
	}
	err := <-errcs[loser]
	if !errors.Is(err, central.ErrLotteryHeld) || !strings.Contains(err.Error(), "pid") || !strings.Contains(err.Error(), "host") {
		t.Errorf("the central that lost: %v, want ErrLotteryHeld naming the holder's host and pid", err)
	}
	if n := len(logs[loser].Lines("central_lista")); n != 0 {
		t.Errorf("the central that lost logged central_lista %d times", n)
	}
	logs[winner].WaitFor(t, "central_lista", logline.Success, 1, time.Minute)
	select {
	case err := <-errcs[winner]:
		t.Fatalf("the central that won exited: %v", err)
	default:
	}
	// One service instance answers micro's PING.
	nc := natstest.Connect(t, ns)
	sub, _ := nc.SubscribeSync(nc.NewRespInbox())
	nc.PublishRequest("$SRV.PING."+central.ServiceName, sub.Subject, nil)
	if _, err := sub.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("no service answers PING: %v", err)
	}
	if extra, err := sub.NextMsg(1500 * time.Millisecond); err == nil {
		t.Errorf("a second service instance answers PING: %s", extra.Data)
	}

	// Later: refused, naming the one that serves it.
	_, errc := start("c")
	if err := <-errc; !errors.Is(err, central.ErrLotteryHeld) || !strings.Contains(err.Error(), "serves it") || !strings.Contains(err.Error(), filepath.Join(dir, []string{"a", "b"}[winner]+".csv")) {
		t.Errorf("a third central: %v, want ErrLotteryHeld saying the winner serves it", err)
	}
	cancel()
	if err := <-errcs[winner]; err != nil {
		t.Errorf("the winner's shutdown: %v", err)
	}
	// Nothing reached the loser's store.
	if n := len(lotterytest.Collect(t, filepath.Join(dir, []string{"a", "b"}[loser]+".csv"))); n != 0 {
		t.Errorf("the central that lost stored %d bets", n)
	}
}

// Whatever the ledger: a file-ledger central is refused beside a JetStream
// one, and a JetStream one beside a file-ledger one; two JetStream
// centrals of one stream (active and standby) both run.
func TestOneCentralPerLotteryWhateverTheLedger(t *testing.T) {
	ns := natstest.StartJetStreamServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := func(ledger string) (*natstest.Log, chan error) {
		return runCentral(ctx, map[string]string{
			"NATS_URL": ns.ClientURL(), "CENTRAL_BETS_FILE": filepath.Join(t.TempDir(), "bets.csv"), "CENTRAL_LEDGER": ledger,
		})
	}
	jsLog, jsErr := start("jetstream")
	jsLog.WaitFor(t, "central_lista", logline.Success, 1, time.Minute)
	standbyLog, standbyErr := start("jetstream")
	standbyLog.WaitFor(t, "central_en_espera", logline.InProgress, 1, time.Minute)
	_, fileErr := start("file")
	if err := <-fileErr; !errors.Is(err, central.ErrLotteryHeld) || !strings.Contains(err.Error(), "jetstream ledger on stream QUINIELA") {
		t.Errorf("a file-ledger central beside JetStream ones: %v, want ErrLotteryHeld naming a JetStream central", err)
	}
	cancel()
	for _, errc := range []chan error{jsErr, standbyErr} {
		if err := <-errc; err != nil {
			t.Errorf("a JetStream central: %v", err)
		}
	}

	// The other way round.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	fileLog, fileErr := start("file")
	fileLog.WaitFor(t, "central_lista", logline.Success, 1, time.Minute)
	_, jsErr = start("jetstream")
	if err := <-jsErr; !errors.Is(err, central.ErrLotteryHeld) || !strings.Contains(err.Error(), "file ledger") {
		t.Errorf("a JetStream central beside a file-ledger one: %v, want ErrLotteryHeld naming it", err)
	}
	cancel()
	if err := <-fileErr; err != nil {
		t.Errorf("the file-ledger central: %v", err)
	}
}

// The backstop, against a central that does not say when it began
// serving: a serving central that hears another announce it serves too
// (its claim's answer came too late) stops if the other's ID is the
// lower, saying who keeps the lottery, and keeps serving if it is not.
func TestServingCentralStopsForALowerID(t *testing.T) {
	ns := natstest.StartServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log, errc := runCentral(ctx, map[string]string{"NATS_URL": ns.ClientURL(), "CENTRAL_BETS_FILE": filepath.Join(t.TempDir(), "bets.csv")})
	log.WaitFor(t, "central_lista", logline.Success, 1, time.Minute)
	nc := natstest.Connect(t, ns)
	announce := func(id string) {
		nc.Publish(central.ClaimSubject, []byte(`{"id":"`+id+`","host":"elsewhere","pid":42,"ledger":"file","bets_file":"other.csv","state":"serving"}`))
		nc.Flush()
	}
	announce("~higher") // '~' sorts after any host name
	// Still serving: it answers a claim.
	reply, err := nc.Request(central.ClaimSubject, []byte(`{"id":"~probe","state":"claiming"}`), 30*time.Second)
	if err != nil || !strings.Contains(string(reply.Data), `"state":"serving"`) {
		t.Fatalf("after a higher ID's announcement: %v %s, want it still serving", err, reply.Data)
	}
	announce("!lower") // '!' sorts before any host name
	select {
	case err := <-errc:
		if !errors.Is(err, central.ErrLotteryHeld) || !strings.Contains(err.Error(), "!lower") || !strings.Contains(err.Error(), "pid 42") {
			t.Errorf("Run: %v, want ErrLotteryHeld naming the other central", err)
		}
	case <-time.After(time.Minute):
		t.Fatalf("the central still serves beside a lower ID; log:\n%s", log)
	}
}

// The backstop judges by serving time first: a newcomer that announces it
// serves beside a central that served before it (its claim's answer came
// too late) is the one that stops, whatever their IDs — its store is the
// empty one, and agencies would find the batches they had sent gone. The
// established central keeps serving and answers the announcement with its
// own, which names when it began; a central that served before it stops
// it.
func TestServingCentralKeepsTheLotteryAgainstANewcomer(t *testing.T) {
	ns := natstest.StartServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log, errc := runCentral(ctx, map[string]string{"NATS_URL": ns.ClientURL(), "CENTRAL_BETS_FILE": filepath.Join(t.TempDir(), "bets.csv")})
	log.WaitFor(t, "central_lista", logline.Success, 1, time.Minute)
	nc := natstest.Connect(t, ns)
	claims, err := nc.SubscribeSync(central.ClaimSubject)
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	announce := func(id string, since time.Time) {
		nc.Publish(central.ClaimSubject, []byte(`{"id":"`+id+`","host":"elsewhere","pid":42,"ledger":"file","bets_file":"other.csv","state":"serving","serving_since":"`+since.Format(time.RFC3339Nano)+`"}`))
		nc.Flush()
	}

	// A newcomer with the lower ID: the central keeps serving and says so.
	announce("!lower", time.Now().Add(time.Hour))
	deadline := time.Now().Add(30 * time.Second) // a bound against hanging
	for {
		m, err := claims.NextMsg(time.Until(deadline))
		if err != nil {
			t.Fatalf("no answer to a newcomer's announcement: %v; log:\n%s", err, log)
		}
		var c central.Claimant
		if json.Unmarshal(m.Data, &c) == nil && c.ID != "!lower" {
			if c.State != "serving" || c.ServingSince.IsZero() {
				t.Fatalf("the central answered the newcomer with %s, want its serving announcement with its start", m.Data)
			}
			break
		}
	}
	reply, err := nc.Request(central.ClaimSubject, []byte(`{"id":"~probe","state":"claiming"}`), 30*time.Second)
	if err != nil || !strings.Contains(string(reply.Data), `"state":"serving"`) {
		t.Fatalf("after a newcomer's announcement: %v %s, want it still serving", err, reply.Data)
	}

	// A central that served before it, with the higher ID: this one stops.
	announce("~older", time.Now().Add(-time.Hour))
	select {
	case err := <-errc:
		if !errors.Is(err, central.ErrLotteryHeld) || !strings.Contains(err.Error(), "~older") || !strings.Contains(err.Error(), "serving since") {
			t.Errorf("Run: %v, want ErrLotteryHeld naming the older central and when it began", err)
		}
	case <-time.After(time.Minute):
		t.Fatalf("the central still serves beside one that served first; log:\n%s", log)
	}
}

// What reaches the claim subject that is not a central's claim — on a
// server without authorization, micro's answer to a $SRV request a peer
// gave central.claim as reply subject has an "id" too, and a lower one;
// with natsauth's users only centrals' claims connection may publish
// there — neither refuses a starting central nor
// stops a serving one.
func TestClaimIgnoresWhatIsNoClaim(t *testing.T) {
	ns := natstest.StartServer(t)
	nc := natstest.Connect(t, ns)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	junk := []byte(`{"name":"quiniela-central","id":"0","version":"1.2.0","type":"io.nats.micro.v1.ping_response"}`)
	done := make(chan struct{})
	go func() { // through the whole claim window and after
		defer close(done)
		for ctx.Err() == nil {
			nc.Publish(central.ClaimSubject, junk)
			nc.Flush()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	defer func() { cancel(); <-done }()
	log, errc := runCentral(ctx, map[string]string{"NATS_URL": ns.ClientURL(), "CENTRAL_BETS_FILE": filepath.Join(t.TempDir(), "bets.csv")})
	log.WaitFor(t, "central_lista", logline.Success, 1, 30*time.Second)
	select {
	case err := <-errc:
		t.Fatalf("the central stopped: %v", err)
	case <-time.After(2 * time.Second): // the junk keeps coming while it serves
	}
}
