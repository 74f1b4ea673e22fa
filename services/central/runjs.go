package central

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natsconn"
	"github.com/quiniela/quiniela/internal/peakrss"
	"github.com/quiniela/quiniela/services/central/jsledger"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// runJetStream runs a central on the JetStream ledger: it tails the stream
// into bets.csv, waits for the lease, and while it holds it serves the
// agencies from what the stream holds. If it loses the lease (it was paused
// or cut off past its term) or another central writes to the stream, it
// stops serving and waits for the lease again, from the stream's state.
//
// It has four connections: the ledger's (CENTRAL_LEDGER_NATS_*, in the
// account that holds the stream and the lease) for its JetStream work, the
// lease's (the same user) so that no write of the ledger queues before a
// renewal, the service's (NATS_*, in the agencies' account) for requests
// and the inspector's replies, and the replies to agencies'
// (CENTRAL_REPLIES_NATS_*, the same account; the service's without them),
// so that no reply subject a peer names can reach the ledger, nor, through
// micro's own answers, another agency.
func runJetStream(ctx context.Context, cfg Config, url string, log *slog.Logger) error {
	lnc, lclosed, err := connectLedger(ctx, cfg, url, "central-ledger", log)
	if err != nil {
		return err
	}
	defer lnc.Close()
	conns, err := connectService(ctx, cfg, url, log)
	if err != nil {
		return err
	}
	defer conns.close()
	nc := conns.nc
	// No file-ledger central serves this server's lottery, and none starts
	// while this one runs, active or standby (claim.go); JetStream centrals
	// of the same stream settle among themselves with the lease.
	claim, err := ClaimLottery(conns.replies, newClaimant(LedgerJetStream, cfg.Stream, cfg.BetsFile), cfg.ClaimWait)
	if err != nil {
		return err
	}
	defer claim.Release()
	js, err := jsledger.NewJetStream(lnc)
	if err != nil {
		return fmt.Errorf("opening JetStream: %w", err)
	}
	ledger, err := jsledger.Open(ctx, js, jsledger.Config{
		Stream: cfg.Stream, Replicas: cfg.Replicas, BetsFile: cfg.BetsFile, Name: cfg.Name,
	}, log)
	if err != nil {
		return err
	}
	defer ledger.Close()
	log.InfoContext(ctx, "abrir_apuestas", "file", cfg.BetsFile, "stream", cfg.Stream, "replicas", cfg.Replicas)
	// The lease has a connection of its own (the ledger's user): on the
	// ledger's, a renewal would queue behind the chains' writes (up to
	// 256 KiB each, many in flight) on the way out and its answer behind
	// the acknowledgements and the copy's deliveries on the way in, and
	// under load miss its term (README, The JetStream ledger).
	leaseNC, leaseClosed, err := connectLedger(ctx, cfg, url, "central-lease", log)
	if err != nil {
		return err
	}
	defer leaseNC.Close()
	leaseJS, err := jsledger.NewJetStream(leaseNC)
	if err != nil {
		return fmt.Errorf("opening JetStream for the lease: %w", err)
	}
	lease, err := jsledger.OpenLease(ctx, leaseJS, jsledger.LeaseConfig{
		Stream: cfg.Stream, Replicas: cfg.Replicas, Holder: cfg.Name, TTL: cfg.LeaseTTL,
	}, log)
	if err != nil {
		return err
	}
	// The ledger's, the service's and the replies' connections leave a
	// node cut off with the lease's: the replies' left there would publish
	// every reply where no agency hears it (TestCentralLeavesANodeCutOffFromTheCluster/auth).
	lease.AlsoMove(lnc)
	lease.AlsoMove(nc)
	if conns.replies != nc {
		lease.AlsoMove(conns.replies)
	}
	// And they stay with it: one that reconnected elsewhere by itself (its
	// node killed, or its client kicked) would not be on the node the
	// lease's connection finds cut off, and would stay there unseen.
	stopRegroup := natsconn.NewRegrouper(leaseNC, 0, log, lnc, nc, conns.replies).Start(ctx)
	defer stopRegroup()

	for ctx.Err() == nil {
		err := lease.Acquire(ctx, func(holder string, err error) {
			if err != nil {
				log.WarnContext(ctx, "central_en_espera", "result", logline.InProgress, "name", cfg.Name, "stream", cfg.Stream,
					"error", fmt.Errorf("cannot take the lease yet: %w", err))
				return
			}
			log.InfoContext(ctx, "central_en_espera", "result", logline.InProgress, "name", cfg.Name, "active", holder, "stream", cfg.Stream)
		})
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return err
		}
		if err := serveTerm(ctx, cfg, conns, ledger, lease, log); err != nil {
			return err
		}
	}
	stopRegroup()
	bg := context.WithoutCancel(ctx)
	log.InfoContext(bg, "apagado", "result", logline.InProgress, "reason", context.Cause(ctx))
	if err := ledger.Close(); err != nil {
		return fmt.Errorf("closing the copy of the stream: %w", err)
	}
	// No fsync of its own: the stream is the durable store (README, Guarantees).
	log.InfoContext(bg, "cerrar_apuestas",
		append([]any{"file", cfg.BetsFile, "fsyncs", 0, "stream_messages", ledger.Applied()}, peakrss.Fields()...)...)
	return drain(cfg.DrainTimeout, log, append(conns.drainables(), drainable{lnc, lclosed}, drainable{leaseNC, leaseClosed})...)
}

