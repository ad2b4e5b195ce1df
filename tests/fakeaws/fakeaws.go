// Package fakeaws computes what AWS would return for a resource (ids, ARNs,
// URLs, names) so that the program's mocks and the mock provider plugin
// answer alike and realistically.
package fakeaws

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// ECSStateEnv names the JSON file in which the mock provider keeps what ECS
// knows (clusters' capacity providers, live services) from one provider
// process to the next; the test harness sets it, the provider reads it.
const ECSStateEnv = "INFERSTACK_MOCK_ECS_STATE"

// SQSStateEnv names the JSON file in which the mock provider keeps the
// queues' policies, which S3 checks when a bucket notification is put.
const SQSStateEnv = "INFERSTACK_MOCK_SQS_STATE"

// Account and Region of every fake resource.
const (
	Account = "123456789012"
	Region  = "us-east-1"
)

// Outputs returns the id and the outputs of a resource of type typ named
// name with the given inputs: the inputs plus the computed properties.
func Outputs(typ, name string, inputs resource.PropertyMap) (string, resource.PropertyMap) {
	outs := inputs.Copy()
	set := func(k string, v any) {
		if cur, ok := outs[resource.PropertyKey(k)]; !ok || cur.IsNull() {
			outs[resource.PropertyKey(k)] = resource.NewPropertyValue(v)
		}
	}
	input := func(k string) string {
		if v, ok := inputs[resource.PropertyKey(k)]; ok && v.IsString() {
			return v.StringValue()
		}
		return ""
	}
	id := name + "-" + shortHash(typ+name)
	service := strings.SplitN(strings.TrimPrefix(typ, "aws:"), "/", 2)[0]
	switch typ {
	case "aws:sqs/queue:Queue":
		set("name", name)
		set("url", fmt.Sprintf("https://sqs.%s.amazonaws.com/%s/%s", Region, Account, name))
		id = fmt.Sprintf("https://sqs.%s.amazonaws.com/%s/%s", Region, Account, name)
	case "aws:s3/bucketV2:BucketV2":
		set("bucket", name)
		set("arn", "arn:aws:s3:::"+name)
		id = name
	case "aws:ecs/cluster:Cluster":
		set("arn", fmt.Sprintf("arn:aws:ecs:%s:%s:cluster/%s", Region, Account, name))
	case "aws:ssm/parameter:Parameter":
		set("arn", fmt.Sprintf("arn:aws:ssm:%s:%s:parameter%s", Region, Account, input("name")))
		id = input("name")
	case "aws:cloudwatch/logGroup:LogGroup":
		set("arn", fmt.Sprintf("arn:aws:logs:%s:%s:log-group:%s", Region, Account, input("name")))
	case "aws:ecr/repository:Repository":
		set("repositoryUrl", fmt.Sprintf("%s.dkr.ecr.%s.amazonaws.com/%s", Account, Region, name))
		set("arn", fmt.Sprintf("arn:aws:ecr:%s:%s:repository/%s", Region, Account, name))
	case "aws:cloudwatch/dashboard:Dashboard":
		set("dashboardArn", fmt.Sprintf("arn:aws:cloudwatch::%s:dashboard/%s", Account, input("dashboardName")))
	case "aws:cloudwatch/eventRule:EventRule":
		set("arn", fmt.Sprintf("arn:aws:events:%s:%s:rule/%s", Region, Account, input("name")))
	case "awsx:ecr:Image":
		set("imageUri", ImageURI(input("repositoryUrl"), name))
	case "awsx:ec2:Vpc":
		set("vpcId", "vpc-"+shortHash(name))
		set("privateSubnetIds", []any{"subnet-a" + shortHash(name), "subnet-b" + shortHash(name)})
		set("publicSubnetIds", []any{"subnet-c" + shortHash(name), "subnet-d" + shortHash(name)})
	}
	set("arn", fmt.Sprintf("arn:aws:%s:%s:%s:%s", service, Region, Account, name))
	set("name", name)
	return id, outs
}

// ImageURI is what awsx's Image returns for an image built and pushed to
// repositoryURL: the repository and the pushed digest.
func ImageURI(repositoryURL, name string) string {
	sum := sha256.Sum256([]byte(name))
	return repositoryURL + "@sha256:" + hex.EncodeToString(sum[:])
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}
