package tests

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/policy"
	"github.com/inferstack/inferstack/tests/fakeaws"
)

// document parses the policy JSON in input key of r.
func document(t *testing.T, r registered, key string) policy.Document {
	t.Helper()
	var d policy.Document
	require.NoError(t, json.Unmarshal([]byte(str(r.Inputs, key)), &d), r.Name)
	return d
}

func dependsOn(r registered, name string) bool {
	return slices.ContainsFunc(r.Deps, func(dep string) bool { return strings.HasSuffix(dep, "::"+name) })
}

// An upload under inputs/ notifies the intake queue, whose policy lets S3
// send from this bucket only; the notification waits for that policy, which
// S3 checks when the notification is put.
func TestUploadsNotifyTheIntakeQueue(t *testing.T) {
	t.Parallel()
	d := run(t, config(t, "dev", nil))
	bucket, intake := d.named("inferstack-bucket"), d.named("inferstack-intake")
	bucketARN, intakeARN := str(bucket.Outputs, "arn"), str(intake.Outputs, "arn")

	n := d.named("inferstack-uploads")
	require.Equal(t, "aws:s3/bucketNotification:BucketNotification", n.Type)
	require.Equal(t, str(bucket.Outputs, "bucket"), str(n.Inputs, "bucket"))
	queues := n.Inputs["queues"].ArrayValue()
	require.Len(t, queues, 1)
	q := queues[0].ObjectValue()
	require.Equal(t, intakeARN, str(q, "queueArn"))
	require.Equal(t, []resource.PropertyValue{resource.NewStringProperty("s3:ObjectCreated:*")}, q["events"].ArrayValue())
	require.Equal(t, job.InputPrefix, str(q, "filterPrefix"))
	require.Empty(t, str(q, "filterSuffix"))
	require.True(t, dependsOn(n, "inferstack-intake-from-bucket"), "the notification does not wait for the queue policy: %v", n.Deps)

	qp := d.named("inferstack-intake-from-bucket")
	require.Equal(t, "aws:sqs/queuePolicy:QueuePolicy", qp.Type)
	require.Equal(t, str(intake.Outputs, "url"), str(qp.Inputs, "queueUrl"))
	doc := document(t, qp, "policy")
	from := func(bucketARN, account string) map[string]string {
		return map[string]string{"aws:SourceArn": bucketARN, "aws:SourceAccount": account}
	}
	require.True(t, doc.AllowsPrincipal("Service", "s3.amazonaws.com", "sqs:SendMessage", intakeARN, from(bucketARN, fakeaws.Account)))
	require.False(t, doc.AllowsPrincipal("Service", "s3.amazonaws.com", "sqs:SendMessage", intakeARN, from("arn:aws:s3:::other", fakeaws.Account)),
		"another bucket")
	require.False(t, doc.AllowsPrincipal("Service", "s3.amazonaws.com", "sqs:SendMessage", intakeARN, from(bucketARN, "210987654321")),
		"the same bucket name in another account")
	require.False(t, doc.AllowsPrincipal("Service", "sns.amazonaws.com", "sqs:SendMessage", intakeARN, from(bucketARN, fakeaws.Account)),
		"another service")
	require.False(t, doc.AllowsPrincipal("Service", "s3.amazonaws.com", "sqs:DeleteMessage", intakeARN, from(bucketARN, fakeaws.Account)))
	require.False(t, doc.AllowsPrincipal("Service", "s3.amazonaws.com", "sqs:SendMessage", str(d.named("inferstack-cpu-queue").Outputs, "arn"),
		from(bucketARN, fakeaws.Account)), "another queue")
}

func TestUploadTriggersOff(t *testing.T) {
	t.Parallel()
	on, off := run(t, config(t, "dev", nil)), run(t, config(t, "dev", map[string]string{"uploadTriggers": "false"}))
	require.Empty(t, off.ofType("aws:s3/bucketNotification:BucketNotification"))
	require.Empty(t, off.ofType("aws:sqs/queuePolicy:QueuePolicy"))
	require.Equal(t, len(on.all)-2, len(off.all), "nothing else changes")
}

