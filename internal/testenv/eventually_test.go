package testenv

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// failed records what Eventually reported, standing in for a *testing.T.
type failed struct {
	testing.TB
	msg string
}

func (f *failed) Helper() {}

func (f *failed) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(f) // as t.Fatalf ends the goroutine: Eventually must not go on
}

func TestEventually(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		holdsAt int // the call of cond that first returns true; 0: never
		fails   string
	}{
		{name: "holds at once", holdsAt: 1},
		{name: "holds later", holdsAt: 5},
		{name: "never holds", fails: "timed out after 30ms waiting for the thing\nlog one\nlog two"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &failed{TB: t}
			calls := 0
			start := time.Now()
			func() {
				defer func() {
					if r := recover(); r != nil && r != any(f) {
						panic(r)
					}
				}()
				Eventually(f, "the thing", 30*time.Millisecond, func() bool { calls++; return calls == tc.holdsAt },
					Show(func() string { return "log one" }), Show(func() string { return "log two" }))
			}()
			require.Equal(t, tc.fails, f.msg)
			if tc.holdsAt > 0 {
				require.Equal(t, tc.holdsAt, calls, "polled until it held, and no more")
			} else {
				require.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond)
			}
		})
	}
}
