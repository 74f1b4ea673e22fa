package e2e

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/internal/natsauth"
	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/agency"
	"github.com/quiniela/quiniela/services/central"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// agencyConfig is the config.yaml the project ships for agencies.
const agencyConfig = "../agency/config.yaml"

// centralProc is a central.Run running in the test.
type centralProc struct {
	log      *natstest.Log
	betsFile string
	cancel   context.CancelFunc
	errc     chan error
	stopped  bool
}

// startCentral runs the central against url with a bets file in dir; env
// adds or overrides variables. It is stopped (and must stop cleanly) when
// the test ends, unless the test stops it first.
func startCentral(t *testing.T, url, dir string, env map[string]string) *centralProc {
	t.Helper()
	vars := map[string]string{
		"NATS_URL":          url,
		"CENTRAL_BETS_FILE": filepath.Join(dir, "bets.csv"),
		"CENTRAL_AGENCIES":  "5",
		// One central per test server: nobody else can answer its claim,
		// so the claim's wait only slows the suite (the tests of two
		// centrals at once set their own).
		"CENTRAL_CLAIM_WAIT": "100ms",
	}
	for k, v := range env {
		vars[k] = v
	}
	c := runCentral(t, vars)
	c.log.WaitFor(t, "central_lista", "success", 1, time.Minute) // a bound against hanging: a loaded machine may take seconds
	return c
}

// runCentral runs the central with exactly the environment vars, without
// waiting for it to be ready; it is stopped as startCentral's is.
func runCentral(t *testing.T, vars map[string]string) *centralProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &centralProc{log: &natstest.Log{}, betsFile: vars["CENTRAL_BETS_FILE"], cancel: cancel, errc: make(chan error, 1)}
	go func() { c.errc <- central.Run(ctx, natstest.Env(vars), c.log) }()
	t.Cleanup(func() {
		if !c.stopped {
			c.stop(t)
		}
	})
	return c
}

// stop cancels the central as SIGTERM would and checks it shut down cleanly.
func (c *centralProc) stop(t *testing.T) {
	t.Helper()
	c.stopped = true
	c.cancel()
	select {
	case err := <-c.errc:
		if err != nil {
			t.Errorf("central.Run returned %v; log:\n%s", err, c.log)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("central did not stop in 15 s; log:\n%s", c.log)
	}
}

// agencyResult is what one agency.Run did.
type agencyResult struct {
	id  int
	log *natstest.Log
	err error
}

// runAgencies runs agencies concurrently, agency i+1 reading files[i], and
// returns when all have finished.
func runAgencies(ctx context.Context, url string, files []string, env map[string]string) []agencyResult {
	return runAgenciesFrom(ctx, url, 1, files, env)
}

// runAgenciesFrom is runAgencies for agencies first, first+1, ….
func runAgenciesFrom(ctx context.Context, url string, first int, files []string, env map[string]string) []agencyResult {
	return runEach(ctx, url, first, files, func(int) map[string]string { return env })
}

// runAgenciesAs is runAgencies with each agency's own credentials.
func runAgenciesAs(ctx context.Context, url string, users natsauth.Users, files []string, env map[string]string) []agencyResult {
	return runEach(ctx, url, 1, files, func(id int) map[string]string {
		vars := agencyEnv(users, id)
		for k, v := range env {
			vars[k] = v
		}
		return vars
	})
}

func runEach(ctx context.Context, url string, first int, files []string, envOf func(id int) map[string]string) []agencyResult {
	results := make([]agencyResult, len(files))
	var wg sync.WaitGroup
	for i, file := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runAgency(ctx, url, first+i, file, envOf(first+i))
		}()
	}
	wg.Wait()
	return results
}

func runAgency(ctx context.Context, url string, id int, file string, env map[string]string) agencyResult {
	vars := map[string]string{
		"NATS_URL":         url,
		"AGENCY_ID":        strconv.Itoa(id),
		"AGENCY_DATA_FILE": file,
		"AGENCY_CONFIG":    agencyConfig,
	}
	for k, v := range env {
		vars[k] = v
	}
	log := &natstest.Log{}
	err := agency.Run(ctx, natstest.Env(vars), log)
	return agencyResult{id: id, log: log, err: err}
}

