package agency

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natsconn"
	"github.com/quiniela/quiniela/internal/peakrss"
	"github.com/quiniela/quiniela/messages"
)

// Exit codes of the agency command.
const (
	ExitOK          = 0
	ExitFailed      = 1 // could not finish: the error line says why
	ExitSkippedRows = 3 // finished, but some rows of the file were invalid and not sent
)

// SkippedRowsError is returned by Run when the lottery finished for this
// agency but rows of its file are not in it: invalid rows it skipped (each
// was logged), and rows the central refused because the lottery had closed.
type SkippedRowsError struct {
	Rows    int              // invalid rows skipped
	Lines   messages.LineSet // their lines
	Closed  messages.LineSet // lines refused: the draw had run
	Waiting bool             // not done (AGENCY_INVALID_ROWS=wait): the draw waits
}

func (e *SkippedRowsError) Error() string {
	var parts []string
	switch {
	case e.Waiting:
		parts = append(parts, fmt.Sprintf("%d invalid rows skipped, at lines %s (logged above with file:line); this agency did not say it is done, so the draw waits for it: fix them and run it again (the rows stored are not stored twice), or run it with AGENCY_INVALID_ROWS=done to finish without them",
			e.Rows, shortLines(e.Lines)))
	case e.Rows > 0:
		parts = append(parts, fmt.Sprintf("%d invalid rows skipped, at lines %s (logged above with file:line): this run did not send them, and the draw has run",
			e.Rows, shortLines(e.Lines)))
	}
	if len(e.Closed) > 0 {
		parts = append(parts, fmt.Sprintf("the rows at lines %s are not in the lottery: the central did not have them and the draw had run, so it can no longer take them",
			shortLines(e.Closed)))
	}
	return strings.Join(parts, "; ")
}

// shortLines writes lines for a message, cut after a few ranges.
func shortLines(ls messages.LineSet) string {
	const show = 10
	if len(ls) <= show {
		return ls.String()
	}
	return fmt.Sprintf("%s and %d more", ls[:show], ls[show:].Count())
}

