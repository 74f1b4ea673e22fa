package messages_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/quiniela/quiniela/messages"
)

// TestWireContractThroughNATS runs the contract end to end through a real
// NATS server and a micro service: a batch filling the 8 kB rule to the byte,
// the size the central computes for it, a JSON reply, and an error reply
// with Quiniela-Next-Batch read back by ReplyError.
func TestWireContractThroughNATS(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)

	type seen struct {
		size int
		bh   messages.BatchHeader
		bets int
		err  error
	}
	got := make(chan seen, 1)
	svc, err := micro.AddService(nc, micro.Config{
		Name:    "quiniela-contract-test",
		Version: "0.0.1",
		Endpoint: &micro.EndpointConfig{
			Subject: messages.BatchSubjects,
			Handler: micro.HandlerFunc(func(req micro.Request) {
				h := nats.Header(req.Headers())
				s := seen{size: messages.WireSize(req.Subject(), h, len(req.Data()))}
				s.bh, s.err = messages.DecodeBatchHeader(req.Subject(), h)
				var bets []messages.Bet
				if s.err == nil {
					bets, s.err = messages.DecodeBets(nil, s.bh.Agency, req.Data())
				}
				s.bets = len(bets)
				got <- s
				if s.bh.Seq != 1 {
					e := &messages.Error{Code: messages.CodeOutOfOrder, Description: fmt.Sprintf("batch %d: want batch 1", s.bh.Seq), NextBatch: 1}
					req.Error(fmt.Sprint(int(e.Code)), e.Description, nil, micro.WithHeaders(e.Headers()))
					return
				}
				req.RespondJSON(messages.BatchReply{Agency: s.bh.Agency, Batch: s.bh.Seq, Bets: len(bets)})
			}),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })

	// A batch of 1-byte-name rows cut by bytes fills the budget closely;
	// pad the first name of its last row so that it fills it exactly.
	enc := messages.NewBatchEncoder(12, 10_000)
	tiny := bet(t, "a", "b")
	for {
		added, err := enc.Add(tiny)
		if err != nil {
			t.Fatal(err)
		}
		if !added {
			break
		}
	}
	full := enc.Flush()
	m := full.Msg()
	room := messages.MaxPayloadBytes(m.Subject, m.Header) - len(full.Payload)
	full.Payload = append([]byte(strings.Repeat("a", room)), full.Payload...)
	m = full.Msg()
	sent := messages.WireSize(m.Subject, m.Header, len(m.Data))
	if sent != messages.MaxMessageBytes {
		t.Fatalf("test batch of %d bytes, want exactly %d", sent, messages.MaxMessageBytes)
	}

	reply, err := nc.RequestMsg(m, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := <-got
	if s.err != nil {
		t.Fatalf("the service could not decode the batch: %v", s.err)
	}
	if s.size != sent {
		t.Errorf("the service counts %d bytes, the agency %d", s.size, sent)
	}
	if s.bh.Agency != 12 || s.bh.Seq != 1 || s.bh.Lines.String() != fmt.Sprintf("1-%d", full.Bets) || s.bets != full.Bets {
		t.Errorf("the service saw %+v with %d bets, want agency 12 seq 1 with %d", s.bh, s.bets, full.Bets)
	}
	if err := messages.ReplyError(reply); err != nil {
		t.Fatalf("ReplyError(success reply) = %v", err)
	}
	var ack messages.BatchReply
	if err := json.Unmarshal(reply.Data, &ack); err != nil {
		t.Fatalf("reply %q: %v", reply.Data, err)
	}
	if ack != (messages.BatchReply{Agency: 12, Batch: 1, Bets: full.Bets}) {
		t.Errorf("reply %+v", ack)
	}
	if want := fmt.Sprintf(`{"agency":12,"batch":1,"bets":%d,"added":0}`, full.Bets); string(reply.Data) != want {
		t.Errorf("reply %s, want %s", reply.Data, want)
	}

	// Batch 5 is out of order: the micro error reply carries the code, the
	// description and the batch expected.
	b5 := messages.Batch{Agency: 12, Seq: 5, Bets: 1, Lines: messages.LineSet{{First: 9, Last: 9}}, Payload: []byte(goodRow)}
	reply, err = nc.RequestMsg(b5.Msg(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	<-got
	err = messages.ReplyError(reply)
	var e *messages.Error
	if !errors.As(err, &e) {
		t.Fatalf("ReplyError = %v, want *messages.Error", err)
	}
	want := messages.Error{Code: messages.CodeOutOfOrder, Description: "batch 5: want batch 1", NextBatch: 1}
	if !reflect.DeepEqual(*e, want) {
		t.Errorf("ReplyError = %+v, want %+v", *e, want)
	}
}

func TestRepliesJSON(t *testing.T) {
	tests := []struct {
		v    any
		json string
	}{
		{messages.BatchReply{Agency: 1, Batch: 3, Bets: 120, Added: 120}, `{"agency":1,"batch":3,"bets":120,"added":120}`},
		{messages.BatchReply{Agency: 1, Batch: 3, Bets: 120, Window: 8}, `{"agency":1,"batch":3,"bets":120,"added":0,"window":8}`},
		{messages.DoneReply{Agency: 1, Batches: 3, Bets: 250}, `{"agency":1,"batches":3,"bets":250}`},
		{messages.WinnersReply{Agency: 1, Winners: []string{"30123456", "27000111"}}, `{"agency":1,"winners":["30123456","27000111"]}`},
		{messages.WinnersReply{Agency: 2, Winners: []string{}}, `{"agency":2,"winners":[]}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.v)
		if err != nil || string(b) != tt.json {
			t.Errorf("json.Marshal(%+v) = %s, %v; want %s", tt.v, b, err, tt.json)
		}
	}
}
