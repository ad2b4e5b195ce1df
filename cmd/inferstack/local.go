package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/inferstack/inferstack/deploy/settings"
	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/localstack"
)

const localUsage = `Usage: inferstack local up [--stack dev] [--model FILE]... [--bootstrap bin/bootstrap-local] [--idle 30s]

Runs the whole stack on this machine, on loopback: moto for AWS with the
queues, bucket and tier parameter that Pulumi.<stack>.yaml describes, the
dispatch function under the Lambda emulator fed from the intake queue, and a
scaler that starts and stops worker processes from the same scaling policy
as on AWS. An operator (on AWS: the deployer, with their own rights)
uploads the stack's model and each --model FILE under models/<base name>,
for jobs that name it ({"filename": ..., "model": "my.onnx"}). Prints the
operator's exports, then the client's, which point inferstack submit/
status/results/tier (and the AWS CLI) at it, then a live line (on a
terminal redrawn in place; elsewhere a line each time it changes). Ctrl-C,
or closing the
terminal, stops everything; if inferstack itself is killed, the emulators
and workers die with it. make local-stack builds what it needs and runs it.

Flags:
`

// localHints are the commands that send the stack a job and watch its
// events. The AWS CLI ones name the endpoint: version 1 (pip's aws) ignores
// AWS_ENDPOINT_URL and would go to AWS itself.
func localHints(endpoint, bucket, intake, watch string, uploadTriggers bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  inferstack submit FILE --wait\nor, as a client with only the AWS CLI (v1 or v2) would:\n")
	if uploadTriggers {
		fmt.Fprintf(&b, "  aws --endpoint-url %[1]s s3 cp FILE s3://%[2]s/%[3]sFILE\n"+
			"(the upload alone starts a job with the stack's defaults; for a job with options, upload under %[4]s, which starts nothing, and send a message:)\n",
			endpoint, bucket, job.InputPrefix, job.SubmitPrefix)
	}
	submitDir := strings.TrimPrefix(job.SubmitPrefix, job.InputPrefix)
	fmt.Fprintf(&b, "  aws --endpoint-url %[1]s s3 cp FILE s3://%[2]s/%[3]sFILE\n"+
		"  aws --endpoint-url %[1]s sqs send-message --queue-url %[4]s --message-body '{\"filename\": \"%[5]sFILE\"}'\n"+
		"watch the job events (finished, failed, refused) go by:\n"+
		"  aws --endpoint-url %[1]s sqs receive-message --queue-url %[6]s --message-attribute-names All --max-number-of-messages 10 --wait-time-seconds 10\n",
		endpoint, bucket, job.SubmitPrefix, intake, submitDir, watch)
	return b.String()
}

// operatorNote says which models the operator uploaded, how a job names
// one, and what the operator's exports are: the deployer's rights, which a
// client must never be given.
func operatorNote(endpoint, bucket string, models []localstack.Model, exports string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Models, uploaded by the operator (a job without \"model\" runs %s; name one as {\"filename\": \"%sFILE\", \"model\": \"%s\"}):\n",
		models[0].Name(), strings.TrimPrefix(job.SubmitPrefix, job.InputPrefix), models[len(models)-1].Name())
	for _, m := range models {
		fmt.Fprintf(&b, "  s3://%s/%s  from %s\n", bucket, m.Key, m.File)
	}
	fmt.Fprintf(&b, "\nAs the operator, to upload more models (the deployer's rights on AWS; never give these to a client):\n%s"+
		"  aws --endpoint-url %s s3 cp MODEL.onnx s3://%s/%sMODEL.onnx\n", exports, endpoint, bucket, job.ModelsPrefix)
	return b.String()
}

// modelFlags collects --model, which may be given more than once.
type modelFlags []string

func (f *modelFlags) String() string { return strings.Join(*f, ",") }

func (f *modelFlags) Set(v string) error {
	if v == "" {
		return errors.New("an empty model file name")
	}
	*f = append(*f, v)
	return nil
}

// statusLine is the live line: each tier's backlog and workers, then the
// jobs done and failed.
func statusLine(tiers []string, latest map[string]localstack.Sample, done, failed int) string {
	var b strings.Builder
	for _, t := range tiers {
		fmt.Fprintf(&b, "%s: backlog %d, workers %d | ", t, latest[t].Backlog, latest[t].Workers)
	}
	fmt.Fprintf(&b, "done %d, errors %d", done, failed)
	return b.String()
}

