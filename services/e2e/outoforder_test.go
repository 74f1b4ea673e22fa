package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/agency"
	"github.com/quiniela/quiniela/services/central"
	"github.com/quiniela/quiniela/services/central/fileledger"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// A 409 "out of order" names durable batches only (issue 20, item 2), shown
// end to end: the real agency (agency.Run) against a real central on NATS
// whose disk fails right after the 409. Batch 6's first attempt is lost on
// the agency's link, so batch 7 meets a 409 while batch 5 is written but
// not durable (its commit waits on the disk). The disk then fails: batch 5
// and what followed it are not stored, the central refuses all work until
// it restarts, and restarted it expects batch 5. An agency that had read the
// 409 as the acknowledgement of batch 5 would exit 1 there ("expects batch
// 5, which it had acknowledged before"); this one resends it and finishes:
// every bet stored once, one draw, its winners right, a handful of resends.
func TestOutOfOrderThenFailedWriteAgencyFinishes(t *testing.T) {
	const (
		holdFrom = 5 // the first batch the failing disk never makes durable
		lost     = 6 // the batch whose first attempt the link loses
	)
	ns := natstest.StartServer(t)
	link := startLossyLink(t, ns.Addr().String(), func(subject, reply string) bool {
		return subject == messages.BatchSubject(1) && strings.HasSuffix(reply, "."+strconv.Itoa(lost)+".1")
	})
	dir := t.TempDir()
	file := writeAgencyFile(t, dir, 1, syntheticRows(1, 40))
	betsFile := filepath.Join(dir, "bets.csv")
	clog := &natstest.Log{}

	first := startStoreCentral(t, ns.ClientURL(), betsFile, clog, holdFrom)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alog := &natstest.Log{}
	t.Cleanup(func() { // registered before the centrals' stops: runs after them
		if t.Failed() {
			t.Logf("central log:\n%s\nagency log:\n%s", clog, alog)
		}
	})
	errc := make(chan error, 1)
	go func() {
		errc <- agency.Run(ctx, natstest.Env(map[string]string{
			"NATS_URL": link.URL(), "AGENCY_ID": "1", "AGENCY_DATA_FILE": file, "AGENCY_CONFIG": agencyConfig,
			"BATCH_MAX_AMOUNT": "2", "BATCH_IN_FLIGHT": "4", "AGENCY_RETRY_FOR": "1m",
		}), alog)
	}()

	// The agency has taken in the 409 (it logs the resend it answers it
	// with), and batch 5's commit still waits on the disk.
	natstest.WaitFor(t, time.Minute, "the agency's resend after a 409", func() bool {
		for _, l := range alog.Lines("reenviar_lote") {
			if strings.Contains(l.Fields["error"], "out of order") {
				return true
			}
		}
		select {
		case err := <-errc:
			t.Fatalf("the agency ended before the 409: %v", err)
		default:
		}
		return false
	})
	if !first.store.holding() {
		t.Fatal("no write waits on the disk at the 409")
	}
	if n := first.store.fail(errors.New("input/output error")); n == 0 {
		t.Fatal("the disk failed with no write waiting on it")
	}
	first.stop(t)
	second := startStoreCentral(t, ns.ClientURL(), betsFile, clog, 0)
	defer second.stop(t)

	if err := <-errc; err != nil {
		t.Fatalf("agency: %v", err)
	}
	if link.dropped.Load() != 1 {
		t.Errorf("the link lost %d messages, want batch %d's first attempt", link.dropped.Load(), lost)
	}
	if !first.store.failedBatch(holdFrom) {
		t.Errorf("batch %d was not among the writes that failed", holdFrom)
	}
	if got := second.recovered; got != holdFrom-1 {
		t.Errorf("the restarted central recovered %d batches, want %d: the failed write must take batch %d away", got, holdFrom-1, holdFrom)
	}

	// The path: a few refusals and resends, not a storm.
	refused := strings.Count(clog.String(), "expects batch")
	resent := 0
	for _, l := range alog.Lines("resumen") {
		resent, _ = strconv.Atoi(l.Fields["resent"])
	}
	t.Logf("%d out-of-order refusals, %d batches resent", refused, resent)
	if refused < 1 || refused > 10 || resent > 60 {
		t.Errorf("%d out-of-order refusals and %d batches resent for 20 batches: want a handful", refused, resent)
	}

	// Exactly once, one draw, the right winners.
	want := winningDocs(t, file)
	got, err := askWinners(t, natstest.Connect(t, ns), 1)
	if err != nil || !slices.Equal(got.Winners, want) || len(want) == 0 {
		t.Errorf("winners of agency 1: %+v, %v; want exactly its bets on %d: %v", got, err, lottery.WinningNumber, want)
	}
	if lines := alog.Lines("consulta_ganadores"); len(lines) != 1 || lines[0].Fields["cant_ganadores"] != strconv.Itoa(len(want)) {
		t.Errorf("agency logged %v, want one consulta_ganadores with cant_ganadores: %d", lines, len(want))
	}
	second.stop(t)
	compareRows(t, inputRows(t, []string{file}), storedRows(t, betsFile))
	if n := clog.Count("action: sorteo | result: success"); n != 1 {
		t.Errorf("sorteo logged %d times, want once", n)
	}
}

