package testenv

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// origin serves /?n=N with N bytes and counts the connections it accepts.
func origin(t *testing.T) (url string, conns *atomic.Int64) {
	conns = &atomic.Int64{}
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		_, _ = w.Write(make([]byte, n))
	}))
	s.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s.URL, conns
}

func shaped(t *testing.T, target string, shape Shape) *Proxy {
	p, err := NewShapedProxy(target, shape)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	return p
}

// fetch GETs n bytes and returns how long the whole body took to arrive and
// how long the first response byte took after the request was written.
func fetch(t *testing.T, c *http.Client, url string, n int) (total, firstByte time.Duration) {
	t.Helper()
	var wrote, first time.Time
	trace := &httptrace.ClientTrace{
		WroteRequest:         func(httptrace.WroteRequestInfo) { wrote = time.Now() },
		GotFirstResponseByte: func() { first = time.Now() },
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodGet, url+"/?n="+strconv.Itoa(n), nil)
	require.NoError(t, err)
	start := time.Now()
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	got, err := io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)
	require.EqualValues(t, n, got)
	return time.Since(start), first.Sub(wrote)
}

func client() *http.Client { return &http.Client{Transport: &http.Transport{DisableCompression: true}} }

// atLeast is a tolerant lower bound: 90% of the ideal, for timer slack.
func atLeast(d time.Duration) time.Duration { return d * 9 / 10 }

func TestShapedProxyCapsAConnectionsBandwidth(t *testing.T) {
	t.Parallel()
	url, _ := origin(t)
	const size, rate = 4 << 20, 16 << 20 // 250 ms at the cap
	took, _ := fetch(t, client(), shaped(t, url, Shape{BytesPerSecond: rate}).URL(), size)
	ideal := time.Duration(size * float64(time.Second) / rate)
	require.GreaterOrEqual(t, took, atLeast(ideal), "4 MiB at 16 MiB/s")
	t.Logf("4 MiB in %v at a cap of 16 MiB/s (%.1f MiB/s)", took, float64(size)/(1<<20)/took.Seconds())
}

func TestShapedProxyGivesEachConnectionItsOwnCap(t *testing.T) {
	t.Parallel()
	url, conns := origin(t)
	const size, rate = 4 << 20, 8 << 20 // 500 ms each at the cap
	p := shaped(t, url, Shape{BytesPerSecond: rate})
	ideal := time.Duration(size * float64(time.Second) / rate)
	start := time.Now()
	var wg sync.WaitGroup
	took := make([]time.Duration, 2)
	for i := range took {
		wg.Go(func() { took[i], _ = fetch(t, client(), p.URL(), size) }) // a client each: two connections
	}
	wg.Wait()
	both := time.Since(start)
	require.EqualValues(t, 2, conns.Load())
	for _, d := range took {
		require.GreaterOrEqual(t, d, atLeast(ideal), "each connection is capped")
	}
	// One cap shared by both would take 2x ideal.
	require.Less(t, both, 2*ideal*9/10, "two connections move twice as much")
	t.Logf("two 4 MiB transfers at 8 MiB/s each: %v and %v, %v together", took[0], took[1], both)
}

func TestShapedProxyDelaysEachResponse(t *testing.T) {
	t.Parallel()
	url, conns := origin(t)
	const delay = 100 * time.Millisecond
	c := client()
	p := shaped(t, url, Shape{FirstByte: delay})
	for range 3 {
		total, first := fetch(t, c, p.URL(), 1000)
		require.GreaterOrEqual(t, first, atLeast(delay), "time to first byte")
		require.GreaterOrEqual(t, total, atLeast(delay))
	}
	require.EqualValues(t, 1, conns.Load(), "three requests on one keep-alive connection, each delayed")
}

func TestShapedProxyCutAndRestore(t *testing.T) {
	t.Parallel()
	url, _ := origin(t)
	p := shaped(t, url, Shape{BytesPerSecond: 64 << 20, FirstByte: 10 * time.Millisecond})
	c := client()
	fetch(t, c, p.URL(), 1<<20)
	p.Cut()
	_, err := c.Get(p.URL() + "/?n=10")
	require.Error(t, err, "cut: the connection is dropped and new ones refused")
	require.Contains(t, p.Refused(), "GET /?n=10 HTTP/1.1", "a refused request is named")
	p.Restore()
	fetch(t, c, p.URL(), 1<<20)
}

func TestHoldHangsRequestsUntilRestore(t *testing.T) {
	t.Parallel()
	target, _ := origin(t)
	p := shaped(t, target, Shape{})
	p.Hold()
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get(p.URL() + "/?n=1000")
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		done <- result{n, err}
	}()
	Eventually(t, "the request to be held", 5*time.Second, func() bool { return p.Held() == 1 })
	select {
	case r := <-done:
		t.Fatalf("a held request was answered: %+v", r)
	case <-time.After(200 * time.Millisecond): // held, not refused: nothing comes back
	}
	p.Restore()
	r := <-done
	require.NoError(t, r.err)
	require.EqualValues(t, 1000, r.n, "once restored, the held request goes through")
}
