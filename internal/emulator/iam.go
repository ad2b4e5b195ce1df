package emulator

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/inferstack/inferstack/internal/policy"
)

// Account is moto's account id, in the ARNs of everything it holds.
const Account = "123456789012"

// BucketARN is a bucket's ARN, for the policy documents of principals.
func BucketARN(bucket string) string { return "arn:aws:s3:::" + bucket }

// QueueARN is the ARN moto gives the queue name (Account, Region).
func QueueARN(name string) string { return "arn:aws:sqs:" + Region + ":" + Account + ":" + name }

// ParameterARN is the ARN moto gives the SSM parameter name (which starts
// with '/', not repeated in the ARN).
func ParameterARN(name string) string {
	return "arn:aws:ssm:" + Region + ":" + Account + ":parameter/" + strings.TrimPrefix(name, "/")
}

// adminRequests is how many requests moto lets through unchecked
// (INITIAL_NO_AUTH_ACTION_COUNT): exactly the three that create the admin
// (CreateUser, PutUserPolicy, CreateAccessKey). Every later request, the
// test harness's and the local stack's own included, is checked, so none
// runs as a principal by accident of being early.
const adminRequests = 3

// adminPolicy lets the admin (the test harness, the local stack's own
// clients) do anything.
var adminPolicy = policy.Document{Version: "2012-10-17",
	Statement: []policy.Statement{{Sid: "Admin", Effect: "Allow", Action: []string{"*"}, Resource: []string{"*"}}}}

// Credentials are an IAM user's access key.
type Credentials struct {
	AccessKeyID, SecretAccessKey string
}

// Principal is an IAM user of a moto with IAM enforced: what a component's
// role is on AWS.
type Principal struct {
	Name string
	Credentials
	moto *Moto
}

// ErrNoIAM is Principal's answer on a moto that does not enforce IAM, where
// a principal would be allowed everything.
var ErrNoIAM = errors.New("moto does not enforce IAM: start it WithIAM")

// Principal creates the IAM user name whose only permissions are doc made
// for moto (forMoto: the same actions, with resources where moto checks
// them), and an access key for it.
func (m *Moto) Principal(ctx context.Context, name string, doc policy.Document) (Principal, error) {
	if !m.iam {
		return Principal{}, fmt.Errorf("principal %s: %w", name, ErrNoIAM)
	}
	cfg, err := m.Config(ctx)
	if err != nil {
		return Principal{}, err
	}
	c, err := createUser(ctx, cfg, name, forMoto(doc))
	if err != nil {
		return Principal{}, fmt.Errorf("principal %s: %w", name, err)
	}
	return Principal{Name: name, Credentials: c, moto: m}, nil
}

// Env is the environment that points an AWS SDK or CLI at the server as
// this principal, for a child process.
func (p Principal) Env() []string { return p.moto.env(p.Credentials) }

// Config is an SDK config for in-process clients acting as this principal.
func (p Principal) Config(ctx context.Context) (aws.Config, error) {
	return p.moto.config(ctx, p.Credentials)
}

// createAdmin spends the free requests on the admin user.
func (m *Moto) createAdmin(ctx context.Context) (Credentials, error) {
	cfg, err := m.config(ctx, m.admin) // any keys: these requests are not checked
	if err != nil {
		return Credentials{}, err
	}
	c, err := createUser(ctx, cfg, "inferstack-admin", adminPolicy)
	if err != nil {
		return Credentials{}, fmt.Errorf("create admin: %w", err)
	}
	return c, nil
}

// createUser makes three requests: CreateUser, PutUserPolicy (doc inline,
// exactly as given), CreateAccessKey.
func createUser(ctx context.Context, cfg aws.Config, name string, doc policy.Document) (Credentials, error) {
	// No retries: a retried request would count twice among the admin's
	// free ones.
	client := iam.NewFromConfig(cfg, func(o *iam.Options) { o.RetryMaxAttempts = 1 })
	if _, err := client.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(name)}); err != nil {
		return Credentials{}, fmt.Errorf("create user: %w", err)
	}
	if _, err := client.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String(name), PolicyName: aws.String(name),
		PolicyDocument: aws.String(doc.JSON())}); err != nil {
		return Credentials{}, fmt.Errorf("put user policy: %w", err)
	}
	out, err := client.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(name)})
	if err != nil {
		return Credentials{}, fmt.Errorf("create access key: %w", err)
	}
	return Credentials{AccessKeyID: aws.ToString(out.AccessKey.AccessKeyId), SecretAccessKey: aws.ToString(out.AccessKey.SecretAccessKey)}, nil
}