// storeCentral is the central's file ledger, lottery and service, as
// central.Run puts them together, with a failingStore between the lottery
// and the ledger.
type storeCentral struct {
	ledger    *fileledger.Ledger
	store     *failingStore
	svc       *central.Service
	nc        *nats.Conn
	recovered uint64 // agency 1's batches the ledger recovered
	stopped   bool
}

func startStoreCentral(t *testing.T, url, betsFile string, w io.Writer, holdFrom uint64) *storeCentral {
	t.Helper()
	log, err := logline.New(w, "INFO")
	if err != nil {
		t.Fatal(err)
	}
	ledger, rec, err := fileledger.Open(betsFile)
	if err != nil {
		t.Fatal(err)
	}
	c := &storeCentral{ledger: ledger, store: &failingStore{Ledger: ledger, holdFrom: holdFrom}}
	if p := rec.Agencies[1]; p != nil {
		c.recovered = p.LastBatch
	}
	lot, err := lottery.New(t.Context(), 1, c.store, rec, log)
	if err != nil {
		t.Fatal(err)
	}
	if c.nc, err = nats.Connect(url); err != nil {
		t.Fatal(err)
	}
	c.svc, err = central.StartService(t.Context(), c.nc, lot, central.ServiceConfig{
		WinnersHold: 200 * time.Millisecond, MaxWindow: 4,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.stop(t) })
	return c
}

// stop stops the service, closes the ledger and then the connection, with
// the replies it holds sent first.
func (c *storeCentral) stop(t *testing.T) {
	t.Helper()
	if c.stopped {
		return
	}
	c.stopped = true
	c.svc.Stop()
	if err := c.ledger.Close(); err != nil {
		t.Errorf("closing the ledger: %v", err)
	}
	if err := c.nc.Flush(); err != nil {
		t.Errorf("sending the last replies: %v", err)
	}
	c.nc.Close()
}

// failingStore is the ledger on a disk that fails: from agency 1's batch
// holdFrom on, nothing it is handed reaches the ledger; it waits, not
// durable, as a commit waits on a slow disk, until fail calls it back with
// the disk's error. From then on it refuses all work, as the ledger does
// after a failed write, until the central restarts: the rows never reached
// the file, as the restarted ledger's recovery would leave them.
type failingStore struct {
	*fileledger.Ledger
	holdFrom uint64 // 0: never

	mu      sync.Mutex
	held    []func(error)
	heldSeq []uint64 // batches among them
	failed  []uint64
	err     error
}

func (s *failingStore) holding() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.heldSeq) > 0
}

