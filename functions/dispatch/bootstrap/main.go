// Command bootstrap is the dispatch Lambda (runtime provided.al2023): it
// wires the AWS clients from the environment and serves dispatch.Handle.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/inferstack/inferstack/functions/dispatch"
	"github.com/inferstack/inferstack/internal/awsenv"
	"github.com/inferstack/inferstack/internal/runenv"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	cfg, err := runenv.ParseDispatch(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dispatch:", err)
		os.Exit(1)
	}
	aws, err := awsenv.Load(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "dispatch:", err)
		os.Exit(1)
	}
	d := dispatch.New(cfg, sqs.NewFromConfig(aws), ssm.NewFromConfig(aws), s3.NewFromConfig(aws, awsenv.S3Options), sns.NewFromConfig(aws), log, nil)
	lambda.Start(d.Handle)
}
