// Package jobevents is a job event as the events topic receives it: the
// one publish request the worker and the dispatch function both send, its
// message attributes the ones subscribers filter on.
package jobevents

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"

	"github.com/inferstack/inferstack/internal/job"
)

// PublishInput is ev's publish request to topicARN.
func PublishInput(topicARN string, ev job.Event) *sns.PublishInput {
	attrs := map[string]snstypes.MessageAttributeValue{}
	for name, value := range ev.Attributes() {
		attrs[name] = snstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(value)}
	}
	return &sns.PublishInput{TopicArn: aws.String(topicARN), Message: aws.String(ev.Body()), MessageAttributes: attrs}
}