// hold keeps done instead of handing work to the ledger, once a batch from
// holdFrom has come; it reports false when the work may go to the ledger.
func (s *failingStore) hold(seq uint64, done func(error)) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return true, s.err
	}
	if s.holdFrom == 0 || (len(s.heldSeq) == 0 && seq < s.holdFrom) {
		return false, nil
	}
	s.held = append(s.held, done)
	if seq > 0 {
		s.heldSeq = append(s.heldSeq, seq)
	}
	return true, nil
}

// fail calls every held write back with err and returns how many there were.
func (s *failingStore) fail(err error) int {
	s.mu.Lock()
	held := s.held
	s.held, s.failed = nil, s.heldSeq
	s.err = fmt.Errorf("store failed, refusing all writes until restarted: %w", err)
	s.mu.Unlock()
	for _, done := range held {
		done(err)
	}
	return len(held)
}

func (s *failingStore) failedBatch(seq uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.failed, seq)
}

func (s *failingStore) AppendBatch(agency int, seq, sum uint64, rows lottery.Rows, done func(error)) error {
	if held, err := s.hold(seq, done); held || err != nil {
		return err
	}
	return s.Ledger.AppendBatch(agency, seq, sum, rows, done)
}

func (s *failingStore) MarkDone(agency int, batches uint64, done func(error)) error {
	if held, err := s.hold(0, done); held || err != nil {
		return err
	}
	return s.Ledger.MarkDone(agency, batches, done)
}

func (s *failingStore) MarkDrawn(done func(error)) error {
	if held, err := s.hold(0, done); held || err != nil {
		return err
	}
	return s.Ledger.MarkDrawn(done)
}

func (s *failingStore) Sync(done func(error)) error {
	if held, err := s.hold(0, done); held || err != nil {
		return err
	}
	return s.Ledger.Sync(done)
}

func (s *failingStore) Settle() error {
	if s.holding() {
		return errors.New("the disk is failing")
	}
	return s.Ledger.Settle()
}

// lossyLink relays a client's connection to a NATS server and loses on the
// way the messages drop names, as a connection broken under them would:
// NATS core delivers at most once, and a batch lost this way is why a
// later one meets a 409.
type lossyLink struct {
	ln      net.Listener
	target  string
	drop    func(subject, reply string) bool
	dropped atomic.Int64

	mu    sync.Mutex
	conns []net.Conn
}

func startLossyLink(t *testing.T, target string, drop func(subject, reply string) bool) *lossyLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &lossyLink{ln: ln, target: target, drop: drop}
	go l.serve()
	t.Cleanup(func() {
		ln.Close()
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, c := range l.conns {
			c.Close()
		}
	})
	return l
}

func (l *lossyLink) URL() string { return "nats://" + l.ln.Addr().String() }

func (l *lossyLink) serve() {
	for {
		client, err := l.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", l.target)
		if err != nil {
			client.Close()
			continue
		}
		l.mu.Lock()
		l.conns = append(l.conns, client, server)
		l.mu.Unlock()
		go func() {
			io.Copy(client, server)
			client.Close()
		}()
		go func() {
			l.relay(client, server)
			server.Close()
		}()
	}
}

// relay copies the client's protocol to the server, one operation at a
// time, leaving out the messages (PUB, HPUB) that drop names.
func (l *lossyLink) relay(client io.Reader, server io.Writer) {
	r := bufio.NewReaderSize(client, 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		out := line
		f := strings.Fields(string(line))
		if len(f) >= 3 && (strings.EqualFold(f[0], "PUB") || strings.EqualFold(f[0], "HPUB")) {
			size, err := strconv.Atoi(f[len(f)-1])
			if err != nil {
				return
			}
			payload := make([]byte, size+2) // and its CRLF
			if _, err := io.ReadFull(r, payload); err != nil {
				return
			}
			reply := ""
			if n := len(f) - 3; strings.EqualFold(f[0], "PUB") && n == 1 || strings.EqualFold(f[0], "HPUB") && n == 2 {
				reply = f[2]
			}
			if l.drop(f[1], reply) {
				l.dropped.Add(1)
				continue
			}
			out = bytes.Join([][]byte{line, payload}, nil)
		}
		if _, err := server.Write(out); err != nil {
			return
		}
	}
}