// sortedLines is ls as a LineSet: ranges sorted and joined.
func sortedLines(ls []messages.LineRange) messages.LineSet {
	slices.SortFunc(ls, func(a, b messages.LineRange) int { return cmp.Compare(a.First, b.First) })
	var out messages.LineSet
	for _, r := range ls {
		if n := len(out); n > 0 && r.First <= out[n-1].Last+1 {
			out[n-1].Last = max(out[n-1].Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return out
}

// progressEvery is how often a long send logs its progress.
const progressEvery = 2 * time.Second

// Summary is what an agency did, logged at the end as action: resumen.
type Summary struct {
	Agency   int
	Bets     int
	Added    int // of Bets, stored by this run (the rest were stored before)
	Batches  int
	Skipped  int
	Lines    messages.LineSet // of the rows skipped
	Closed   messages.LineSet // of rows refused: the lottery had closed
	Resent   int
	Winners  int
	Duration time.Duration
	P50, P99 time.Duration // batch round trip
	// The run's critical path, each since the agency started: connected to
	// NATS, first and last batch acknowledged, done acknowledged, winners
	// received.
	Connected, FirstAck, LastAck, DoneAck, WinnersAt time.Duration

	firstAck time.Time
}

// Run sends the agency's bets, says it is done, asks its winners and logs
// them. It returns a *SkippedRowsError if rows were skipped, another error
// if it could not finish.
func Run(ctx context.Context, getenv func(string) string, stdout io.Writer) (err error) {
	start := time.Now()
	cfg, err := LoadConfig(ctx, getenv)
	if err != nil {
		// No logger yet: report it in the same line format all the same.
		log, _ := logline.New(stdout, "INFO")
		log.Error("agencia", "error", err)
		return err
	}
	log, err := logline.New(stdout, cfg.LogLevel)
	if err != nil {
		return fmt.Errorf("LOG_LEVEL: %w", err)
	}
	defer func() {
		var skipped *SkippedRowsError
		if err != nil && !errors.As(err, &skipped) {
			log.Error("agencia", "agency", cfg.ID, "error", err)
		}
	}()

	bets, err := OpenBetFile(cfg.DataFile, cfg.ID)
	if err != nil {
		return err
	}
	defer bets.Close()

	nc, _, err := natsconn.Connect(ctx, cfg.NATSURL, natsconn.Options{
		// Not natsauth: an agency needs nothing of the server's code.
		Name: messages.AgencyName(cfg.ID), Auth: cfg.Auth, InboxPrefix: messages.AgencyInboxPrefix(cfg.ID),
		ConnectWait: cfg.ConnectWait, DrainTimeout: 2 * time.Second,
	}, log)
	if err != nil {
		return err
	}
	defer nc.Close()

	sum := Summary{Agency: cfg.ID, Connected: time.Since(start)}
	if err := sendBets(ctx, nc, cfg, bets, log, &sum); err != nil {
		return err
	}
	if !sum.firstAck.IsZero() {
		sum.FirstAck = sum.firstAck.Sub(start)
	}
	sum.LastAck = time.Since(start)
	if sum.Skipped > 0 && cfg.InvalidRows == InvalidRowsWait {
		log.Warn("filas_invalidas", "agency", cfg.ID, "skipped", sum.Skipped, "lines", shortLines(sum.Lines),
			"detail", "these rows were not sent, and this agency does not say it is done (AGENCY_INVALID_ROWS=wait): the draw waits; fix them and run this agency again with the same file: the fixed rows are added, the rows already stored are not stored twice")
		return &SkippedRowsError{Rows: sum.Skipped, Lines: sum.Lines, Waiting: true}
	}
	if sum.Skipped > 0 {
		// Said now, while the agency waits for the draw: until every
		// agency is done, a run with the rows fixed adds them.
		log.Warn("filas_invalidas", "agency", cfg.ID, "skipped", sum.Skipped, "lines", shortLines(sum.Lines),
			"detail", "these rows were not sent; until the draw runs (when every agency is done), fix them and run this agency again with the same file: the fixed rows are added, the rows already stored are not stored twice, a changed row at a stored line is refused; after the draw no row can enter (AGENCY_INVALID_ROWS=wait makes the draw wait for the fix)")
	}
	if err := sendDone(ctx, nc, cfg, uint64(sum.Batches), log); err != nil {
		return err
	}
	sum.DoneAck = time.Since(start)
	winners, err := askWinners(ctx, nc, cfg, log)
	if err != nil {
		return err
	}
	sum.WinnersAt = time.Since(start)
	sum.Winners = len(winners)
	log.Info("consulta_ganadores", "cant_ganadores", len(winners))
	sum.Duration = time.Since(start)
	log.Info("resumen", append([]any{"agency", sum.Agency, "bets", sum.Bets, "added", sum.Added, "batches", sum.Batches,
		"skipped", sum.Skipped, "resent", sum.Resent, "winners", sum.Winners,
		"rtt_p50_ms", ms(sum.P50), "rtt_p99_ms", ms(sum.P99), "seconds", fmt.Sprintf("%.3f", sum.Duration.Seconds()),
		"connected_ms", ms(sum.Connected), "first_ack_ms", ms(sum.FirstAck), "last_ack_ms", ms(sum.LastAck),
		"done_ms", ms(sum.DoneAck), "winners_ms", ms(sum.WinnersAt)},
		peakrss.Fields()...)...)
	if sum.Skipped > 0 || len(sum.Closed) > 0 {
		return &SkippedRowsError{Rows: sum.Skipped, Lines: sum.Lines, Closed: sum.Closed}
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// sendBets streams the file through the encoder and the sender.
func sendBets(ctx context.Context, nc *nats.Conn, cfg Config, bets *BetFile, log *slog.Logger, sum *Summary) error {
	sender, err := NewSender(nc, cfg.ID, cfg.InFlight, cfg.RequestTimeout, cfg.RetryFor, log)
	if err != nil {
		return err
	}
	defer sender.Close()
	enc := messages.NewBatchEncoder(cfg.ID, cfg.MaxAmount)
	sender.release = enc.Release
	nextProgress := time.Now().Add(progressEvery)
	send := func() error {
		if b := enc.Flush(); b != nil {
			if err := sender.Send(ctx, b); err != nil {
				return err
			}
		}
		if now := time.Now(); now.After(nextProgress) {
			nextProgress = now.Add(progressEvery)
			log.Info("enviar_apuestas", "result", logline.InProgress, "agency", cfg.ID,
				"bets", sender.Bets, "batches", sender.Batches, "line", bets.Line())
		}
		return nil
	}
	var row []byte
	for {
		var err error
		row, err = bets.Next(row[:0])
		if err == io.EOF {
			break
		}
		var bad *InvalidRowError
		if errors.As(err, &bad) {
			sum.Skipped++
			sum.Lines = sum.Lines.Add(uint64(bad.Line))
			log.Error("leer_apuesta", "error", bad)
			continue
		}
		if err != nil {
			return err
		}
		for {
			added, err := enc.AddCSVAt(row, uint64(bets.Line()))
			if err != nil {
				sum.Skipped++
				sum.Lines = sum.Lines.Add(uint64(bets.Line()))
				log.Error("leer_apuesta", "error", &InvalidRowError{Path: cfg.DataFile, Line: bets.Line(), Reason: err})
				break
			}
			if added {
				break
			}
			if err := send(); err != nil {
				return err
			}
		}
	}
	if err := send(); err != nil {
		return err
	}
	if err := sender.Flush(ctx); err != nil {
		return err
	}
	sum.Bets, sum.Added, sum.Batches, sum.Resent, sum.firstAck = sender.Bets, sender.Added, sender.Batches, sender.Resent, sender.FirstAck
	sum.Closed = sortedLines(sender.Closed)
	sum.P50, sum.P99 = percentile(sender.RoundTrip, 50), percentile(sender.RoundTrip, 99)
	log.Info("enviar_apuestas", "agency", cfg.ID, "bets", sum.Bets, "added", sum.Added, "batches", sum.Batches, "skipped", sum.Skipped)
	if before := sum.Bets - sum.Added; before > 0 {
		// An agency run again (or a reply lost and the batch resent).
		log.Info("apuestas_ya_guardadas", "agency", cfg.ID, "bets", before,
			"detail", "the central had these rows already, from an earlier run or an earlier attempt of a request: stored once")
	}
	if sum.Bets == 0 && sum.Skipped == 0 {
		// Not an error (the agency still tells the central it is done, so
		// the draw can run), but rarely what was meant.
		log.Warn("enviar_apuestas", "result", logline.Success, "agency", cfg.ID, "file", cfg.DataFile,
			"warning", "the file holds no bets: is AGENCY_DATA_FILE the right one?")
	}
	return nil
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

// sendDone tells the central that every batch was sent.
func sendDone(ctx context.Context, nc *nats.Conn, cfg Config, batches uint64, log *slog.Logger) error {
	var ack messages.DoneReply
	err := request(ctx, nc, log, call{msg: messages.DoneMsg(cfg.ID, batches), want: expectDone(cfg.ID, batches), out: &ack,
		timeout: cfg.RequestTimeout, giveUp: cfg.RetryFor})
	if err != nil {
		return fmt.Errorf("notifying done after %d batches: %w", batches, err)
	}
	log.Info("notificar_fin", "agency", cfg.ID, "batches", ack.Batches, "bets", ack.Bets)
	return nil
}

// askWinners asks for the agency's winners until the draw has run. The
// central holds each request a while before it answers "draw pending".
func askWinners(ctx context.Context, nc *nats.Conn, cfg Config, log *slog.Logger) ([]string, error) {
	var reply messages.WinnersReply
	msg := &nats.Msg{Subject: messages.WinnersSubject(cfg.ID)}
	err := request(ctx, nc, log, call{msg: msg, want: expectWinners(cfg.ID), out: &reply,
		timeout: cfg.RequestTimeout, giveUp: cfg.WinnersWait, again: func(err error) bool {
			if messages.CodeOf(err) == messages.CodeDrawPending {
				log.Info("esperar_sorteo", "result", logline.InProgress, "agency", cfg.ID, "detail", err)
				return true
			}
			return false
		}})
	if err != nil {
		return nil, fmt.Errorf("asking winners of agency %d: %w", cfg.ID, err)
	}
	return reply.Winners, nil
}
