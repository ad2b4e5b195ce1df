package main

// S3's rule for event notifications: PutBucketNotificationConfiguration
// checks that S3 may send to every destination, and refuses the whole
// configuration otherwise (S3 user guide, "Granting permissions to publish
// event notification messages to a destination"). For an SQS destination
// that is the queue's policy: it must allow s3.amazonaws.com sqs:SendMessage
// on the queue from this bucket (aws:SourceArn) of this account
// (aws:SourceAccount). So a program must create the queue policy first; one
// that puts both at once fails on AWS, and here. The queue policies are kept
// like ECS's state, from one provider process to the next.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"github.com/inferstack/inferstack/internal/policy"
	"github.com/inferstack/inferstack/tests/fakeaws"
)

// ErrUnvalidatedDestination is S3's answer to a destination it may not send to.
var ErrUnvalidatedDestination = errors.New("InvalidArgument: Unable to validate the following destination configurations")

// sqsState is what SQS knows that S3 asks: each queue's policy (JSON), by queue ARN.
type sqsState struct {
	QueuePolicies map[string]string `json:"queuePolicies"`
}

func newSQSState() *sqsState {
	return &sqsState{QueuePolicies: map[string]string{}}
}

// setPolicy is SetQueueAttributes(Policy); "" removes the policy.
func (s *sqsState) setPolicy(queueARN, doc string) {
	if doc == "" {
		delete(s.QueuePolicies, queueARN)
		return
	}
	s.QueuePolicies[queueARN] = doc
}

// checkDestinations is S3's check of a notification configuration of the
// bucket (its name) sending to queues (ARNs): each queue's policy must let
// S3 send from this bucket, owned by account.
func (s *sqsState) checkDestinations(bucket, account string, queues []string) error {
	source := map[string]string{"aws:SourceArn": "arn:aws:s3:::" + bucket, "aws:SourceAccount": account}
	for _, q := range queues {
		var doc policy.Document
		if p, ok := s.QueuePolicies[q]; ok {
			if err := json.Unmarshal([]byte(p), &doc); err != nil {
				return fmt.Errorf("queue %s: policy: %w", q, err)
			}
		}
		if !doc.AllowsPrincipal("Service", "s3.amazonaws.com", "sqs:SendMessage", q, source) {
			return fmt.Errorf("%w: %s: Permissions on the destination queue do not allow S3 to publish notifications from this bucket",
				ErrUnvalidatedDestination, q)
		}
	}
	return nil
}

// queueARN is the ARN of the queue at an SQS queue URL
// (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME), or "" if it is none.
func queueARN(queueURL string) string {
	u, err := url.Parse(queueURL)
	if err != nil {
		return ""
	}
	region, ok := strings.CutPrefix(u.Hostname(), "sqs.")
	region, _, ok2 := strings.Cut(region, ".")
	account, name, ok3 := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	if !ok || !ok2 || !ok3 || account == "" || name == "" || strings.Contains(name, "/") {
		return ""
	}
	return fmt.Sprintf("arn:aws:sqs:%s:%s:%s", region, account, name)
}

// sqsStore keeps the SQS state from one provider process to the next.
type sqsStore struct {
	*store[sqsState]
}

func newSQSStore(path string) *sqsStore {
	return &sqsStore{newStore(path, "sqs state", func(st *sqsState) {
		if st.QueuePolicies == nil {
			st.QueuePolicies = map[string]string{}
		}
	})}
}

// Resource types the rule reads.
const (
	typeQueuePolicy  = "aws:sqs/queuePolicy:QueuePolicy"
	typeNotification = "aws:s3/bucketNotification:BucketNotification"
)

// policyDelay is how long SetQueueAttributes takes before the policy holds.
// A notification put without waiting for its queue's policy then reliably
// runs its check inside that window and fails, as it can on AWS, rather than
// by the luck of scheduling (see associationDelay).
const policyDelay = 300 * time.Millisecond

// create applies the creation of resource typ named name; errors read as
// the AWS provider's would.
func (s *sqsStore) create(typ, name string, inputs resource.PropertyMap) error {
	return s.change(typ, name, nil, inputs)
}

// change applies a creation (olds nil) or an update from olds to news.
func (s *sqsStore) change(typ, name string, olds, news resource.PropertyMap) error {
	switch typ {
	case typeQueuePolicy:
		time.Sleep(policyDelay)
		oldQueue, queue := queueARN(str(olds["queueUrl"])), queueARN(str(news["queueUrl"]))
		return s.update(func(st *sqsState) error {
			if oldQueue != "" && oldQueue != queue { // moved: the old queue loses its policy
				st.setPolicy(oldQueue, "")
			}
			st.setPolicy(queue, str(news["policy"]))
			return nil
		})
	case typeNotification:
		bucket, queues := notificationOf(news)
		if err := s.read(func(st *sqsState) error { return st.checkDestinations(bucket, fakeaws.Account, queues) }); err != nil {
			return fmt.Errorf("putting S3 Bucket Notification Configuration (%s): operation error S3: PutBucketNotificationConfiguration, %w", bucket, err)
		}
	}
	return nil
}

// remove applies a deletion; olds are the resource's last outputs.
func (s *sqsStore) remove(typ string, olds resource.PropertyMap) error {
	if typ != typeQueuePolicy {
		return nil
	}
	queue := queueARN(str(olds["queueUrl"]))
	return s.update(func(st *sqsState) error { st.setPolicy(queue, ""); return nil })
}

// notificationOf reads an aws:s3/bucketNotification:BucketNotification's
// bucket and queue destinations.
func notificationOf(props resource.PropertyMap) (bucket string, queues []string) {
	for _, e := range elems(props["queues"]) {
		if e.IsSecret() {
			e = e.SecretValue().Element
		}
		if e.IsObject() {
			if q := str(e.ObjectValue()["queueArn"]); q != "" {
				queues = append(queues, q)
			}
		}
	}
	return str(props["bucket"]), queues
}
