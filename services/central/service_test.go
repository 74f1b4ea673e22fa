package central_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// meetingStore is a Store in which agency 1's first batch does not return
// until agency 2's first batch has reached the store too: it can only
// complete if the central handles the two agencies in parallel.
type meetingStore struct {
	in1, in2 chan struct{}
}

func (m *meetingStore) AppendBatch(agency int, seq uint64, _ uint64, _ lottery.Rows, done func(error)) error {
	switch agency {
	case 1:
		close(m.in1)
		select {
		case <-m.in2:
		case <-time.After(10 * time.Second):
			done(errTimedOut)
			return nil
		}
	case 2:
		close(m.in2)
	}
	done(nil)
	return nil
}

var errTimedOut = errors.New("agency 2 never reached the store while agency 1 was in it")

func (m *meetingStore) MarkDone(int, uint64, func(error)) error { return nil }
func (m *meetingStore) MarkDrawn(func(error)) error             { return nil }
func (m *meetingStore) Sync(done func(error)) error             { done(nil); return nil }
func (m *meetingStore) Settle() error                           { return nil }
func (m *meetingStore) Usable() error                           { return nil }
func (m *meetingStore) Bets() (lottery.Bets, error) {
	return nil, errors.New("the meeting store keeps no bets")
}

func TestAgenciesAreServedInParallel(t *testing.T) {
	ns := natstest.StartServer(t)
	nc := natstest.Connect(t, ns)
	log, _ := logline.New(io.Discard, "INFO")
	ctx := context.Background()
	store := &meetingStore{in1: make(chan struct{}), in2: make(chan struct{})}
	lot, err := lottery.New(ctx, 2, store, lottery.Recovered{}, log)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := central.StartService(ctx, nc, lot, central.ServiceConfig{WinnersHold: time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()

	send := func(agency int) <-chan error {
		errc := make(chan error, 1)
		enc := messages.NewBatchEncoder(agency, 10)
		enc.Add(messages.Bet{Agency: agency, FirstName: "A", LastName: "B", Document: "1", Birthdate: time.Date(1990, 1, 2, 0, 0, 0, 0, time.UTC), Number: 7})
		go func() {
			// The central answers agency N only into its inboxes.
			anc, err := nats.Connect(ns.ClientURL(), nats.CustomInboxPrefix(messages.AgencyInboxPrefix(agency)))
			if err != nil {
				errc <- err
				return
			}
			defer anc.Close()
			reply, err := anc.RequestMsg(enc.Flush().Msg(), 15*time.Second)
			if err == nil {
				err = messages.ReplyError(reply)
			}
			errc <- err
		}()
		return errc
	}
	first := send(1)
	<-store.in1 // agency 1's batch is inside the store, and stays there…
	second := send(2)
	for agency, errc := range map[int]<-chan error{1: first, 2: second} {
		if err := <-errc; err != nil {
			t.Errorf("batch of agency %d: %v (agency 2 could not reach the store while agency 1 was in it: agencies are served serially)", agency, err)
		}
	}
}

// The service shows up in `nats micro` with its three endpoints.
func TestMicroServiceInfo(t *testing.T) {
	ns := natstest.StartServer(t)
	nc := natstest.Connect(t, ns)
	log, _ := logline.New(io.Discard, "INFO")
	ctx := context.Background()
	lot, err := lottery.New(ctx, 5, &meetingStore{}, lottery.Recovered{}, log)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := central.StartService(ctx, nc, lot, central.ServiceConfig{WinnersHold: time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()

	reply, err := nc.Request("$SRV.INFO."+central.ServiceName, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("$SRV.INFO: %v", err)
	}
	for _, want := range []string{`"name":"quiniela-central"`, `"subject":"bets.agency.*"`, `"subject":"bets.agency.*.done"`, `"subject":"winners.agency.*"`} {
		if !containsJSON(reply.Data, want) {
			t.Errorf("service info %s lacks %s", reply.Data, want)
		}
	}
}

func containsJSON(data []byte, s string) bool { return strings.Contains(string(data), s) }
