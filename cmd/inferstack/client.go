package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/inferstack/inferstack/inference/manifest"
	"github.com/inferstack/inferstack/internal/awsenv"
	"github.com/inferstack/inferstack/internal/client"
	"github.com/inferstack/inferstack/internal/job"
)

// clientFlags are the stack a client command talks to: flags, else the
// environment (`pulumi stack output` prints the values to set).
type clientFlags struct {
	fs     *flag.FlagSet
	target client.Target
	args   []string // positional arguments, wherever they stood among the flags

	// partSize and concurrency are set by the commands that transfer files
	// (transferFlags); nil elsewhere.
	partSize, concurrency *string
	transfer              client.Transfer
}

func newClientFlags(m *Main, name, usage string) *clientFlags {
	c := &clientFlags{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	c.fs.SetOutput(m.Stderr)
	c.fs.StringVar(&c.target.Bucket, "bucket", os.Getenv("INFERSTACK_BUCKET"), "the stack's bucket (pulumi stack output bucket; $INFERSTACK_BUCKET)")
	c.fs.StringVar(&c.target.IntakeQueueURL, "intake-queue-url", os.Getenv("INFERSTACK_INTAKE_QUEUE_URL"), "the intake queue (pulumi stack output intakeQueueUrl; $INFERSTACK_INTAKE_QUEUE_URL)")
	c.fs.StringVar(&c.target.TierParameter, "tier-parameter", os.Getenv("INFERSTACK_TIER_PARAMETER"), "the tier parameter (pulumi stack output tierParameter; $INFERSTACK_TIER_PARAMETER)")
	c.fs.Usage = func() {
		fmt.Fprint(c.fs.Output(), usage+"\nFlags:\n")
		c.fs.PrintDefaults()
	}
	return c
}

// parse accepts flags before and after the positional arguments
// (`submit FILE --wait` as well as `submit --wait FILE`), of which there must
// be minArgs to maxArgs; what names them is for the error message.
func (c *clientFlags) parse(args []string, minArgs, maxArgs int, what string, need ...string) error {
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return errHelp
			}
			return &usageError{msg: err.Error()}
		}
		if c.fs.NArg() == 0 {
			break
		}
		c.args = append(c.args, c.fs.Arg(0))
		args = c.fs.Args()[1:]
	}
	if len(c.args) < minArgs || len(c.args) > maxArgs {
		return &usageError{msg: fmt.Sprintf("%s takes %s, got %d argument(s) (see inferstack help %s)", c.fs.Name(), what, len(c.args), c.fs.Name())}
	}
	for _, flagName := range need {
		if c.fs.Lookup(flagName).Value.String() == "" {
			return &usageError{msg: fmt.Sprintf("%s needs --%s (or its environment variable)", c.fs.Name(), flagName)}
		}
	}
	return nil
}

func (c *clientFlags) arg(i int) string { return c.args[i] }

// transferFlags adds --part-size and --concurrency (for submit and results).
func (c *clientFlags) transferFlags() {
	c.partSize = c.fs.String("part-size", os.Getenv("INFERSTACK_PART_SIZE"),
		"bytes per uploaded part or downloaded range, a `SIZE` such as 16MiB: 5MiB to 5GiB, grown for inputs over 10,000 parts (default 8MiB; $INFERSTACK_PART_SIZE)")
	c.concurrency = c.fs.String("concurrency", os.Getenv("INFERSTACK_CONCURRENCY"),
		fmt.Sprintf("`N` parts or ranges in flight per file, 1 to %d (default %d, fewer for uploads whose parts are huge; $INFERSTACK_CONCURRENCY)",
			client.MaxConcurrency, client.DefaultConcurrency))
}

// parseTransfer reads the transfer flags after parse.
func (c *clientFlags) parseTransfer() error {
	if *c.partSize != "" {
		n, err := client.ParseSize(*c.partSize)
		if err != nil {
			return &usageError{msg: "--part-size: " + err.Error()}
		}
		c.transfer.PartSize = n
	}
	if *c.concurrency != "" {
		n, err := strconv.Atoi(*c.concurrency)
		if err != nil || n < 1 {
			return &usageError{msg: fmt.Sprintf("--concurrency %q: want 1 to %d", *c.concurrency, client.MaxConcurrency)}
		}
		c.transfer.Concurrency = n
	}
	if err := c.transfer.Validate(); err != nil {
		return &usageError{msg: err.Error()}
	}
	return nil
}

func (c *clientFlags) client(ctx context.Context) (*client.Client, error) {
	cfg, err := awsenv.Load(ctx)
	if err != nil {
		return nil, err
	}
	return &client.Client{Target: c.target, S3: s3.NewFromConfig(cfg, awsenv.S3Options), SQS: sqs.NewFromConfig(cfg), SSM: ssm.NewFromConfig(cfg),
		Transfer: c.transfer}, nil
}