// inputRows reads agency files as the rows the central must store:
// "agency|first|last|document|birthdate|number", sorted.
func inputRows(t *testing.T, files []string) []string {
	t.Helper()
	var rows []string
	for i, file := range files {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSuffix(sc.Text(), "\r")
			if line == "" {
				continue
			}
			rows = append(rows, strconv.Itoa(i+1)+"|"+strings.ReplaceAll(line, ",", "|"))
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(rows)
	return rows
}

// storedRows reads bets.csv the same way, sorted.
func storedRows(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	rows := make([]string, len(recs))
	for i, r := range recs {
		rows[i] = strings.Join(r, "|")
	}
	slices.Sort(rows)
	return rows
}

// compareRows fails the test unless stored holds exactly the input rows.
func compareRows(t *testing.T, want, got []string) {
	t.Helper()
	if !natstest.CompareRows(t, want, got) {
		t.FailNow()
	}
}

// winningDocs are the documents of the bets on the winning number in an
// agency file, sorted.
func winningDocs(t *testing.T, file string) []string {
	t.Helper()
	var docs []string
	for _, row := range inputRows(t, []string{file}) {
		f := strings.Split(row, "|")
		if n, _ := strconv.Atoi(f[5]); n == lottery.WinningNumber {
			docs = append(docs, f[3])
		}
	}
	slices.Sort(docs)
	return docs
}

// requestMsg is nc.RequestMsg with the reply inbox an agency would use: a
// request on agency N's subjects waits on agency N's inbox, the only one
// the central answers it into; any other on nc's own inboxes.
func requestMsg(nc *nats.Conn, msg *nats.Msg, timeout time.Duration) (*nats.Msg, error) {
	agency, err := messages.AgencyFromSubject(msg.Subject)
	if err != nil {
		return nc.RequestMsg(msg, timeout)
	}
	inbox := messages.AgencyInboxPrefix(agency) + "." + strings.TrimPrefix(nats.NewInbox(), "_INBOX.")
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	m := *msg
	m.Reply = inbox
	if err := nc.PublishMsg(&m); err != nil {
		return nil, err
	}
	reply, err := sub.NextMsg(timeout)
	if errors.Is(err, nats.ErrTimeout) {
		return nil, fmt.Errorf("request on %s: %w", msg.Subject, err)
	}
	if err == nil && len(reply.Data) == 0 && reply.Header.Get("Status") == "503" {
		return nil, nats.ErrNoResponders
	}
	return reply, err
}

// askWinners asks winners.agency.N with a plain client, as an agency does.
func askWinners(t *testing.T, nc *nats.Conn, agencyID int) (messages.WinnersReply, error) {
	t.Helper()
	msg, err := requestMsg(nc, &nats.Msg{Subject: messages.WinnersSubject(agencyID)}, 5*time.Second)
	if err != nil {
		return messages.WinnersReply{}, err
	}
	if err := messages.ReplyError(msg); err != nil {
		if len(msg.Data) > 0 {
			t.Errorf("error reply to winners of agency %d carries data: %q", agencyID, msg.Data)
		}
		return messages.WinnersReply{}, err
	}
	var reply messages.WinnersReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return reply, fmt.Errorf("decoding winners reply %q: %w", msg.Data, err)
	}
	slices.Sort(reply.Winners)
	return reply, nil
}

// writeAgencyFile writes rows (without agency) to dir/agency-N.csv.
func writeAgencyFile(t *testing.T, dir string, id int, rows []string) string {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("agency-%d.csv", id))
	if err := os.WriteFile(path, []byte(strings.Join(rows, "\r\n")+"\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// syntheticRows makes n valid rows for agency id, every 7th on the winning number.
func syntheticRows(id, n int) []string {
	rows := make([]string, n)
	for i := range rows {
		number := (i*37 + id) % 10000
		if i%7 == 3 {
			number = lottery.WinningNumber
		}
		rows[i] = fmt.Sprintf("Nombre %d,Apellido %d,%d,19%02d-%02d-%02d,%d", i, id, 30000000+id*100000+i, 50+i%50, 1+i%12, 1+i%28, number)
	}
	return rows
}

func checkNoError(t *testing.T, results []agencyResult) {
	t.Helper()
	for _, r := range results {
		var skipped *agency.SkippedRowsError
		if r.err != nil && !errors.As(r.err, &skipped) {
			t.Fatalf("agency %d: %v; log:\n%s", r.id, r.err, r.log)
		}
		if r.err != nil {
			t.Fatalf("agency %d skipped rows: %v; log:\n%s", r.id, r.err, r.log)
		}
	}
}
