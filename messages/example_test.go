package messages_test

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/quiniela/quiniela/messages"
)

// An agency cuts its bets into batches of at most maxAmount bets and 8 kB
// on the wire, and sends each as a request: a CSV row per bet, the headers
// naming the agency, the batch and the file lines of its rows.
func ExampleBatchEncoder() {
	enc := messages.NewBatchEncoder(1, 2) // agency 1, at most 2 bets a batch
	var batches []*messages.Batch
	for _, row := range []string{
		"Juan,Perez,30123456,1990-05-17,7574",
		"Ana,Gomez,28999111,1985-11-02,1234",
		"Luis,Diaz,33444555,2001-01-30,42",
	} {
		bet, err := messages.ParseBet(1, mustSplit(row))
		if err != nil {
			fmt.Println(err)
			return
		}
		ok, err := enc.Add(bet)
		if err == nil && !ok { // full: send it, start the next
			batches = append(batches, enc.Flush())
			_, err = enc.Add(bet)
		}
		if err != nil {
			fmt.Println(err)
			return
		}
	}
	batches = append(batches, enc.Flush())
	for _, b := range batches {
		msg := b.Msg()
		fmt.Printf("%s %s:%s %s:%s\n%s", msg.Subject,
			messages.HeaderBatch, msg.Header.Get(messages.HeaderBatch),
			messages.HeaderLines, msg.Header.Get(messages.HeaderLines), msg.Data)
	}
	// Output:
	// bets.agency.1 Quiniela-Batch:1 Quiniela-Lines:1-2
	// Juan,Perez,30123456,1990-05-17,7574
	// Ana,Gomez,28999111,1985-11-02,1234
	// bets.agency.1 Quiniela-Batch:2 Quiniela-Lines:3
	// Luis,Diaz,33444555,2001-01-30,42
}

// The central reads a batch whole: subject, headers, size and every row,
// into the rows its store keeps (the agency first); a bad row refuses the
// whole batch with a code and a description that names the row.
func ExampleDecodeBatch() {
	msg := &nats.Msg{Subject: messages.BatchSubject(3), Header: nats.Header{}}
	msg.Header.Set(messages.HeaderAgency, "3")
	msg.Header.Set(messages.HeaderBatch, "1")
	msg.Header.Set(messages.HeaderLines, "1-2")
	msg.Data = []byte("Juan,Perez,30123456,1990-05-17,7574\nAna,Gomez,28999111,1985-11-02,1234\n")

	req, err := messages.DecodeBatch(nil, msg.Subject, msg.Header, msg.Data)
	fmt.Println(err)
	fmt.Printf("agency %d batch %d: %d rows, lines %v\n%s", req.Agency, req.Seq, req.Rows, req.Lines, req.Stored)

	msg.Data = []byte("Juan,Perez,30123456,1990-05-17,7574\nAna,Gomez,28999111,1985-11-02,12345\n")
	_, err = messages.DecodeBatch(nil, msg.Subject, msg.Header, msg.Data)
	fmt.Println(messages.CodeOf(err) == messages.CodeInvalidBet)
	// Output:
	// <nil>
	// agency 3 batch 1: 2 rows, lines 1-2
	// 3,Juan,Perez,30123456,1990-05-17,7574
	// 3,Ana,Gomez,28999111,1985-11-02,1234
	// true
}

// Every reply goes through ReplyError: nats.Conn.Request returns no error
// for a micro error reply. A success reply is JSON; an error reply's code,
// description and Quiniela-* headers become an *Error.
func ExampleReplyError() {
	ok := &nats.Msg{Data: []byte(`{"agency":1,"batch":2,"bets":120,"added":120,"window":8}`)}
	if err := messages.ReplyError(ok); err == nil {
		var reply messages.BatchReply
		if err := json.Unmarshal(ok.Data, &reply); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("batch %d stored: %d bets, window %d\n", reply.Batch, reply.Bets, reply.Window)
	}

	refused := &nats.Msg{Header: nats.Header{}}
	refused.Header.Set(micro.ErrorCodeHeader, "409")
	refused.Header.Set(micro.ErrorHeader, "batch 5 of agency 1 is out of order")
	refused.Header.Set(messages.HeaderNextBatch, "3")
	err := messages.ReplyError(refused)
	var e *messages.Error
	if errors.As(err, &e) && e.Code == messages.CodeOutOfOrder {
		fmt.Printf("%v; resend from batch %d; retryable: %v\n", err, e.NextBatch, e.Code.Retryable())
	}
	// Output:
	// batch 2 stored: 120 bets, window 8
	// central replied 409 out of order: batch 5 of agency 1 is out of order; resend from batch 3; retryable: false
}

func mustSplit(row string) []string {
	fields, err := messages.SplitRow(nil, row)
	if err != nil {
		panic(err)
	}
	return fields
}
