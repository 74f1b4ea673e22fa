package messages

// Success replies are JSON, readable with `nats req`.

// BatchReply acknowledges a batch: it is on disk. A resent batch that was
// already stored gets the same reply, so a retry cannot tell, and need not.
type BatchReply struct {
	Agency int    `json:"agency"`
	Batch  uint64 `json:"batch"`
	Bets   int    `json:"bets"`
}

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
