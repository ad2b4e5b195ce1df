package awserr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/require"
)

func response(status int, code string) error {
	var err error = &smithy.GenericAPIError{Code: code, Message: "m"}
	if code == "" {
		err = errors.New("no body") // S3 answers HEAD with a bare status
	}
	return &smithy.OperationError{ServiceID: "S3", OperationName: "HeadObject", Err: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: err}}
}

func TestIsDenied(t *testing.T) {
	t.Parallel()
	for err, want := range map[error]bool{
		response(403, "AccessDenied"):          true,
		response(400, "AccessDeniedException"): true, // SSM and SQS's JSON protocol
		response(403, ""):                      true, // HeadObject
		response(403, "ExpiredToken"):          false,
		response(403, "RequestTimeTooSkewed"):  false,
		response(404, "NoSuchKey"):             false,
		response(500, "InternalError"):         false,
		errors.New("connection refused"):       false,
	} {
		require.Equal(t, want, IsDenied(err), "%v", err)
	}
	require.False(t, IsDenied(nil))
}

func TestDeniedNamesTheActionOnce(t *testing.T) {
	t.Parallel()
	require.NoError(t, Denied(nil, "s3:GetObject", "s3://b/k"))
	other := response(500, "InternalError")
	require.Same(t, other, Denied(other, "s3:GetObject", "s3://b/k"))

	err := fmt.Errorf("input: %w", Denied(response(403, ""), "s3:GetObject", "s3://b/inputs/x"))
	require.True(t, IsDenied(err))
	var d *DeniedError
	require.ErrorAs(t, err, &d)
	require.Equal(t, "s3:GetObject", d.Action)
	require.Contains(t, err.Error(), "access denied: s3:GetObject on s3://b/inputs/x (grant it to this role)")
	again := Denied(err, "sqs:SendMessage", "q")
	require.Same(t, err, again, "the innermost call names the action")
}

func TestTransientIsWhatARetryCanCure(t *testing.T) {
	t.Parallel()
	for err, want := range map[error]bool{
		errors.New("connection refused"):                true, // no response at all
		response(500, "InternalError"):                  true,
		response(503, "SlowDown"):                       true,
		response(429, "TooManyRequests"):                true,
		response(408, "RequestTimeout"):                 true,
		response(404, "NoSuchKey"):                      false,
		response(403, "AccessDenied"):                   false,
		response(400, "InvalidParameterValue"):          false,
		context.Canceled:                                false,
		fmt.Errorf("get: %w", context.DeadlineExceeded): false,
	} {
		require.Equal(t, want, Transient(err), "%v", err)
	}
	require.False(t, Transient(nil))
	require.Equal(t, 503, HTTPStatus(fmt.Errorf("wrapped: %w", response(503, "SlowDown"))))
}