// connectLedger connects as the ledger's user (CENTRAL_LEDGER_NATS_*).
func connectLedger(ctx context.Context, cfg Config, url, name string, log *slog.Logger) (*nats.Conn, <-chan struct{}, error) {
	return natsconn.Connect(ctx, url, natsconn.Options{
		Name: name, Auth: cfg.ledgerAuth(), ConnectWait: cfg.ConnectWait, DrainTimeout: cfg.DrainTimeout,
	}, log)
}

// serveTerm serves the agencies for one term of the lease: until ctx ends
// (it returns nil and the caller shuts down) or the term ends (it returns
// nil and the caller waits for the lease again). An error is fatal.
func serveTerm(ctx context.Context, cfg Config, conns *serviceConns, ledger *jsledger.Ledger, lease *jsledger.Lease, log *slog.Logger) error {
	nc := conns.nc
	bg := context.WithoutCancel(ctx)
	started := time.Now()
	store, rec, err := ledger.Activate(ctx, lease.Held)
	if err != nil {
		lease.Release(bg)
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if !lease.Held() {
		// The term ended during the catch-up (this central was paused or
		// cut off past it): it is not active, and must not say it is.
		log.ErrorContext(bg, "central_activa", "name", cfg.Name, "catch_up", time.Since(started).Round(time.Millisecond),
			"error", errors.New("the lease lapsed while catching up with the stream: waiting for it again"))
		store.Close(cfg.DrainTimeout) // nothing was written: returns at once
		lease.Release(bg)
		return nil
	}
	log.InfoContext(ctx, "central_activa", "name", cfg.Name, "agencies_with_bets", len(rec.Agencies),
		"drawn", rec.Drawn, "catch_up", time.Since(started).Round(time.Millisecond))
	// The lottery's draw and winners outlive neither the term nor the run.
	termCtx, endTerm := context.WithCancel(ctx)
	defer endTerm()
	lot, err := lottery.New(termCtx, cfg.Agencies, store, rec, log)
	if err != nil {
		lease.Release(bg)
		return err
	}
	subs := natsconn.BeforeService(nc)
	svc, err := StartService(termCtx, nc, lot, ServiceConfig{
		WinnersHold: cfg.WinnersHold, QueueBytes: cfg.QueueBytes, HeldWinners: cfg.HeldWinners, MaxWindow: cfg.MaxWindow,
		Replies: conns.replies,
	}, log)
	if err != nil {
		lease.Release(bg)
		return err
	}
	log.InfoContext(ctx, "central_lista", "nats", nc.ConnectedUrlRedacted(),
		"agencies", cfg.Agencies, "service", ServiceName, "ledger", LedgerJetStream)

	var reason error
	select {
	case <-ctx.Done():
	case <-lease.Lost():
		reason = errors.New("lease lost")
	case <-store.Fenced():
		reason = store.Err()
	}
	if reason != nil {
		log.ErrorContext(bg, "central_activa", "name", cfg.Name, "error", fmt.Errorf("stepping down: %w", reason))
	}
	subs.Stop(svc.Stop)
	log.InfoContext(bg, "detener_servicio")
	// The last acknowledgements reply to batches in flight: before the lease goes.
	if err := store.Close(cfg.DrainTimeout); err != nil {
		log.ErrorContext(bg, "cerrar_escrituras", "error", err)
	}
	endTerm()
	if err := lease.Release(bg); err != nil {
		log.ErrorContext(bg, "liberar_lease", "error", err)
	}
	// The next term's service starts on the same connection: none of
	// this one's subscriptions may be left on a server.
	subs.Settle(ctx, log)
	return nil
}