// The events topic is encrypted with a key of its own, and only the dispatch
// function and the workers may publish to it, over TLS; their roles may
// publish and use the key.
func TestEventsTopicIsEncryptedAndOnlyTheStackPublishes(t *testing.T) {
	t.Parallel()
	for _, overrides := range []map[string]string{nil, {"gpuEnabled": "false"}} {
		cfg := config(t, "dev", overrides)
		d := run(t, cfg)
		topic, key := d.named("inferstack-events"), d.named("inferstack-events-key")
		topicARN, keyARN := str(topic.Outputs, "arn"), str(key.Outputs, "arn")
		require.Equal(t, "aws:sns/topic:Topic", topic.Type)
		require.Equal(t, keyARN, str(topic.Inputs, "kmsMasterKeyId"))
		require.True(t, boolean(key.Inputs, "enableKeyRotation"))
		require.Equal(t, policy.EventsKey(fakeaws.Account), document(t, key, "policy"))

		tp := d.named("inferstack-events-policy")
		require.Equal(t, "aws:sns/topicPolicy:TopicPolicy", tp.Type)
		require.Equal(t, topicARN, str(tp.Inputs, "arn"))
		doc := document(t, tp, "policy")
		publish := func(role string, tls bool) bool {
			ctx := map[string]string{"aws:PrincipalArn": role, "aws:SecureTransport": map[bool]string{true: "true", false: "false"}[tls]}
			return doc.AllowsPrincipal("AWS", role, "sns:Publish", topicARN, ctx)
		}
		publishers := []string{"inferstack-dispatch-role"}
		for _, tier := range cfg.Tiers() {
			publishers = append(publishers, "inferstack-"+tier.Name+"-task-role")
		}
		for _, name := range publishers {
			role := str(d.named(name).Outputs, "arn")
			require.True(t, publish(role, true), "%s may not publish", name)
			require.False(t, publish(role, false), "%s publishes without TLS", name)
		}
		for _, name := range []string{"inferstack-cpu-execution-role", "inferstack-cpu-instance-role"} {
			require.False(t, publish(str(d.named(name).Outputs, "arn"), true), "%s publishes", name)
		}
		require.False(t, publish("arn:aws:iam::210987654321:role/other", true), "another account's role publishes")
		if !cfg.GPUEnabled {
			require.NotContains(t, str(tp.Inputs, "policy"), "inferstack-gpu")
		}

		// And the publishers' own policies let them.
		for _, name := range []string{"inferstack-dispatch-policy", "inferstack-cpu-task-policy"} {
			rp := document(t, d.named(name), "policy")
			require.True(t, rp.Allows("sns:Publish", topicARN, nil), name)
			require.True(t, rp.Allows("kms:GenerateDataKey", keyARN, nil), name)
			require.True(t, rp.Allows("kms:Decrypt", keyARN, nil), name)
			require.False(t, rp.Allows("sns:Publish", str(d.named("inferstack-alarms").Outputs, "arn"), nil), name)
		}
	}
}

func TestEventsSubscription(t *testing.T) {
	t.Parallel()
	const queue = "arn:aws:sqs:us-east-1:210987654321:job-events"
	for endpoint, want := range map[string]struct {
		protocol string
		raw      bool // rawMessageDelivery set (to false)
	}{
		"ops@example.com": {"email", false},
		queue:             {"sqs", true},
	} {
		d := run(t, config(t, "dev", map[string]string{"eventsSubscription": endpoint}))
		sub := d.named("inferstack-events-subscription")
		require.Equal(t, "aws:sns/topicSubscription:TopicSubscription", sub.Type)
		require.Equal(t, str(d.named("inferstack-events").Outputs, "arn"), str(sub.Inputs, "topic"))
		require.Equal(t, want.protocol, str(sub.Inputs, "protocol"))
		require.Equal(t, endpoint, str(sub.Inputs, "endpoint"))
		raw, ok := sub.Inputs["rawMessageDelivery"]
		require.Equal(t, want.raw, ok && !raw.IsNull(), endpoint)
		if want.raw {
			require.False(t, raw.BoolValue(), "the envelope (and its MessageAttributes) is kept")
		}
	}
	require.Empty(t, run(t, config(t, "dev", nil)).ofType("aws:sns/topicSubscription:TopicSubscription"))
}