// isHelp says whether arg asks for help, as the flag package reads -h and
// -help, or as the help command.
func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "--h", "-help", "--help":
		return true
	}
	return false
}

// runLocal is `inferstack local up`. Help that was asked for (local --help,
// local help, local up -h) goes to stdout and exits 0; a wrong command line
// gets the same usage on stderr and exits 2.
func (m *Main) runLocal(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("local up", flag.ContinueOnError)
	fs.SetOutput(m.Stderr) // the flag package's own error lines
	fs.Usage = func() {}   // printed below, to the stream that fits
	stack := fs.String("stack", "dev", "the stack whose settings to use (Pulumi.<stack>.yaml)")
	bootstrap := fs.String("bootstrap", "bin/bootstrap-local", "the dispatch function built for this machine")
	idle := fs.Duration("idle", 30*time.Second, "idle time before a tier returns to zero workers (on AWS: the tier's idle minutes)")
	ortLib := fs.String("ort-lib", inference.DefaultLibPath(), "libonnxruntime.so for the workers")
	var models modelFlags
	fs.Var(&models, "model", "an ONNX model `FILE` the operator uploads as models/<base name>, for jobs that name it (repeatable)")
	printUsage := func(w io.Writer) {
		fmt.Fprint(w, localUsage)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(m.Stderr)
	}
	switch {
	case len(args) > 0 && isHelp(args[0]):
		printUsage(m.Stdout)
		return errHelp
	case len(args) == 0 || args[0] != "up":
		printUsage(m.Stderr)
		return &usageError{msg: "local takes one command: up"}
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(m.Stdout)
			return errHelp
		}
		printUsage(m.Stderr)
		return &usageError{msg: err.Error()}
	}
	values, err := settings.ParseStackFile("Pulumi." + *stack + ".yaml")
	if err != nil {
		return &usageError{msg: fmt.Sprintf("stack settings: %v (run from the repository root)", err)}
	}
	cfg, err := settings.Parse(*stack, values)
	if err != nil {
		return &usageError{msg: err.Error()}
	}
	if _, err := localstack.PlanModels(cfg.ModelPath, models); err != nil {
		return &usageError{msg: err.Error()}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logFile, err := os.CreateTemp("", "inferstack-local-*.log")
	if err != nil {
		return err
	}
	defer logFile.Close() //nolint:errcheck // a log
	s, err := localstack.Up(ctx, localstack.Options{Config: cfg, Binary: self, Bootstrap: *bootstrap, ORTLib: *ortLib, IdleAfter: *idle, Models: models, Logs: logFile})
	if err != nil {
		return err
	}
	defer s.Down()
	fmt.Fprintf(m.Stdout, "local stack %q is up (logs: %s).\n\n%s\nIn another shell, as a client with the least privilege the stack's client policy gives:\n%s\n%s\n",
		*stack, logFile.Name(), operatorNote(s.Endpoint(), s.Bucket, s.Models, s.OperatorExportLines()), s.ExportLines(),
		localHints(s.Endpoint(), s.Bucket, s.Intake, s.EventsWatch, cfg.UploadTriggers))

	var tiers []string
	for _, t := range cfg.Tiers() {
		tiers = append(tiers, t.Name)
	}
	var mu sync.Mutex
	latest := map[string]localstack.Sample{}
	live := newLiveLine(m.Stdout)
	liveCtx, stopLive := context.WithCancel(ctx)
	liveDone := make(chan struct{})
	go func() {
		defer close(liveDone)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-liveCtx.Done():
				return
			case <-tick.C:
			}
			done, failed, err := s.Counts(liveCtx)
			if err != nil {
				continue // shown at the next tick that can count; a line of zeros would be wrong
			}
			mu.Lock()
			line := statusLine(tiers, latest, done, failed)
			mu.Unlock()
			live.Show(line)
		}
	}()
	err = s.Run(ctx, func(x localstack.Sample) { mu.Lock(); latest[x.Tier] = x; mu.Unlock() })
	stopLive()
	<-liveDone
	live.End()
	fmt.Fprintln(m.Stdout, "local stack stopped")
	return err
}
