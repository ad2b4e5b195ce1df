// Package awserr classifies AWS errors by what to do about them: retry a
// transient one (Retry), end at once on a denied one. A call IAM refuses is
// a configuration fault: retrying cannot help, so the job or message it
// belongs to ends at once with an error record naming the denied action and
// resource, instead of being retried until it is dropped.
package awserr

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// DeniedError is an AWS call refused for want of a permission.
type DeniedError struct {
	Action   string // the IAM action, e.g. s3:GetObject
	Resource string // what it was refused on, e.g. s3://bucket/inputs/x
	Err      error
}

func (e *DeniedError) Error() string {
	return fmt.Sprintf("access denied: %s on %s (grant it to this role): %v", e.Action, e.Resource, e.Err)
}

func (e *DeniedError) Unwrap() error { return e.Err }

// 403s that a retry or a credential refresh can cure: the SDK refreshes
// expired credentials, and a skewed clock is corrected on retry.
var curable = map[string]bool{
	"ExpiredToken": true, "ExpiredTokenException": true, "RequestExpired": true, "RequestTimeTooSkewed": true,
}

// IsDenied says whether err is a refusal by IAM (or by a key or bucket
// policy): AccessDenied, AccessDeniedException, or another 403 that
// retrying cannot cure. S3 answers HEAD requests with a bare 403.
func IsDenied(err error) bool {
	if err == nil {
		return false
	}
	var d *DeniedError
	if errors.As(err, &d) {
		return true
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "AccessDenied", "AccessDeniedException":
			return true
		}
		if curable[api.ErrorCode()] {
			return false
		}
	}
	var re *smithyhttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusForbidden
}

// Denied names the action and resource of err when IAM refused it, and
// returns err unchanged otherwise (nil stays nil).
func Denied(err error, action, resource string) error {
	if !IsDenied(err) {
		return err
	}
	var d *DeniedError
	if errors.As(err, &d) {
		return err
	}
	return &DeniedError{Action: action, Resource: resource, Err: err}
}
