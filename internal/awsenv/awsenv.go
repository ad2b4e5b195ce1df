// Package awsenv loads the AWS SDK configuration the same way for every
// inferstack binary, in the cloud and against local emulators.
package awsenv

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Load reads the standard AWS environment: credentials, region, and the
// AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_<SERVICE> overrides that point the SDK
// at a local emulator, so production code needs no endpoint options.
func Load(ctx context.Context) (aws.Config, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load aws config: %w", err)
	}
	return cfg, nil
}

// S3Options adapts the client when S3's endpoint is overridden: emulators
// and S3-compatible stores cannot resolve bucket.host names (path style),
// and many return no checksums to validate (checked only where required).
func S3Options(o *s3.Options) {
	if os.Getenv("AWS_ENDPOINT_URL_S3") != "" || os.Getenv("AWS_ENDPOINT_URL") != "" {
		o.UsePathStyle = true
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}
}
