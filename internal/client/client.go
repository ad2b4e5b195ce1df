// Package client is what `inferstack submit`, `status`, `results` and `tier`
// do against a deployed (or local) stack: upload an input, send the intake
// message, follow the job's status object, fetch its results, and read or
// set the tier parameter.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/inferstack/inferstack/inference/manifest"
	"github.com/inferstack/inferstack/internal/job"
)

// Target names a stack: its bucket, intake queue and tier parameter (the
// Pulumi program exports all three).
type Target struct {
	Bucket, IntakeQueueURL, TierParameter string
}

// Client talks to one stack.
type Client struct {
	Target
	S3  *s3.Client
	SQS *sqs.Client
	SSM *ssm.Client
	// Transfer tunes uploads and downloads (zero: the defaults).
	Transfer Transfer
}

// ErrJobFailed is returned by Wait when the job ended with an error record.
var ErrJobFailed = errors.New("job failed")

// Submit uploads file to inputs/.submit/<key> and sends the intake message;
// it returns the request as the dispatch function and workers will read it
// (its job id, its results prefix). Under job.SubmitPrefix the upload does
// not start a job of its own where the stack has upload triggers: the
// message, with its options, is the job.
func (c *Client) Submit(ctx context.Context, file, key string, req job.Request) (job.Request, error) {
	if key == "" {
		key = filepath.Base(file)
	}
	req.Filename = strings.TrimPrefix(job.SubmitPrefix, job.InputPrefix) + key
	body, err := json.Marshal(req)
	if err != nil {
		return job.Request{}, err
	}
	parsed, err := job.Parse(body) // the same validation and job id as the dispatch function
	if err != nil {
		return job.Request{}, err
	}
	if err := c.Transfer.Validate(); err != nil {
		return job.Request{}, err
	}
	// In parts where it is bigger than one: a single PUT stops at 5 GB.
	if err := c.upload(ctx, file, parsed.InputKey()); err != nil {
		return job.Request{}, err
	}
	if _, err := c.SQS.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(c.IntakeQueueURL), MessageBody: aws.String(string(body))}); err != nil {
		return job.Request{}, fmt.Errorf("send intake message: %w", err)
	}
	return parsed, nil
}

func (c *Client) getJSON(ctx context.Context, key string, v any) (bool, error) {
	out, err := c.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(c.Bucket), Key: aws.String(key)})
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer out.Body.Close() //nolint:errcheck // read-only
	data, err := io.ReadAll(out.Body)
	if err != nil {
		return false, err
	}
	return true, json.Unmarshal(data, v)
}

// Status reads status/<job>.json; ok is false while no worker has started it.
func (c *Client) Status(ctx context.Context, jobID string) (s job.Status, ok bool, err error) {
	ok, err = c.getJSON(ctx, job.StatusKey(jobID), &s)
	return s, ok, err
}

// ResultsPrefix is where the job's results are (or will be): the prefix its
// status object records, which honours the request's output_prefix, or
// results/<job>/ while no worker has started it.
func (c *Client) ResultsPrefix(ctx context.Context, jobID string) (string, error) {
	s, ok, err := c.Status(ctx, jobID)
	if err != nil {
		return "", err
	}
	if ok && s.Results != "" {
		return s.Results, nil
	}
	return job.DefaultResultsPrefix(jobID), nil
}

// Manifest reads the job's manifest; ok is false until the job is done.
func (c *Client) Manifest(ctx context.Context, jobID string) (m manifest.Manifest, ok bool, err error) {
	prefix, err := c.ResultsPrefix(ctx, jobID)
	if err != nil {
		return m, false, err
	}
	ok, err = c.getJSON(ctx, prefix+manifest.File, &m)
	return m, ok, err
}

// Wait polls until the job has a manifest or an error record, calling
// progress with each new status and the job's progress (for a split job,
// counted from its shards' statuses).
func (c *Client) Wait(ctx context.Context, jobID string, every time.Duration, progress func(job.Status, Progress)) (*manifest.Manifest, error) {
	shards := &shardStatuses{}
	for {
		if m, ok, err := c.Manifest(ctx, jobID); err != nil || ok {
			return &m, err
		}
		var record job.ErrorRecord
		if ok, err := c.getJSON(ctx, job.ErrorKey(jobID), &record); err != nil {
			return nil, err
		} else if ok {
			return nil, fmt.Errorf("%w: %s (s3://%s/%s)", ErrJobFailed, record.Reason, c.Bucket, job.ErrorKey(jobID))
		}
		if s, ok, err := c.Status(ctx, jobID); err == nil && ok && progress != nil {
			// Progress is advisory: a failed read of it waits for the next poll.
			if p, err := c.progress(ctx, s, shards); err == nil {
				progress(s, p)
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(every):
		}
	}
}

// Results downloads the job's outputs and manifest into dir, each streamed
// to DIR/NAME.tmp in concurrent ranges and renamed when complete.
func (c *Client) Results(ctx context.Context, jobID, dir string) (*manifest.Manifest, error) {
	prefix, err := c.ResultsPrefix(ctx, jobID)
	if err != nil {
		return nil, err
	}
	m, ok, err := c.Manifest(ctx, jobID)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("job %s has no results (yet): see inferstack status %s", jobID, jobID)
	}
	if err := c.Transfer.Validate(); err != nil {
		return nil, err
	}
	// The manifest last, as the worker writes it: where it is, the outputs
	// beside it are complete.
	for _, name := range append(outputFiles(m), manifest.File) {
		local := filepath.FromSlash(name) // a part's key names its directory: predictions/part-00000.parquet
		if !filepath.IsLocal(local) {
			return nil, fmt.Errorf("download %s: not a file name under %s", name, dir)
		}
		if err := c.download(ctx, prefix+name, filepath.Join(dir, local)); err != nil {
			return nil, fmt.Errorf("download %s: %w", name, err)
		}
	}
	return &m, nil
}

// outputFiles are the files of the job's results: one per output, a
// table job's outputs being columns of one file, or the part files of a
// dataset (a split table job's predictions/), which its outputs name as a
// directory.
func outputFiles(m manifest.Manifest) []string {
	names := slices.Clone(m.Parts)
	for _, o := range m.Outputs {
		if strings.HasSuffix(o.File, "/") {
			continue // a dataset's directory: its parts are listed
		}
		if !slices.Contains(names, o.File) {
			names = append(names, o.File)
		}
	}
	return names
}

// Tier reads the active tier.
func (c *Client) Tier(ctx context.Context) (job.Tier, error) {
	out, err := c.SSM.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(c.TierParameter)})
	if err != nil {
		return "", fmt.Errorf("read %s: %w", c.TierParameter, err)
	}
	return job.ParseTier(aws.ToString(out.Parameter.Value))
}

// SetTier sets the tier parameter directly: the local stack's way. On AWS
// the parameter belongs to Pulumi: `pulumi config set inferstack:tier` and
// `pulumi up`, or the next up puts it back.
func (c *Client) SetTier(ctx context.Context, t job.Tier) error {
	_, err := c.SSM.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(c.TierParameter), Value: aws.String(string(t)),
		Type: ssmtypes.ParameterTypeString, Overwrite: aws.Bool(true)})
	if err != nil {
		return fmt.Errorf("set %s: %w", c.TierParameter, err)
	}
	return nil
}
