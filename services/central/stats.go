package central

import (
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quiniela/quiniela/messages"
)

// endpointStats counts every reply an endpoint sent, early or late, for
// micro's STATS (`nats micro stats quiniela-central`, field data): micro's
// own num_errors sees only the replies sent before a handler returned, and
// its processing time only the routing.
type endpointStats struct {
	ignored atomic.Int64 // requests dropped unanswered (see Service.answerable)

	mu      sync.Mutex
	replies int64
	errors  int64
	codes   map[string]int64 // error replies by code
	latency histogram        // receipt → reply
}

// EndpointStatsData is the data of one endpoint in micro's STATS reply.
type EndpointStatsData struct {
	Replies        int64            `json:"replies"`        // replies sent, success and error
	Errors         int64            `json:"errors"`         // error replies sent
	ErrorsByCode   map[string]int64 `json:"errors_by_code"` // error replies by code
	Ignored        int64            `json:"ignored"`        // requests dropped unanswered: no or forbidden reply subject
	ReplyMillisP50 float64          `json:"reply_ms_p50"`   // receipt → reply, median (a batch's includes its commit)
	ReplyMillisP99 float64          `json:"reply_ms_p99"`   // receipt → reply, 99th percentile
}

func (e *endpointStats) count(c *call, code messages.Code) {
	d := time.Since(c.received)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.replies++
	if code != 0 {
		e.errors++
		e.codes[strconv.Itoa(int(code))]++
	}
	e.latency.add(d)
}

func (e *endpointStats) snapshot() EndpointStatsData {
	if e == nil {
		return EndpointStatsData{}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	codes := make(map[string]int64, len(e.codes))
	for k, v := range e.codes {
		codes[k] = v
	}
	return EndpointStatsData{
		Replies: e.replies, Errors: e.errors, ErrorsByCode: codes, Ignored: e.ignored.Load(),
		ReplyMillisP50: e.latency.quantile(0.50), ReplyMillisP99: e.latency.quantile(0.99),
	}
}

// histogram counts durations in buckets growing by 2^(1/8) (9 % apart) from
// 1 µs, so that quantiles cost constant memory whatever the load and are
// within 9 % of the truth.
type histogram struct {
	buckets [histogramBuckets]int64
	n       int64
}

const (
	histogramBuckets = 8 * 32 // up to 2^32 µs, over an hour
	bucketsPerDouble = 8
)

func (h *histogram) add(d time.Duration) {
	us := float64(d) / float64(time.Microsecond)
	i := 0
	if us > 1 {
		i = min(int(math.Log2(us)*bucketsPerDouble)+1, histogramBuckets-1)
	}
	h.buckets[i]++
	h.n++
}

// quantile is the upper bound, in milliseconds, of the bucket holding the q
// quantile; 0 without samples.
func (h *histogram) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	var seen int64
	for i, n := range h.buckets {
		seen += n
		if seen >= rank {
			upper := math.Exp2(float64(i) / bucketsPerDouble) // µs
			return math.Round(upper) / 1000
		}
	}
	return 0
}
