package emulator

import (
	"strings"

	"github.com/inferstack/inferstack/internal/policy"
)

// forMoto returns d as moto, the AWS emulator the local stack and the tests
// run on, can enforce it, so that a local principal is allowed what d allows
// on AWS and is refused what d leaves out. moto 5.2.1 differs from IAM in
// two ways that matter here (iam_test.go checks both against moto
// itself):
//
//   - It checks the resource only for S3 (bucket and object ARNs) and SQS
//     (queue ARNs). Every other request (SSM, CloudWatch Logs, ECS, SNS...)
//     is evaluated against the resource "*", so a statement scoped to
//     arn:aws:ssm:...:parameter/x would refuse even GetParameter on /x.
//     Such statements get Resource "*" here and keep their actions: the
//     action is still enforced, the scope is asserted by internal/policy's
//     unit tests. A statement mixing S3 or SQS actions with others is split
//     in two, the S3 and SQS part keeping its resources.
//   - It names an SQS batch call's action after the operation
//     (sqs:SendMessageBatch), where IAM authorizes it as the single call
//     (sqs:SendMessage). Each of those actions brings its batch twin.
//
// Conditions are kept; moto evaluates only StringEquals, so the s3:prefix
// limit on s3:ListBucket (StringLike) is also left to the unit tests.
func forMoto(d policy.Document) policy.Document {
	out := policy.Document{Version: d.Version}
	for _, s := range d.Statement {
		if len(s.Resource) == 0 { // a trust policy's statement: no resource to widen
			out.Statement = append(out.Statement, clone(s, s.Action, s.Resource))
			continue
		}
		var scoped, other []string
		for _, a := range s.Action {
			if resourceChecked(a) {
				scoped = append(scoped, a)
				if twin, ok := sqsBatchTwins[strings.ToLower(a)]; ok {
					scoped = append(scoped, twin)
				}
			} else {
				other = append(other, a)
			}
		}
		if len(scoped) > 0 {
			out.Statement = append(out.Statement, clone(s, scoped, s.Resource))
		}
		if len(other) > 0 {
			wide := clone(s, other, []string{"*"})
			if len(scoped) > 0 && wide.Sid != "" {
				wide.Sid += "AnyResource" // Sids are unique within a policy
			}
			out.Statement = append(out.Statement, wide)
		}
	}
	return out
}

// resourceChecked says whether moto checks action's resource: S3 and SQS
// actions (and wildcards that may only name them) are; the rest are not.
func resourceChecked(action string) bool {
	service, _, _ := strings.Cut(strings.ToLower(action), ":")
	return service == "s3" || service == "sqs"
}

// sqsBatchTwins are the batch operations IAM authorizes as the single
// action, by the single action's lowercase name.
var sqsBatchTwins = map[string]string{
	"sqs:sendmessage":             "sqs:SendMessageBatch",
	"sqs:deletemessage":           "sqs:DeleteMessageBatch",
	"sqs:changemessagevisibility": "sqs:ChangeMessageVisibilityBatch",
}

// clone copies s with the given actions and resources, sharing no slice or
// map with s, so that editing the result cannot change the document it came
// from.
func clone(s policy.Statement, actions, resources []string) policy.Statement {
	c := s
	c.Action = append([]string(nil), actions...)
	if resources != nil {
		c.Resource = append([]string(nil), resources...)
	}
	if s.Condition != nil {
		c.Condition = make(map[string]map[string]any, len(s.Condition))
		for op, keys := range s.Condition {
			c.Condition[op] = make(map[string]any, len(keys))
			for k, v := range keys {
				if vs, ok := v.([]string); ok {
					v = append([]string(nil), vs...)
				}
				c.Condition[op][k] = v
			}
		}
	}
	return c
}
