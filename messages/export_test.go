package messages

import "time"

// SetClock makes ParseBet read the clock from f until the returned function
// restores it, forgetting the cached date both ways.
func SetClock(f func() time.Time) (restore func()) {
	now = f
	latestBirthdate.Store(0)
	return func() {
		now = time.Now
		latestBirthdate.Store(0)
	}
}
