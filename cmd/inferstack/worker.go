package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/awsenv"
	"github.com/inferstack/inferstack/worker"
)

const workerUsage = `Usage: inferstack worker [--ort-lib PATH]

Serves a tier's queue: long-polls it, runs each job through the engine from
S3, checkpoints every chunk, writes results and the manifest, publishes the
job's finished event (failed, for a job that cannot succeed) to the events
topic, then deletes the message. SIGTERM stops polling; a running job gets
INFERSTACK_STOP_TIMEOUT to finish before it is handed back at a chunk
boundary; then it exits 0. A job may run longer than SQS's 12-hour
visibility ceiling: before it, the job stops at a chunk boundary and its
message is replaced by a fresh copy, which a worker resumes from the
checkpoint.

Configured by the environment the task definition sets, all required
(internal/runenv): AWS_REGION, INFERSTACK_TIER, INFERSTACK_DEVICE
(auto|cpu|gpu), INFERSTACK_QUEUE_URL, INFERSTACK_DEAD_LETTER_QUEUE_URL,
INFERSTACK_BUCKET, INFERSTACK_MODEL_KEY, INFERSTACK_VISIBILITY_TIMEOUT and
INFERSTACK_MAX_RECEIVES (the queue's), INFERSTACK_STOP_TIMEOUT (ECS's less
5 s), INFERSTACK_EVENTS_TOPIC_ARN. Tuning, optional: INFERSTACK_BATCH_SIZE,
INFERSTACK_CHUNK_SAMPLES, INFERSTACK_THREADS, INFERSTACK_READ_PART_BYTES
(default 8 MiB) and INFERSTACK_READ_CONCURRENCY (default 8),
INFERSTACK_STATUS_EVERY, INFERSTACK_POLL_WAIT; AWS_* as the AWS SDK reads
them.

Flags:
`

// runWorker is `inferstack worker`.
func (m *Main) runWorker(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	ortLib := fs.String("ort-lib", "", "path to libonnxruntime.so (default: $"+inference.LibEnv+", else the one make setup installs)")
	fs.Usage = func() {
		_, _ = fs.Output().Write([]byte(workerUsage))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return &usageError{msg: err.Error()}
	}
	cfg, err := worker.ParseConfig(os.Getenv)
	if err != nil {
		return &usageError{msg: err.Error()}
	}
	if _, err := inference.InitRuntime(*ortLib); err != nil {
		return err
	}
	aws, err := awsenv.Load(ctx)
	if err != nil {
		return err
	}
	// JSON lines: CloudWatch Logs keeps their fields; metrics go to stdout as EMF.
	log := slog.New(slog.NewJSONHandler(m.Stderr, nil))
	w := worker.New(cfg, sqs.NewFromConfig(aws), s3.NewFromConfig(aws, awsenv.S3Options), sns.NewFromConfig(aws), log, m.Stdout)
	return w.Run(ctx)
}
