package emulator

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/awsenv"
	"github.com/inferstack/inferstack/internal/awserr"
	"github.com/inferstack/inferstack/internal/policy"
)

func allow(sid string, actions []string, resources ...string) policy.Statement {
	return policy.Statement{Sid: sid, Effect: "Allow", Action: actions, Resource: resources}
}

func doc(statements ...policy.Statement) policy.Document {
	return policy.Document{Version: "2012-10-17", Statement: statements}
}

// requireDenied asserts that err is IAM's refusal: HTTP 403, which
// awserr classifies as denied (what the worker and the dispatcher branch
// on). For S3 moto words it as AWS does: code AccessDenied, or a bare 403
// to a HEAD (no body: the SDK calls it Forbidden). For SQS and SSM it
// answers in XML where AWS answers JSON, so the SDK sees a bare 403.
func requireDenied(t *testing.T, err error, what string) {
	t.Helper()
	require.Error(t, err, what)
	var re *smithyhttp.ResponseError
	require.True(t, errors.As(err, &re), "%s: %v", what, err)
	require.Equal(t, http.StatusForbidden, re.HTTPStatusCode(), "%s: %v", what, err)
	require.True(t, awserr.IsDenied(err), "%s: %v", what, err)
	var api smithy.APIError
	if errors.As(err, &api) {
		require.Contains(t, []string{"AccessDenied", "AccessDeniedException", "Forbidden"}, api.ErrorCode(), "%s: %v", what, err)
	}
}

func TestPrincipalsGetExactlyTheirDocument(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	m, err := StartMoto(ctx, WithIAM())
	require.NoError(t, err)
	defer m.Stop()

	// The admin (Config, Env) sets up.
	admin, err := m.Config(ctx)
	require.NoError(t, err)
	adminS3 := s3.NewFromConfig(admin, awsenv.EmulatorS3Options)
	_, err = adminS3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("bucket")})
	require.NoError(t, err)
	for _, key := range []string{"inputs/x", "results/x"} {
		_, err = adminS3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bucket"), Key: aws.String(key), Body: strings.NewReader(key)})
		require.NoError(t, err)
	}
	const param = "/inferstack/test/tier"
	_, err = ssm.NewFromConfig(admin).PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(param), Value: aws.String("cpu"), Type: ssmtypes.ParameterTypeString})
	require.NoError(t, err)
	adminSQS := sqs.NewFromConfig(admin)
	queues := map[string]string{}
	for _, name := range []string{"mine", "other"} {
		out, err := adminSQS.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
		require.NoError(t, err)
		queues[name] = aws.ToString(out.QueueUrl)
	}

	// The free requests were spent on the admin: unknown keys are refused.
	anon, err := (&Moto{URL: m.URL}).config(ctx, Credentials{AccessKeyID: "test", SecretAccessKey: "test"})
	require.NoError(t, err)
	_, err = s3.NewFromConfig(anon, awsenv.EmulatorS3Options).ListBuckets(ctx, &s3.ListBucketsInput{})
	require.Error(t, err, "moto let unknown keys through: more free requests than the admin needs")

	p, err := m.Principal(ctx, "reader", doc(
		allow("ReadResults", []string{"s3:GetObject"}, BucketARN("bucket")+"/results/*"),
		allow("ReadTier", []string{"ssm:GetParameter"}, ParameterARN(param)), // forMoto: any parameter
		allow("Send", []string{"sqs:SendMessage"}, QueueARN("mine")),
	))
	require.NoError(t, err)
	cfg, err := p.Config(ctx)
	require.NoError(t, err)
	objects := s3.NewFromConfig(cfg, awsenv.EmulatorS3Options)

	out, err := objects.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bucket"), Key: aws.String("results/x")})
	require.NoError(t, err)
	out.Body.Close() //nolint:errcheck // read nothing
	_, err = objects.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bucket"), Key: aws.String("inputs/x")})
	requireDenied(t, err, "GetObject inputs/x")
	_, err = objects.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("bucket"), Key: aws.String("inputs/x")})
	requireDenied(t, err, "HeadObject inputs/x")
	_, err = objects.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bucket"), Key: aws.String("results/y"), Body: bytes.NewReader([]byte("y"))})
	requireDenied(t, err, "PutObject results/y")

	params := ssm.NewFromConfig(cfg)
	got, err := params.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(param)})
	require.NoError(t, err, "GetParameter with the statement made for moto")
	require.Equal(t, "cpu", aws.ToString(got.Parameter.Value))
	_, err = params.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(param), Value: aws.String("gpu"), Type: ssmtypes.ParameterTypeString, Overwrite: aws.Bool(true)})
	requireDenied(t, err, "PutParameter: actions stay enforced")

	// A batch send is authorized as sqs:SendMessage, on the queue named only.
	q := sqs.NewFromConfig(cfg)
	entries := []sqstypes.SendMessageBatchRequestEntry{{Id: aws.String("1"), MessageBody: aws.String("m")}}
	_, err = q.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(queues["mine"]), Entries: entries})
	require.NoError(t, err)
	_, err = q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(queues["other"]), MessageBody: aws.String("m")})
	requireDenied(t, err, "SendMessage to another queue")
	_, err = q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(queues["mine"])})
	requireDenied(t, err, "ReceiveMessage")

	// The principal's environment signs as it in a child process.
	env := strings.Join(p.Env(), "\n")
	require.Contains(t, env, "AWS_ACCESS_KEY_ID="+p.AccessKeyID+"\n")
	require.Contains(t, env, "AWS_ENDPOINT_URL="+m.URL)
	require.NotEqual(t, m.admin.AccessKeyID, p.AccessKeyID)
}

func TestPrincipalNeedsIAM(t *testing.T) {
	t.Parallel()
	_, err := (&Moto{}).Principal(context.Background(), "x", doc())
	require.ErrorIs(t, err, ErrNoIAM)
}