func (m *Main) submit(ctx context.Context, args []string) error {
	c := newClientFlags(m, "submit", "Usage: inferstack submit FILE [--tier cpu|gpu|auto] [--feed INPUT=COLS] [--keep COLS] [--output-prefix P] [--shards N] [--wait] [--part-size SIZE] [--concurrency N]\n\n"+
		"Uploads FILE to the stack's inputs/ (in parts, several at once, with progress on stderr) and sends the intake message;\nprints the job id.\n")
	c.transferFlags()
	tier := c.fs.String("tier", "", "run on this tier (where the stack allows per-message tiers)")
	key := c.fs.String("key", "", "key under inputs/ (default: the file's name)")
	outputPrefix := c.fs.String("output-prefix", "", "write the results under results/P/ (default: results/JOB_ID/)")
	window := c.fs.Int64("window", 0, "cut a signal into windows of this many steps (with --hop)")
	hop := c.fs.Int64("hop", 0, "steps between windows")
	wait := c.fs.Bool("wait", false, "follow the job's progress until its results or error record appear")
	shards := c.fs.String("shards", "", fmt.Sprintf("split the job into `N` shards, 1 to %d, run by as many workers as the tier scales to (1: never split; default: the stack's inferstack:shardBytes decides)", job.MaxShards))
	feed := feedFlag{}
	c.fs.Var(feed, "feed", "INPUT=COLUMN or INPUT=COL1,COL2,...: the table columns a model input reads (repeatable; default: the column of the input's name)")
	keep := c.fs.String("keep", "", "table columns copied to predictions.parquet beside the predictions, e.g. id,ts")
	inputFormat := c.fs.String("input-format", "", "parquet, csv or jsonl, where the file name does not say")
	outputFormat := c.fs.String("output-format", "", "parquet (default for a table) or npy (one .npy per output, in row order)")
	if err := c.parse(args, 1, 1, "a file", "bucket", "intake-queue-url"); err != nil {
		return err
	}
	var keepColumns []string
	if *keep != "" {
		var err error
		if keepColumns, err = job.ParseColumns(*keep); err != nil {
			return &usageError{msg: "--keep: " + err.Error()}
		}
	}
	nShards, err := parseShards(*shards)
	if err != nil {
		return err
	}
	if err := c.parseTransfer(); err != nil {
		return err
	}
	cl, err := c.client(ctx)
	if err != nil {
		return err
	}
	bars := newByteBars(m.Stderr, false, "upload")
	cl.Transfer.Progress = bars.Update
	req, err := cl.Submit(ctx, c.arg(0), *key, job.Request{Tier: job.Tier(*tier), Window: *window, Hop: *hop, OutputPrefix: *outputPrefix,
		InputFormat: *inputFormat, OutputFormat: *outputFormat, Keep: keepColumns, Feed: map[string][]string(feed), Shards: nShards})
	bars.Done()
	if err != nil {
		return err
	}
	id := req.JobID
	fmt.Fprintf(m.Stdout, "submitted %s as job %s\n", filepath.Base(c.arg(0)), id)
	if !*wait {
		return nil
	}
	p := newProgress(m.Stderr, false)
	manifest, err := cl.Wait(ctx, id, 500*time.Millisecond, func(_ job.Status, jp client.Progress) { p.UpdateJob(jp) })
	p.Done()
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "done: %d samples on %s; results in s3://%s/%s (inferstack results %s --output DIR)\n",
		manifest.Samples, manifest.Device.Used, cl.Bucket, req.ResultsPrefix(), id)
	return nil
}

// parseShards reads --shards: empty (the stack decides by size), or 1 to
// job.MaxShards.
func parseShards(v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > job.MaxShards {
		return 0, &usageError{msg: fmt.Sprintf("--shards %q: want 1 to %d", v, job.MaxShards)}
	}
	return n, nil
}

func (m *Main) status(ctx context.Context, args []string) error {
	c := newClientFlags(m, "status", "Usage: inferstack status JOB_ID\n\nPrints the job's state and progress.\n")
	if err := c.parse(args, 1, 1, "a job id", "bucket"); err != nil {
		return err
	}
	cl, err := c.client(ctx)
	if err != nil {
		return err
	}
	s, ok, err := cl.Status(ctx, c.arg(0))
	if err != nil {
		return err
	}
	if !ok {
		fmt.Fprintf(m.Stdout, "%s: queued (no worker has started it yet)\n", c.arg(0))
		return nil
	}
	p, err := cl.Progress(ctx, s)
	if err != nil {
		return err
	}
	fmt.Fprintln(m.Stdout, jobStatusLine(cl.Bucket, s, p))
	return nil
}

