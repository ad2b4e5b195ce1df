// Package eventsource stands in for Lambda's SQS event source mapping where
// there is no Lambda service: it long-polls a queue, invokes a function with
// the batch as an events.SQSEvent, and deletes what the function did not
// report as a batch item failure.
package eventsource

import (
	"context"
	"fmt"
	"strconv"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Queue is the SQS API the poller needs.
type Queue interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
}

var _ Queue = (*sqs.Client)(nil)

// Invoke calls the function with a batch.
type Invoke func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error)

// Poller is one event source mapping with ReportBatchItemFailures on.
type Poller struct {
	Queue     Queue
	QueueURL  string
	QueueARN  string
	Region    string
	BatchSize int32 // at most 10 per receive
	WaitTime  int32 // long-poll seconds
	Invoke    Invoke
}

// PollOnce receives up to one batch, invokes the function with it and
// deletes the records that succeeded. As with Lambda: a function error
// deletes nothing, and a failure naming an unknown record fails the whole
// batch; what is not deleted returns after the visibility timeout.
func (p *Poller) PollOnce(ctx context.Context) (received int, err error) {
	out, err := p.Queue.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(p.QueueURL),
		MaxNumberOfMessages:         max(1, min(p.BatchSize, 10)),
		WaitTimeSeconds:             p.WaitTime,
		MessageAttributeNames:       []string{"All"},
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
	})
	if err != nil {
		return 0, fmt.Errorf("receive: %w", err)
	}
	if len(out.Messages) == 0 {
		return 0, nil
	}
	ev := events.SQSEvent{Records: make([]events.SQSMessage, len(out.Messages))}
	for i, m := range out.Messages {
		ev.Records[i] = p.record(m)
	}
	resp, err := p.Invoke(ctx, ev)
	if err != nil {
		return len(out.Messages), fmt.Errorf("invoke: %w", err)
	}
	failed := map[string]bool{}
	for _, f := range resp.BatchItemFailures {
		failed[f.ItemIdentifier] = true
	}
	var del []sqstypes.DeleteMessageBatchRequestEntry
	for i, m := range out.Messages {
		if !failed[aws.ToString(m.MessageId)] {
			del = append(del, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
		}
	}
	if len(failed) > len(out.Messages)-len(del) {
		return len(out.Messages), fmt.Errorf("function reported failures for records it was not given: whole batch retried")
	}
	if len(del) > 0 {
		res, err := p.Queue.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(p.QueueURL), Entries: del})
		if err != nil {
			return len(out.Messages), fmt.Errorf("delete: %w", err)
		}
		if len(res.Failed) > 0 {
			return len(out.Messages), fmt.Errorf("delete: %d entries failed", len(res.Failed))
		}
	}
	return len(out.Messages), nil
}

// record converts an SQS message into the event record Lambda would deliver.
func (p *Poller) record(m sqstypes.Message) events.SQSMessage {
	r := events.SQSMessage{
		MessageId:         aws.ToString(m.MessageId),
		ReceiptHandle:     aws.ToString(m.ReceiptHandle),
		Body:              aws.ToString(m.Body),
		Md5OfBody:         aws.ToString(m.MD5OfBody),
		Attributes:        map[string]string{},
		MessageAttributes: map[string]events.SQSMessageAttribute{},
		EventSource:       "aws:sqs",
		EventSourceARN:    p.QueueARN,
		AWSRegion:         p.Region,
	}
	for k, v := range m.Attributes {
		r.Attributes[k] = v
	}
	for k, v := range m.MessageAttributes {
		r.MessageAttributes[k] = events.SQSMessageAttribute{DataType: aws.ToString(v.DataType), StringValue: v.StringValue, BinaryValue: v.BinaryValue}
	}
	return r
}
