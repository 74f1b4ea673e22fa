package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/messages"
)

// fakeStatus answers the status subject on ns with replies in turn, the
// last one from then on; a nil reply is answered 503 as micro would.
func fakeStatus(t *testing.T, nc *nats.Conn, replies []*messages.StatusReply) {
	t.Helper()
	var n atomic.Int64
	_, err := nc.Subscribe(messages.StatusSubject, func(m *nats.Msg) {
		r := replies[min(int(n.Add(1))-1, len(replies)-1)]
		if r == nil {
			reply := nats.NewMsg(m.Reply)
			reply.Header.Set(micro.ErrorCodeHeader, "503")
			reply.Header.Set(micro.ErrorHeader, "unavailable")
			m.RespondMsg(reply)
			return
		}
		data, _ := json.Marshal(r)
		m.Respond(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
}

// lines collects what watchProgress says, in order, on a channel.
func lines() (func(string, ...any), <-chan string) {
	ch := make(chan string, 100)
	return func(format string, args ...any) { ch <- fmt.Sprintf(format, args...) }, ch
}

func next(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case l := <-ch:
		return l
	case <-time.After(20 * time.Second): // a bound against hanging, not a synchronisation
		t.Fatal("no progress line within 20s")
		return ""
	}
}

func TestProgressLinesFromTheStatus(t *testing.T) {
	ns := natstest.StartServer(t)
	fakeStatus(t, natstest.Connect(t, ns), []*messages.StatusReply{
		nil, nil, nil, // unavailable three times: said once
		{Bets: 40, Done: 1, Of: 3},
		{Bets: 100, Done: 3, Of: 3, Drawn: true},
	})
	say, ch := lines()
	// A fast tick, a generous request timeout: the lines come in order
	// however slow the machine.
	stop := watchProgress(ns.ClientURL(), nil, 100, 5*time.Millisecond, time.Minute, say)
	got := []string{next(t, ch), next(t, ch), next(t, ch)}
	stop()
	want := []string{
		"progress: no status from the central (central replied 503",
		"progress: 40 of 100 bets stored, 1 of 3 agencies done, draw pending",
		"progress: 100 of 100 bets stored, 3 of 3 agencies done, drawn",
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("line %d = %q, want %q…", i+1, got[i], want[i])
		}
	}
}

func TestProgressWithoutAServer(t *testing.T) {
	ns := natstest.StartServer(t)
	url := ns.ClientURL()
	ns.Shutdown()
	ns.WaitForShutdown()
	say, ch := lines()
	watchProgress(url, nil, 100, time.Millisecond, time.Minute, say)()
	if l := next(t, ch); !strings.HasPrefix(l, "progress: not shown, connecting as the inspector: ") {
		t.Errorf("line %q, want one saying progress is not shown", l)
	}
}
