package testenv

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Eventually polls cond until it holds; past timeout the test fails, naming
// what it waited for and showing logs (read only then). It polls at once,
// then at growing intervals up to 50 ms: a condition that holds in a
// millisecond is seen in one, and a slow one costs moto few requests.
func Eventually(t testing.TB, what string, timeout time.Duration, cond func() bool, logs ...fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for tick := time.Millisecond; !cond(); tick = min(2*tick, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			var shown strings.Builder
			for _, l := range logs {
				shown.WriteString("\n" + l.String())
			}
			t.Fatalf("timed out after %s waiting for %s%s", timeout, what, shown.String())
		}
		time.Sleep(tick)
	}
}

// Show is a log for Eventually that is worked out only when it is shown.
type Show func() string

func (s Show) String() string { return s() }