// jobStatusLine is what `inferstack status` prints of a job: its state,
// where it runs, how far it is (for a split job, its shards done and its
// samples overall), and where its results are or why it failed.
func jobStatusLine(bucket string, s job.Status, p client.Progress) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s on %s (%s), %s, updated %s", s.JobID, s.State, s.Tier, s.Worker, progressText(p), s.UpdatedAt.Format(time.RFC3339))
	if s.State == job.StateDone && s.Results != "" {
		fmt.Fprintf(&b, "; results in s3://%s/%s", bucket, s.Results)
	}
	if s.Reason != "" {
		fmt.Fprintf(&b, ": %s", s.Reason)
	}
	return b.String()
}

// progressText says how far a job is: "10/100 samples", or for a split job
// "shards 3/8 done, 1,234,567 of 2,000,000 samples" (a total still unknown
// left out).
func progressText(p client.Progress) string {
	if p.Shards == 0 {
		return fmt.Sprintf("%d/%d samples", p.SamplesDone, p.SamplesTotal)
	}
	if p.SamplesTotal <= 0 {
		return fmt.Sprintf("shards %d/%d done, %s samples", p.ShardsDone, p.Shards, thousands(p.SamplesDone))
	}
	return fmt.Sprintf("shards %d/%d done, %s of %s samples", p.ShardsDone, p.Shards, thousands(p.SamplesDone), thousands(p.SamplesTotal))
}

// thousands writes n with commas between groups of three digits.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	sign := ""
	if n < 0 {
		sign, s = "-", s[1:]
	}
	var b strings.Builder
	for i, d := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	return sign + b.String()
}

func (m *Main) results(ctx context.Context, args []string) error {
	c := newClientFlags(m, "results", "Usage: inferstack results JOB_ID --output DIR [--part-size SIZE] [--concurrency N]\n\n"+
		"Downloads the job's outputs and manifest (in ranges, several at once, with progress on stderr;\neach file appears under its name only when complete).\n")
	out := c.fs.String("output", "", "directory to download into (required)")
	c.transferFlags()
	if err := c.parse(args, 1, 1, "a job id", "bucket", "output"); err != nil {
		return err
	}
	if err := c.parseTransfer(); err != nil {
		return err
	}
	cl, err := c.client(ctx)
	if err != nil {
		return err
	}
	bars := newByteBars(m.Stderr, false, "download")
	cl.Transfer.Progress = bars.Update
	manifest, err := cl.Results(ctx, c.arg(0), *out)
	bars.Done()
	if err != nil {
		return err
	}
	for _, line := range resultLines(*out, *manifest) {
		fmt.Fprintln(m.Stdout, line)
	}
	return nil
}

// resultLines are what `inferstack results` prints of the files it
// downloaded into dir: each .npy output with its type and shape, each
// column of a predictions.parquet, or, for a dataset of part files (a split
// table job's predictions/), each part, then each column of the dataset.
func resultLines(dir string, m manifest.Manifest) []string {
	var lines []string
	for _, part := range m.Parts {
		lines = append(lines, filepath.Join(dir, filepath.FromSlash(part)))
	}
	for _, o := range m.Outputs {
		path := filepath.Join(dir, filepath.FromSlash(o.File))
		switch {
		case strings.HasSuffix(o.File, "/"):
			lines = append(lines, fmt.Sprintf("%s%c  column %s: %s %v", path, filepath.Separator, o.Name, o.DType, o.Shape))
		case filepath.Ext(o.File) == ".parquet":
			lines = append(lines, fmt.Sprintf("%s  column %s: %s %v", path, o.Name, o.DType, o.Shape))
		default:
			lines = append(lines, fmt.Sprintf("%s  %s %v", path, o.DType, o.Shape))
		}
	}
	return lines
}

func (m *Main) tier(ctx context.Context, args []string) error {
	c := newClientFlags(m, "tier", "Usage: inferstack tier [cpu|gpu|auto]\n\nShows the active tier, or sets it (on the local stack; on AWS run\n`pulumi config set inferstack:tier TIER` and `pulumi up`, which own the parameter).\n")
	if err := c.parse(args, 0, 1, "at most one tier: cpu, gpu or auto", "tier-parameter"); err != nil {
		return err
	}
	cl, err := c.client(ctx)
	if err != nil {
		return err
	}
	if len(c.args) == 0 {
		t, err := cl.Tier(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintln(m.Stdout, t)
		return nil
	}
	t, err := job.ParseTier(c.arg(0))
	if err != nil {
		return &usageError{msg: err.Error()}
	}
	if err := cl.SetTier(ctx, t); err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "tier set to %s\n", t)
	return nil
}
