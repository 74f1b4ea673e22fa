package central

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/peakrss"
	"github.com/quiniela/quiniela/services/central/fileledger"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// Run runs the central until ctx is cancelled (SIGTERM, SIGINT), then shuts
// down gracefully: stop the service, finish in-flight batches, drain NATS,
// close the store. It returns nil after a clean shutdown.
func Run(ctx context.Context, getenv func(string) string, stdout io.Writer) (err error) {
	cfg, err := LoadConfig(ctx, getenv)
	if err != nil {
		// No logger yet: report it in the same line format all the same.
		log, _ := logline.New(stdout, "INFO")
		log.Error("central", "error", err)
		return err
	}
	log, err := logline.New(stdout, cfg.LogLevel)
	if err != nil {
		return fmt.Errorf("LOG_LEVEL: %w", err)
	}
	defer func() {
		if err != nil {
			log.Error("central", "error", err)
		}
	}()

	url := cfg.NATSURL
	if url == "" {
		var stop func()
		if url, stop, err = startEmbedded(&cfg, log); err != nil {
			return err
		}
		defer stop()
	}
	if cfg.Ledger == LedgerJetStream {
		return runJetStream(ctx, cfg, url, log)
	}
	return runFile(ctx, cfg, url, log)
}

// runFile runs the central on the file ledger until ctx ends.
func runFile(ctx context.Context, cfg Config, url string, log *slog.Logger) error {
	var opts []fileledger.Option
	if cfg.Failpoint != "" {
		fp, err := killAt(cfg.Failpoint)
		if err != nil {
			return err
		}
		opts = append(opts, fp)
	}
	ledger, rec, err := fileledger.Open(cfg.BetsFile, opts...)
	if err != nil {
		return err
	}
	defer ledger.Close() // on an early return; a no-op after the Close below
	opened := []any{"file", cfg.BetsFile, "agencies_with_bets", len(rec.Agencies), "dropped_bytes", rec.DroppedBytes}
	if rec.DroppedBytes > 0 {
		// Rows no journal record covers: batches never acknowledged, which
		// their agencies resend. Said at WARN: bytes were cut.
		log.Warn("abrir_apuestas", append(opened, "result", logline.Success, "dropped", "the tail a stopped central left: rows of batches it had not acknowledged")...)
	} else {
		log.Info("abrir_apuestas", opened...)
	}

	lot, err := lottery.New(ctx, cfg.Agencies, ledger, rec, log)
	if err != nil {
		return err
	}

	conns, err := connectService(ctx, cfg, url, log)
	if err != nil {
		return err
	}
	defer conns.close()
	nc := conns.nc

	// One central serves a lottery on a server (claim.go): its endpoints
	// only once no other answers.
	claim, err := ClaimLottery(conns.replies, newClaimant(LedgerFile, "", cfg.BetsFile), cfg.ClaimWait)
	if err != nil {
		return err
	}
	defer claim.Release()
	svc, err := StartService(ctx, nc, lot, ServiceConfig{
		WinnersHold: cfg.WinnersHold, QueueBytes: cfg.QueueBytes, HeldWinners: cfg.HeldWinners,
		MaxWindow: cfg.MaxWindow, Replies: conns.replies,
	}, log)
	if err != nil {
		return err
	}
	log.Info("central_lista", "nats", nc.ConnectedUrlRedacted(),
		"agencies", cfg.Agencies, "service", ServiceName)

	var lost error
	failed := false
	select {
	case <-ctx.Done():
		log.Info("apagado", "result", logline.InProgress, "reason", context.Cause(ctx))
	case <-claim.Lost():
		lost = claim.LostTo()
		log.Error("apagado", "error", lost)
	case <-ledger.Failed():
		failed = true
		// A failed store refuses all work until a new Open recovers what
		// is durable: serving on would answer every batch with an error
		// until the agencies give up, and a supervisor never restarts a
		// process that runs. Exit non-zero instead; agencies resend what
		// was not acknowledged to the restarted central.
		lost = fmt.Errorf("%w; the central stops so that a restart recovers what is durable: fix the cause (a full disk, a failing device), then start it again",
			ledger.Err())
		log.Error("apagado", "error", lost)
	}

	svc.Stop()
	log.Info("detener_servicio")

	// Close the store before the drain: its last group commit replies to
	// the batches still in flight, and those replies must go out first.
	// A failed store's Close returns its failure, which lost says already.
	if err := ledger.Close(); err != nil && !failed {
		return fmt.Errorf("closing store: %w", err)
	} else if err == nil {
		log.Info("cerrar_apuestas",
			append([]any{"file", cfg.BetsFile, "fsyncs", ledger.Fsyncs()}, peakrss.Fields()...)...)
	}

	return errors.Join(drain(cfg.DrainTimeout, log, conns.drainables()...), lost)
}

// killAt parses CENTRAL_FAILPOINT ("rows-written:3") into a failpoint that
// kills this process, as kill -9 would, at that stage of that commit round.
func killAt(spec string) (fileledger.Option, error) {
	stage, roundText, _ := strings.Cut(spec, ":")
	round, err := strconv.ParseInt(roundText, 10, 64)
	if err != nil || round < 1 {
		return nil, fmt.Errorf("CENTRAL_FAILPOINT %q: want STAGE:ROUND, e.g. %s:3", spec, fileledger.StageCommitted)
	}
	return fileledger.WithFailpoint(func(s string, r int64) {
		if s == stage && r == round {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}), nil
}
