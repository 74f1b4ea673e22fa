package messages

import "github.com/nats-io/nats.go"

// Headers every request carries. Headers, not a binary envelope, so that
// `nats sub 'bets.>'` shows a batch as readable text.
const (
	HeaderAgency  = "Quiniela-Agency"  // the sending agency, equal to the N of the subject
	HeaderBatch   = "Quiniela-Batch"   // batch sequence number of the agency: 1, 2, 3, …
	HeaderBatches = "Quiniela-Batches" // on done: how many batches the agency sent in all
	// HeaderLines (lines.go): on a batch, the file lines of its rows.
)

// The 8 kB rule: nothing that goes on the wire for one message may exceed
// MaxMessageBytes. That counts the protocol line (HPUB subject reply sizes),
// the headers, the payload and the CRLFs.
const (
	MaxMessageBytes = 8192

	// MaxReplyBytes is reserved for the reply subject the client library
	// adds (_INBOX.<22-char nuid>.<token>, or a custom inbox prefix).
	MaxReplyBytes = 128
)

// WireSize is the number of bytes a request with this subject, headers and
// payload takes on the wire, with the reply subject counted at its maximum.
func WireSize(subject string, h nats.Header, payloadLen int) int {
	return wireSize(len(subject), headerBytes(h), payloadLen)
}

// wireSize is WireSize from the sizes of the subject, the header block and
// the payload.
func wireSize(subject, hdr, payload int) int {
	total := hdr + payload
	// HPUB <subject> <reply> <hdr> <total>\r\n<headers><payload>\r\n
	return len("HPUB ") + subject + 1 + MaxReplyBytes + 1 +
		digits(hdr) + 1 + digits(total) + 2 + total + 2
}

// headerBytes is the size of h as NATS encodes it: NATS/1.0\r\n, one
// "Key: value\r\n" per value, and a closing \r\n.
func headerBytes(h nats.Header) int {
	if len(h) == 0 {
		return 0
	}
	n := len("NATS/1.0\r\n") + 2
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n
}

// HeaderBytes is the size of h as NATS encodes it, which a server's
// max_payload counts with the payload.
func HeaderBytes(h nats.Header) int { return headerBytes(h) }

func digits(n int) int { return digits64(uint64(n)) }

// MaxPayloadBytes is the largest payload a request on subject with headers h
// may carry under the 8 kB rule.
func MaxPayloadBytes(subject string, h nats.Header) int {
	// WireSize grows by one byte per payload byte, plus one per extra digit of
	// the total length; start from the bound and step down.
	p := MaxMessageBytes - WireSize(subject, h, 0)
	for p > 0 && WireSize(subject, h, p) > MaxMessageBytes {
		p--
	}
	return p
}
