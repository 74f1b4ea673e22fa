// Package messages is the wire contract of the quiniela between the
// agencies and the central office: the NATS subjects, the headers and
// payloads of every request, the replies, the error codes, the 8 kB rule and
// the sequence rules. Both sides build and read their messages only through
// this package, so this comment is the reference of the protocol; everything
// in it can be tried with the nats CLI (see the last section).
//
// Every exchange is a NATS request with a reply: the agency publishes on its
// subject with a reply inbox, and the central, a NATS micro service named
// quiniela-central, answers on that inbox with a JSON body (success) or with
// micro error headers (failure).
//
// # Subjects
//
// An agency N uses only subjects that end in its own number, so that the
// broker can confine it to them (and the central checks the headers against
// the subject too):
//
//	subject              request                              body
//	bets.agency.N        a batch of bets of agency N          CSV rows
//	bets.agency.N.done   agency N has sent all its batches    empty
//	winners.agency.N     agency N asks for its winners        empty
//
// N is a positive decimal with no sign and no leading zeros: 1, 2, 10, never
// 0, 01 or +1, so that each agency has exactly one spelling. [BatchSubject],
// [DoneSubject] and [WinnersSubject] build the subjects; [AgencyFromSubject]
// and [ParseAgency] read N back and refuse any other spelling. The central
// subscribes to the wildcards [BatchSubjects] (bets.agency.*),
// [DoneSubjects] (bets.agency.*.done) and [WinnersSubjects]
// (winners.agency.*); since * is one token, bets.agency.* never sees a done.
// A well-formed N that is not one of the lottery's agencies is refused with
// 404.
//
// # Batch
//
// A batch request on bets.agency.N carries three headers and the bets as CSV:
//
//	Quiniela-Agency: N     the agency, the same N as the subject's
//	Quiniela-Batch: S      the batch's sequence number: 1, 2, 3, … per agency
//	Quiniela-Lines: L      the lines of the agency's file its rows come from
//
//	Juan,Perez,30123456,1990-05-17,7574
//	"Perez, Juan","O""Brien",0001,2000-02-29,42
//
// The payload holds one row per bet, each ending in LF, with no header line
// and the five fields
//
//	first_name,last_name,document,birthdate,number
//
// quoted the way encoding/csv writes them: only a field that holds a comma
// or a double quote, or starts with a space, is quoted, and a quote inside
// it is doubled. Readers also accept CRLF line ends, a last row without
// its LF, and blank lines, which they skip. [BatchEncoder] writes the
// payload and [Batch.Msg] the request; the central reads them with
// [DecodeBatchHeader] and [DecodeBets].
//
// Quiniela-Lines ([HeaderLines], [LineSet]) names the file line of each
// row, in the order of the rows: line numbers and ranges, increasing,
// joined by commas, 1-20,24-120 for rows from lines 1 to 20 and 24 to 120
// (lines 21 to 23 were blank or invalid, or the header of a CSV). It counts
// exactly one line per row, and has one spelling: no leading zeros, no
// spaces, a range of one line written as its number, ranges that touch
// (1-2,3) joined. A bet is identified by its agency and its line: the
// central stores a row once per line, so an agency run again after fixing a
// row it had skipped sends the fixed row with the rest, and only the fixed
// row is stored (see the sequence rules). [BatchEncoder] counts the header
// with the payload under the 8 kB rule.
//
// Every row must pass [ParseBet], the same rules at the agency, which skips
// a bad row of its file, and at the central, which refuses a batch that
// holds one:
//
//	field        rule
//	first_name   1 to 100 bytes of valid UTF-8, no control characters (tab, CR, LF, …)
//	last_name    the same
//	document     1 to 12 ASCII digits; leading zeros are part of it
//	birthdate    a real date as YYYY-MM-DD, from 1900-01-01 to today in Argentina:
//	             2024-02-29 yes, 2023-02-30 and 1999-3-17 no
//	number       an integer from 0 to 9999 in at most 4 digits (0042 reads as 42)
//
// "Today" is the date in Argentina, where the bettors are: UTC−3 all year
// (no daylight saving time since 2009), whatever the time zone of the
// machine. So at 01:00 UTC on 2 March a birthdate of 2 March is refused
// (it is 22:00 on 1 March in Argentina) and one of 1 March is accepted. The
// limit moves forward as the days pass, never back, so a row the agency
// accepted is accepted by the central a moment later too (unless their
// clocks disagree around midnight).
//
// A batch is stored whole or not at all: one bad row refuses the batch with
// 422, and the description names the row, counted from 1 among the rows
// that are not blank, and the field. For the payload
//
//	Juan,Perez,1,1990-05-17,1
//
//	Juan,Perez,1,1990-05-17,10000
//
// the description ends in
//
//	row 2: number "10000": want an integer from 0 to 9999
//
// Headers that cannot be read get 400 (a Quiniela-Batch that is missing,
// zero, signed or not a number; a Quiniela-Lines that is missing, not in
// its one spelling, or names more or fewer lines than the payload has
// rows), and so does a payload without any row. A
// Quiniela-* header sent more than once (Quiniela-Batch: 1 and
// Quiniela-Batch: 2, or the same name in another case, quiniela-batch) is
// refused with 400 too, whatever the values: there is no single batch to
// store. A Quiniela-Agency that is not exactly the subject's N gets 403.
//
// # Done
//
// When an agency has sent every batch, and each has been acknowledged, it
// sends an empty request on bets.agency.N.done ([DoneMsg]) with
//
//	Quiniela-Agency: N
//	Quiniela-Batches: B    how many batches it sent in all (0 or more)
//
// The central reads it with [DecodeDone]. B must be the number of batches
// the central has stored for the agency (see the sequence rules).
//
// # Winners
//
// An agency asks for its winners with an empty request, without headers, on
// winners.agency.N. Once every agency is done the central draws, and then
// it answers with the documents of the winners of that agency, and only of
// that agency. Asked before the draw, the central holds the request a while
// and, if the draw still has not happened, answers 425: ask again later.
//
// # Replies
//
// A success reply has a JSON body and no error headers:
//
//	request   reply          example
//	batch     BatchReply     {"agency":1,"batch":3,"bets":120,"added":120,"window":64}
//	done      DoneReply      {"agency":1,"batches":3,"bets":250}
//	winners   WinnersReply   {"agency":1,"winners":["30123456","27000111"]}
//
// [BatchReply] says every row of the batch is on disk, with its number of
// bets, and how many of them this request stored ("added"; the others
// were stored by an earlier request for their lines); [DoneReply]
// counts the bets stored for the agency in all; [WinnersReply] lists the
// winners' documents (an empty list when the agency has none).
//
// An error reply is a NATS micro error: an empty body and the headers
//
//	Nats-Service-Error-Code: 409
//	Nats-Service-Error: batch 7 of agency 1 is out of order: the central expects batch 4
//	Quiniela-Next-Batch: 4
//	Quiniela-Agency: 1
//	Quiniela-Batch: 7
//
// Nats-Service-Error-Code is the [Code] in decimal and Nats-Service-Error a
// description for people: one line of valid UTF-8 of at most
// [MaxDescriptionBytes] (200) bytes, where values a peer sent are quoted
// and cut to 40 bytes ([Clip]). Quiniela-Next-Batch ([HeaderNextBatch])
// comes only with 409: the batch the central expects next, the one after
// the last durable batch (every batch before it is stored). Quiniela-Lines
// comes only with 410: the lines of the batch that the central does not
// have and can no longer store (as many leading ranges as fit in
// [MaxReplyLinesBytes], 1024 bytes; the description counts them all). Quiniela-Agency
// and Quiniela-Batch name the request the reply answers ([Error.Agency],
// [Error.Batch], which [ReplyError] fills), as a success reply's body does:
//
//	Quiniela-Agency: N     the N of the subject, whenever it reads as an agency
//	                       number, known to the lottery or not (a 404 names it)
//	Quiniela-Batch: S      on a batch, the request's Quiniela-Batch when it
//	                       reads as one positive number; absent on done and winners
//
// An agency takes a message on its reply inbox as the answer to its request
// only if it names that request: a batch reply its agency and batch
// ("agency" and "batch" in the JSON, or the two headers of an error), a
// done reply its agency and the count of batches ("agency" and "batches"),
// a winners reply its agency ("agency" and "winners"), an error reply to a
// done or winners request its agency. Anything else is no reply: a peer
// that may watch bets.agency.N learns N's reply subjects and could make the
// central answer some other request there (nats req '$SRV.PING' with that
// reply subject). The agency logs it (action: respuesta_ajena, at WARN),
// keeps waiting and resends on its timeout as if nothing had come.
//
// nats.Conn.Request returns a nil error for an error reply, so an agency
// passes every reply to [ReplyError], which returns the [*Error] it carries
// (or nil), and [CodeOf] finds the code in a wrapped error. The central builds the reply
// from an [Error] and [Error.Headers]: with micro's Request.Error while the
// endpoint's handler runs, and by publishing the same headers on the saved
// reply subject when it answers later (a batch after its commit).
//
// The codes follow HTTP's meanings. Retryable ones ([Code.Retryable]) may
// succeed if the same request is sent again later; the others will not
// until the request changes:
//
//	code  name            meaning                                                  retry
//	400   malformed       headers or payload cannot be read                        no
//	403   wrong agency    Quiniela-Agency is not the subject's agency              no
//	404   unknown agency  the subject names no agency of this lottery              no
//	409   out of order    a batch skips ahead, or done counts batches not stored;  no: resend from
//	                      Quiniela-Next-Batch says which batch comes next              Quiniela-Next-Batch
//	410   lottery closed  every agency is done and a row's line is not stored:     no
//	                      it cannot enter; Quiniela-Lines names those lines
//	412   batch mismatch  a row for a stored line differs from the row stored      no
//	                      there; the description names the line
//	413   too large       the request breaks the 8 kB rule                         no
//	422   invalid bet     a row fails validation; the description names it         no
//	425   draw pending    winners asked before every agency is done                yes
//	429   busy            too many requests queued, or winners requests held       yes
//	500   internal        the central failed to store                              yes
//	503   unavailable     the central is shutting down                             yes
//	507   ledger limit    the JetStream ledger's servers, as configured, cannot    no
//	                      store the batch: it needs more stream messages than
//	                      they commit as one atomic batch; the description says
//	                      how many, their limit and what to raise
//
// # The 8 kB rule
//
// Nothing written to the wire for one request may exceed 8192 bytes
// ([MaxMessageBytes]). That counts the whole publication as the client
// writes it, not only the payload:
//
//	HPUB <subject> <reply> <header bytes> <total bytes>\r\n<headers><payload>\r\n
//
// where the header block is "NATS/1.0\r\n", one "Key: value\r\n" per header
// value and a closing "\r\n", and the total is header bytes plus payload
// bytes. The reply subject is the client's inbox, which the sender does not
// choose; it is counted at [MaxReplyBytes], 128 bytes, whatever its real
// length (nats.go's request inboxes have 38 bytes; a custom inbox prefix must
// keep the reply subject within 128). [WireSize] computes the count and
// [MaxPayloadBytes] the largest payload that keeps within it: for agency 1's
// first batch, of lines 1-170, the headers take 74 bytes and the payload
// may have 7959.
//
// [BatchEncoder] closes a batch when it holds maxAmount bets or when the
// next row would break the rule, whichever comes first. Any bet that passes
// [ParseBet] fits in a batch of its own (the longest row is 435 bytes: two
// names of 100 double quotes, 12 digits, a date and 4 digits); a [Bet] built
// by hand that cannot is refused with [ErrBetTooLarge]. The central measures
// each request it receives the same way and refuses one over the limit with
// 413.
//
// # Sequence rules
//
// Each agency numbers its batches 1, 2, 3, … and the central takes them in
// that order; each row is stored once for its (agency, line). So an agency
// can resend anything it is unsure of, and run again over its whole file:
//
//   - A batch already stored, resent with the same lines and payload byte
//     for byte (the central compares [BatchSum], a SHA-256 prefix of
//     Quiniela-Lines and the payload), gets the same success reply again
//     (with added 0) and is not stored twice: a retry after a timeout is
//     always safe.
//   - Any other batch is taken row by row: a row for a line already stored
//     must be the row stored there ([RowSum] compares them) and is not
//     stored again; a row for a line not stored yet is stored. One row that
//     differs from the row stored for its line refuses the whole batch with
//     412, naming the line: the file changed there since it was sent. So an
//     agency run again with the same file, or with rows it had skipped as
//     invalid now fixed, or with another maxAmount, stores exactly the rows
//     the central lacks.
//   - The batch after the last one stored (batch 4 when the central has 1
//     to 3) is recorded under its number, even if every row was stored
//     before; an earlier number records only the rows it adds. A batch that
//     skips ahead (batch 5 when the central has 1 to 3) is refused with 409
//     and Quiniela-Next-Batch: 4; the agency resends from there. An agency
//     that keeps several batches in flight sees those that follow a refused
//     batch refused with 409 too.
//   - An agency may send batches after its done, as long as some agency is
//     not done: the draw has not run yet and rows it adds take part. Once
//     every agency is done the lottery is closed: the draw runs (or ran)
//     with what is stored, and a batch with a row whose line is not stored
//     is refused with 410 and Quiniela-Lines naming those lines; a batch
//     whose rows are all stored is acknowledged as before, whatever its
//     number.
//   - Done must count only batches the central has stored for the agency
//     (its count is at most the last batch stored; an agency run again may
//     send fewer batches than before); otherwise it is refused with 409 and
//     Quiniela-Next-Batch. A repeated done gets a DoneReply again.
//
// # Which replies the central sends at all
//
// The reply subject is the one part of a request that says nothing of its
// sender, so the central answers only where a reply belongs, an
// allow-list: a request on agency N's subjects only into agency N's
// inboxes, _INBOX_agency.N.… ([AgencyInboxPrefix], [InboxAgency]), which
// with authorization on only agency N may subscribe to; quiniela.status,
// and a subject naming no agency, only into the inspector's, _INBOX.….
// Anything else — no reply subject, another agency's inbox, the service's
// own subjects, the ledger's subjects, the JetStream API — it drops
// unanswered, logging solicitud_ignorada and counting it as ignored in its
// stats: no peer can make the central write for it. By hand with the nats
// CLI, as agency N: --inbox-prefix _INBOX_agency.N.
//
// # Status
//
// quiniela.status ([StatusSubject]), an empty request, answers a
// [StatusReply]: for each agency that stored a batch or is done (up to
// [StatusListMax]) its batches and bets stored and whether it is done; the
// bets stored in all; how many agencies are done of how many; whether the
// draw ran; and after it the number of winners of each listed agency, never
// their documents. For operators: the inspector user may ask it, agencies may
// not (they must not learn each other's progress).
//
//	{"agencies":[{"agency":1,"batches":229,"bets":26936,"done":true}, …],
//	 "bets":78697,"done":5,"of":5,"drawn":true,"winners":{"1":5, …}}
//
// # Stats
//
// `nats micro stats quiniela-central` shows, per endpoint, micro's counters
// and the central's own in "data". micro counts a request when its handler
// returns, and an error only if the handler sent it; the central's handlers
// route a batch to a worker and answer it after its commit, and hold a
// winners request until the draw, so micro's num_errors counts only what is
// refused at once (unknown agency, busy, shutting down) and its processing
// time is the routing. Read "data" for the truth: replies (all replies
// sent), errors (error replies sent), errors_by_code, ignored (requests
// dropped unanswered), reply_ms_p50 and reply_ms_p99 (receipt to reply; a
// batch's includes its commit, a held winners request its wait), within 9 %:
//
//	"data": {"replies": 3, "errors": 2, "errors_by_code": {"409": 1, "422": 1},
//	         "ignored": 0, "reply_ms_p50": 0.128, "reply_ms_p99": 11.585}
//
// # The central's ledger on JetStream
//
// With CENTRAL_LEDGER=jetstream the central keeps its ledger in a JetStream
// stream (CENTRAL_STREAM, QUINIELA by default) instead of its journal; this
// is the one description of its format. Its subjects ([LedgerSubjects],
// [LedgerAgencySubject], [LedgerDrawSubject]) begin with ledger., which no
// agency may use, and none of the subjects above: an agency's requests are
// never stored by accident.
//
//	subject                   message
//	ledger.QUINIELA.agency.N  one or more consecutive accepted batches of agency N,
//	                          or its done; in the order the central accepted them
//	ledger.QUINIELA.draw      the draw: a message without body, written once
//
// A batches message holds the rows as the central's bets.csv stores them
// (agency first, then the five fields: the course's StoreBets) and the
// headers
//
//	Quiniela-Agency: N
//	Quiniela-Batch: S          its first batch
//	Quiniela-Sums: s1,s2,…     the BatchSum of batches S, S+1, …
//	Quiniela-Counts: n1,n2,…   their numbers of rows stored
//	Quiniela-Lines: l1;l2;…    the file lines of those rows, a LineSet a batch
//
// A batch whose number is not the agency's next holds rows added to that
// earlier batch (lines that were not stored), and so does a message that
// begins with one. A batch too large for one message under the
// connection's max_payload is written in parts cut at rows, one message
// each, in order, all with the batch's number and sum, each with its own
// rows' count and lines, and
//
//	Quiniela-Part: i/k         part i of k; a part 1 starts the batch over
//
// The parts of a batch are one JetStream atomic batch (the stream allows
// atomic publish; the parts carry Nats-Batch-Id, Nats-Batch-Sequence and, on
// the last, Nats-Batch-Commit): all are stored or none. Only the first part
// names the subject's last sequence (JetStream admits the check on a
// subject's first message of a batch only). A stream written before may
// hold the first parts of a batch a central left unfinished, followed by
// the whole batch written again: hence a part 1 starts the batch over.
//
// A done message has no body and Quiniela-Agency and Quiniela-Batches. Every
// write carries Nats-Expected-Last-Subject-Sequence (the sequence of the
// subject's last message: JetStream refuses it if another central wrote
// there since), Nats-Msg-Id (a resend is not stored twice) and
// Quiniela-Writer, the CENTRAL_NAME of the central that wrote it (an audit
// trail: the fault nemesis checks from it and the message's time that no
// write was accepted from a central after another took the lease). Which
// central is active is the key "active" of the key-value bucket
// QUINIELA_LEASE, whose entries expire unless renewed.
//
// # Trying it with the nats CLI
//
// Every request and reply is readable text, so the nats CLI shows and sends
// them (-H adds a header in K:V form; a last row may go without its LF):
//
//	nats sub 'bets.>'
//	nats req bets.agency.1 'Juan,Perez,30123456,1990-05-17,7574' -H Quiniela-Agency:1 -H Quiniela-Batch:1 -H Quiniela-Lines:1
//	nats req bets.agency.1.done '' -H Quiniela-Agency:1 -H Quiniela-Batches:1
//	nats req winners.agency.1 ''
//	nats req quiniela.status ''
//	nats micro ls
//	nats micro info quiniela-central
//	nats micro stats quiniela-central --json
//
// The first shows every batch and done as it goes by, headers included;
// the next three are an agency's whole life with one bet; the last three
// list the central's endpoints and their request and error counts. With
// CENTRAL_LEDGER=jetstream the ledger and the lease show with
//
//	nats stream info QUINIELA
//	nats stream subjects QUINIELA
//	nats kv get QUINIELA_LEASE active
package messages
