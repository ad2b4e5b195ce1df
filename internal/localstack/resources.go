package localstack

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/inferstack/inferstack/deploy/settings"
	"github.com/inferstack/inferstack/internal/job"
)

// Spec names the resources Create makes: a stack's own (Up) or a test's.
type Spec struct {
	Bucket string
	// Queues are created in order, each DLQ before the queues that redrive
	// to it, as settings.Config.Queues lists them.
	Queues []settings.Queue
	// Prefix comes before each queue's name: tests sharing one moto keep
	// their queues apart with it ("" for the stack's own).
	Prefix string
	Topic  string // the job events topic's name
}

// Option changes a Spec: a test's odd resource, said where it builds them.
type Option func(*Spec)

// WithQueue changes the settings of the queue of that logical name (a
// short visibility timeout, say) before Create makes it.
func WithQueue(name string, change func(*settings.Queue)) Option {
	return func(s *Spec) {
		queues := append([]settings.Queue(nil), s.Queues...) // the caller's list stays as it was
		for i := range queues {
			if queues[i].Name == name {
				change(&queues[i])
			}
		}
		s.Queues = queues
	}
}

// Resources are what Create made, by logical name.
type Resources struct {
	Bucket       string
	Queues, ARNs map[string]string // each queue's URL and ARN
	EventsTopic  string            // the topic's ARN
}

// Create makes the bucket, the queues with their settings (visibility,
// retention, the redrive policy to their DLQ) and the events topic, as the
// Pulumi program does on AWS. Long polling (Queue.WaitSeconds) is left to
// the receivers, which ask for their own.
func Create(ctx context.Context, objects *s3.Client, queues *sqs.Client, topics *sns.Client, spec Spec, opts ...Option) (Resources, error) {
	for _, o := range opts {
		o(&spec)
	}
	r := Resources{Bucket: spec.Bucket, Queues: map[string]string{}, ARNs: map[string]string{}}
	if _, err := objects.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(spec.Bucket)}); err != nil {
		return r, fmt.Errorf("create bucket: %w", err)
	}
	for _, q := range spec.Queues {
		attrs := map[string]string{"MessageRetentionPeriod": fmt.Sprint(q.RetentionSeconds)}
		if q.DeadLetter != "" {
			attrs["VisibilityTimeout"] = fmt.Sprint(q.VisibilitySeconds)
			attrs["RedrivePolicy"] = job.RedrivePolicy(r.ARNs[q.DeadLetter], q.MaxReceives)
		}
		out, err := queues.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(spec.Prefix + q.Name), Attributes: attrs})
		if err != nil {
			return r, fmt.Errorf("create queue %s: %w", q.Name, err)
		}
		r.Queues[q.Name] = aws.ToString(out.QueueUrl)
		if r.ARNs[q.Name], err = queueARN(ctx, queues, out.QueueUrl); err != nil {
			return r, fmt.Errorf("queue %s: %w", q.Name, err)
		}
	}
	topic, err := topics.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(spec.Topic)})
	if err != nil {
		return r, fmt.Errorf("create events topic: %w", err)
	}
	r.EventsTopic = aws.ToString(topic.TopicArn)
	return r, nil
}

// queueARN asks SQS for the ARN of the queue at url.
func queueARN(ctx context.Context, queues *sqs.Client, url *string) (string, error) {
	a, err := queues.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: url,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		return "", err
	}
	return a.Attributes[string(sqstypes.QueueAttributeNameQueueArn)], nil
}
