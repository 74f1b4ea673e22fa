package messages

// Success replies are JSON, readable with `nats req`.

// BatchReply acknowledges a batch: every row of it is on disk. Added counts
// the rows this request stored; the others were stored before, by an
// earlier request for their lines (a resend after a timeout, or an earlier
// run of the agency), and are not stored twice.
type BatchReply struct {
	Agency int    `json:"agency"`
	Batch  uint64 `json:"batch"`
	Bets   int    `json:"bets"`
	Added  int    `json:"added"`
	// Window is how many batches the agency may keep in flight from now on:
	// the central's share of its queue budget among the agencies not done
	// (credit-based flow control). 0: no advice, keep the current window.
	Window int `json:"window,omitempty"`
}

// MaxWindow bounds BatchReply.Window: past it more batches in flight gain
// nothing but memory.
const MaxWindow = 64

// DoneReply acknowledges an agency's done notification.
type DoneReply struct {
	Agency  int    `json:"agency"`
	Batches uint64 `json:"batches"`
	Bets    int64  `json:"bets"` // bets stored for the agency in all
}

// WinnersReply lists the documents (DNIs) of an agency's winners, and only
// that agency's.
type WinnersReply struct {
	Agency  int      `json:"agency"`
	Winners []string `json:"winners"`
}

// StatusReply answers StatusSubject: what the central has stored of each
// agency and where the draw stands. After the draw it gives the number of
// winners per agency, never their documents.
type StatusReply struct {
	// Agencies lists the agencies that have stored a batch or are done, in
	// order, up to StatusListMax of them.
	Agencies []AgencyStatus `json:"agencies"`
	Bets     int64          `json:"bets"`              // bets stored, all agencies
	Done     int            `json:"done"`              // agencies done
	Of       int            `json:"of"`                // agencies in the lottery
	Drawn    bool           `json:"drawn"`             // the draw has run
	Winners  map[string]int `json:"winners,omitempty"` // after the draw: agency → number of winners
}

// StatusListMax bounds StatusReply.Agencies so that the reply stays far under
// the broker's payload limit whatever CENTRAL_AGENCIES is.
const StatusListMax = 1000

// AgencyStatus is one agency's progress in a StatusReply.
type AgencyStatus struct {
	Agency  int    `json:"agency"`
	Batches uint64 `json:"batches"` // batches stored
	Bets    int64  `json:"bets"`    // bets stored
	Done    bool   `json:"done"`
}
