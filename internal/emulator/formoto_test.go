package emulator

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/policy"
)

const bucket = "arn:aws:s3:::inferstack-dev"

// deployed are the documents of the stack's roles, as the program attaches them.
func deployed() map[string]policy.Document {
	const intake, tier, param = "arn:aws:sqs:us-east-1:1:intake", "arn:aws:sqs:us-east-1:1:cpu", "arn:aws:ssm:us-east-1:1:parameter/p"
	return map[string]policy.Document{
		"dispatch": policy.Dispatch(policy.DispatchArgs{IntakeQueueARN: intake, DeadLetterARN: intake + "-dlq", TierQueueARNs: []string{tier},
			TierParameterARN: param, BucketARN: bucket, LogGroupARN: "arn:aws:logs:us-east-1:1:log-group:g"}),
		"worker": policy.WorkerTask(policy.WorkerArgs{QueueARN: tier, DeadLetterARN: tier + "-dlq", BucketARN: bucket,
			ClusterARN: "arn:aws:ecs:us-east-1:1:cluster/inferstack-cpu"}),
		"client": policy.Client(policy.ClientArgs{IntakeQueueARN: intake, TierParameterARN: param, BucketARN: bucket}),
	}
}

func TestForMoto(t *testing.T) {
	t.Parallel()
	const (
		param = "arn:aws:ssm:us-east-1:123456789012:parameter/inferstack/dev/tier"
		queue = "arn:aws:sqs:us-east-1:123456789012:intake"
	)
	prefixes := map[string]map[string]any{"StringLike": {"s3:prefix": []string{"inputs/*"}}}
	for name, tc := range map[string]struct {
		in, want []policy.Statement
	}{
		"s3 keeps its resources": {
			in:   []policy.Statement{allow("Read", []string{"s3:GetObject"}, bucket+"/inputs/*")},
			want: []policy.Statement{allow("Read", []string{"s3:GetObject"}, bucket+"/inputs/*")},
		},
		"a condition is kept": {
			in:   []policy.Statement{{Sid: "List", Effect: "Allow", Action: []string{"s3:ListBucket"}, Resource: []string{bucket}, Condition: prefixes}},
			want: []policy.Statement{{Sid: "List", Effect: "Allow", Action: []string{"s3:ListBucket"}, Resource: []string{bucket}, Condition: prefixes}},
		},
		"sqs keeps its resources and gains the batch twins": {
			in: []policy.Statement{allow("Consume", []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "SQS:SendMessage"}, queue)},
			want: []policy.Statement{allow("Consume", []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:DeleteMessageBatch",
				"sqs:ChangeMessageVisibility", "sqs:ChangeMessageVisibilityBatch", "SQS:SendMessage", "sqs:SendMessageBatch"}, queue)},
		},
		"ssm on any resource, same actions": {
			in:   []policy.Statement{allow("Tier", []string{"ssm:GetParameter", "ssm:PutParameter"}, param)},
			want: []policy.Statement{allow("Tier", []string{"ssm:GetParameter", "ssm:PutParameter"}, "*")},
		},
		"logs and ecs on any resource": {
			in: []policy.Statement{
				allow("Logs", []string{"logs:PutLogEvents"}, "arn:aws:logs:us-east-1:1:log-group:g:*"),
				allow("Protect", []string{"ecs:UpdateTaskProtection"}, "arn:aws:ecs:us-east-1:1:task/c/*", "arn:aws:ecs:us-east-1:1:task/d/*"),
			},
			want: []policy.Statement{allow("Logs", []string{"logs:PutLogEvents"}, "*"), allow("Protect", []string{"ecs:UpdateTaskProtection"}, "*")},
		},
		"a mixed statement is split": {
			in:   []policy.Statement{allow("Mixed", []string{"ssm:GetParameter", "s3:GetObject"}, param, bucket+"/x")},
			want: []policy.Statement{allow("Mixed", []string{"s3:GetObject"}, param, bucket+"/x"), allow("MixedAnyResource", []string{"ssm:GetParameter"}, "*")},
		},
		"a deny widens too (fails closed)": {
			in:   []policy.Statement{{Effect: "Deny", Action: []string{"ssm:PutParameter"}, Resource: []string{param}}},
			want: []policy.Statement{{Effect: "Deny", Action: []string{"ssm:PutParameter"}, Resource: []string{"*"}}},
		},
		"a trust statement has no resource to widen": {
			in:   policy.AssumeRole("lambda.amazonaws.com").Statement,
			want: policy.AssumeRole("lambda.amazonaws.com").Statement,
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			in := doc(tc.in...)
			before := in.JSON()
			require.Equal(t, doc(tc.want...), forMoto(in))
			require.Equal(t, before, in.JSON(), "the original is unchanged")
		})
	}
}

// Each principal's document, made for moto, allows what the document allows
// (its S3 and SQS grants on the same resources, its other actions on the
// "*" moto checks them against) and nothing more on S3 and SQS.
func TestForMotoKeepsEveryGrant(t *testing.T) {
	t.Parallel()
	for name, d := range deployed() {
		local := forMoto(d)
		for _, s := range d.Statement {
			if s.Condition != nil {
				continue // copied as is (TestForMoto); Allows would need the request's keys
			}
			for _, a := range s.Action {
				for _, r := range s.Resource {
					if resourceChecked(a) {
						require.True(t, local.Allows(a, strings.ReplaceAll(r, "*", "x"), nil), "%s: %s on %s", name, a, r)
					} else {
						require.True(t, local.Allows(a, "*", nil), "%s: %s", name, a)
					}
				}
			}
		}
		for _, s := range local.Statement {
			for _, a := range s.Action {
				if resourceChecked(a) {
					require.NotContains(t, s.Resource, "*", "%s: %s widened", name, a)
				}
			}
		}
		require.False(t, local.Allows("s3:PutObject", bucket+"/models/x", nil), name)
		require.False(t, local.Allows("s3:DeleteBucket", bucket, nil), name)
		require.False(t, local.Allows("iam:CreateUser", "*", nil), name)
	}
	local := forMoto(deployed()["dispatch"])
	require.True(t, local.Allows("sqs:SendMessageBatch", "arn:aws:sqs:us-east-1:1:cpu", nil), "moto's name for a batch send")
	require.False(t, local.Allows("sqs:SendMessageBatch", "arn:aws:sqs:us-east-1:1:intake", nil))
}
