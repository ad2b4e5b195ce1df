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

// S3Options are every inferstack binary's S3 client options. A ranged GET
// of a multipart object carries no checksum S3 can give for the range, and
// the SDK would log a plain-text line for each one (aws-sdk-go-v2 issue
// 3032), thousands per large input among JSON logs: that line is off. When
// S3's endpoint is overridden, EmulatorS3Options apply.
func S3Options(o *s3.Options) {
	o.DisableLogOutputChecksumValidationSkipped = true
	if os.Getenv("AWS_ENDPOINT_URL_S3") != "" || os.Getenv("AWS_ENDPOINT_URL") != "" {
		EmulatorS3Options(o)
	}
}

// EmulatorS3Options are the S3 client options for a local emulator (moto, a
// test's fake) or an S3-compatible store: they cannot resolve bucket.host
// names (path style), and many return no checksums to validate (checked
// only where required). Tests and the local stack use them for their own
// clients, so that they talk to moto as the binaries do.
func EmulatorS3Options(o *s3.Options) {
	o.UsePathStyle = true
	o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
}
