package awserr

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"time"

	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// HTTPStatus is the HTTP status of an AWS error, 0 when no response came back.
func HTTPStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// Transient says whether retrying can help: no response at all (the network
// or the endpoint is down), throttling, timeouts and server errors. A denied
// call never is.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	switch s := HTTPStatus(err); {
	case s == 0, s == http.StatusRequestTimeout, s == http.StatusTooManyRequests, s >= 500:
		return true
	}
	return false
}

// MaxOutage is how long Retry keeps retrying transient failures: how long
// a worker rides out an endpoint that is gone before giving its job back.
const MaxOutage = 2 * time.Minute

// Retry runs op until it succeeds, fails for good, or transient failures
// have lasted MaxOutage, backing off from 100 ms to 5 s with jitter. The
// SDK's own retries cover blips; this covers an endpoint gone for a while.
func Retry(ctx context.Context, op func() error) error {
	start, delay := time.Now(), 100*time.Millisecond
	for {
		err := op()
		if !Transient(err) || time.Since(start) > MaxOutage {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(delay/2 + rand.N(delay/2+1)):
		}
		delay = min(2*delay, 5*time.Second)
	}
}
