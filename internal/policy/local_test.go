package policy

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestForMoto(t *testing.T) {
	t.Parallel()
	const (
		param = "arn:aws:ssm:us-east-1:123456789012:parameter/inferstack/dev/tier"
		queue = "arn:aws:sqs:us-east-1:123456789012:intake"
	)
	prefixes := map[string]map[string]any{"StringLike": {"s3:prefix": []string{"inputs/*"}}}
	for name, tc := range map[string]struct {
		in, want []Statement
	}{
		"s3 keeps its resources": {
			in:   []Statement{allow("Read", []string{"s3:GetObject"}, bucket+"/inputs/*")},
			want: []Statement{allow("Read", []string{"s3:GetObject"}, bucket+"/inputs/*")},
		},
		"a condition is kept": {
			in:   []Statement{{Sid: "List", Effect: "Allow", Action: []string{"s3:ListBucket"}, Resource: []string{bucket}, Condition: prefixes}},
			want: []Statement{{Sid: "List", Effect: "Allow", Action: []string{"s3:ListBucket"}, Resource: []string{bucket}, Condition: prefixes}},
		},
		"sqs keeps its resources and gains the batch twins": {
			in: []Statement{allow("Consume", []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "SQS:SendMessage"}, queue)},
			want: []Statement{allow("Consume", []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:DeleteMessageBatch",
				"sqs:ChangeMessageVisibility", "sqs:ChangeMessageVisibilityBatch", "SQS:SendMessage", "sqs:SendMessageBatch"}, queue)},
		},
		"ssm on any resource, same actions": {
			in:   []Statement{allow("Tier", []string{"ssm:GetParameter", "ssm:PutParameter"}, param)},
			want: []Statement{allow("Tier", []string{"ssm:GetParameter", "ssm:PutParameter"}, "*")},
		},
		"logs and ecs on any resource": {
			in: []Statement{
				allow("Logs", []string{"logs:PutLogEvents"}, "arn:aws:logs:us-east-1:1:log-group:g:*"),
				allow("Protect", []string{"ecs:UpdateTaskProtection"}, "arn:aws:ecs:us-east-1:1:task/c/*", "arn:aws:ecs:us-east-1:1:task/d/*"),
			},
			want: []Statement{allow("Logs", []string{"logs:PutLogEvents"}, "*"), allow("Protect", []string{"ecs:UpdateTaskProtection"}, "*")},
		},
		"a mixed statement is split": {
			in:   []Statement{allow("Mixed", []string{"ssm:GetParameter", "s3:GetObject"}, param, bucket+"/x")},
			want: []Statement{allow("Mixed", []string{"s3:GetObject"}, param, bucket+"/x"), allow("MixedAnyResource", []string{"ssm:GetParameter"}, "*")},
		},
		"a deny widens too (fails closed)": {
			in:   []Statement{{Effect: "Deny", Action: []string{"ssm:PutParameter"}, Resource: []string{param}}},
			want: []Statement{{Effect: "Deny", Action: []string{"ssm:PutParameter"}, Resource: []string{"*"}}},
		},
		"a trust statement has no resource to widen": {
			in:   AssumeRole("lambda.amazonaws.com").Statement,
			want: AssumeRole("lambda.amazonaws.com").Statement,
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			in := doc(tc.in...)
			before := in.JSON()
			require.Equal(t, doc(tc.want...), in.ForMoto())
			require.Equal(t, before, in.JSON(), "the original is unchanged")
		})
	}
}

// Each principal's document, made for moto, allows what the document allows
// (its S3 and SQS grants on the same resources, its other actions on the
// "*" moto checks them against) and nothing more on S3 and SQS.
func TestForMotoKeepsEveryGrant(t *testing.T) {
	t.Parallel()
	for name, d := range docs() {
		local := d.doc.ForMoto()
		for _, s := range d.doc.Statement {
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
	local := docs()["dispatch"].doc.ForMoto()
	require.True(t, local.Allows("sqs:SendMessageBatch", "arn:aws:sqs:us-east-1:1:cpu", nil), "moto's name for a batch send")
	require.False(t, local.Allows("sqs:SendMessageBatch", "arn:aws:sqs:us-east-1:1:intake", nil))
}
