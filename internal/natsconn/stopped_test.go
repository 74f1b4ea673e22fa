package natsconn_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/micro"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natsconn"
	"github.com/quiniela/quiniela/internal/natstest"
)

// freePort is a loopback port nothing listens on, for a server started
// later.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// answered sends n requests to subject through ns and counts the answers.
func answered(t *testing.T, ns *server.Server, subject string, n int) int {
	t.Helper()
	nc := natstest.Connect(t, ns)
	ok := 0
	for range n {
		if _, err := nc.Request(subject, nil, 500*time.Millisecond); err == nil {
			ok++
		}
	}
	return ok
}

// A micro service stopped while its connection is reconnecting (its
// server lost, none of its list up yet: a central stepping down behind a
// partition) drains its subscriptions without telling any server, and
// nats.go keeps them until a flush answers; the reconnection subscribes
// them again on the new server, and then the drain forgets them there.
// The next service on the connection then gets about half of its queue
// requests (the fault soak: every agency crawled through timeouts). Stop
// reconnects afresh once they are gone: every request answered.
func TestStoppedServiceLeavesNoSubscriptionBehind(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fixed bool
	}{{"micro's stop alone", false}, {"Stop", true}} {
		t.Run(tc.name, func(t *testing.T) {
			a, bPort := natstest.StartServer(t), freePort(t)
			log := &natstest.Log{}
			logger, _ := logline.New(log, "INFO")
			nc, _, err := natsconn.Connect(t.Context(), a.ClientURL()+","+fmt.Sprintf("nats://127.0.0.1:%d", bPort), natsconn.Options{
				Name: "central", ConnectWait: 5 * time.Second, DrainTimeout: time.Second,
			}, logger)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			echo := &micro.EndpointConfig{Subject: "svc.echo", Handler: micro.HandlerFunc(func(r micro.Request) { r.Respond(nil) })}
			start := func() micro.Service {
				svc, err := micro.AddService(nc, micro.Config{Name: "svc", Version: "1.0.0", Endpoint: echo})
				if err != nil {
					t.Fatal(err)
				}
				return svc
			}

			before := nc.NumSubscriptions()
			subs := natsconn.BeforeService(nc)
			first := start()
			a.Shutdown()
			a.WaitForShutdown()
			natstest.WaitFor(t, 20*time.Second, "the connection reconnecting", nc.IsReconnecting)
			stopped, done := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(done)
				stop := func() { first.Stop(); close(stopped) }
				if tc.fixed {
					subs.Stop(stop)
					subs.Settle(context.Background(), logger)
				} else {
					stop()
				}
			}()
			<-stopped
			b := natstest.StartServerOn(t, bPort)
			<-done
			natstest.WaitFor(t, 30*time.Second, "the stopped service drained, the connection on the new server", func() bool {
				return nc.IsConnected() && nc.NumSubscriptions() <= before
			})

			second := start()
			defer second.Stop()
			got := answered(t, b, "svc.echo", 20)
			t.Logf("the next service answered %d of 20 requests", got)
			if tc.fixed {
				if got != 20 {
					t.Errorf("the next service answered %d of 20 requests, want all; log:\n%s", got, log)
				}
				if n := len(log.Lines("limpiar_suscripciones")); n != 1 {
					t.Errorf("%d limpiar_suscripciones lines, want one; log:\n%s", n, log)
				}
			} else if got == 20 {
				// What Stop is for: if nats.go stops leaving them behind,
				// this says so, and Stop's reconnection can go.
				t.Errorf("without Stop the next service answered every request: nats.go no longer leaves a drained subscription behind")
			}
		})
	}
}
