package localstack

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/inferstack/inferstack/deploy/settings"
	"github.com/inferstack/inferstack/internal/awsenv"
	"github.com/inferstack/inferstack/internal/emulator"
	"github.com/inferstack/inferstack/internal/eventsource"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/policy"
	"github.com/inferstack/inferstack/internal/runenv"
	"github.com/inferstack/inferstack/internal/scaling"
)

// Options configure a local stack.
type Options struct {
	Config    settings.Config // the same settings `pulumi up` deploys
	Binary    string          // the inferstack binary the workers run
	Bootstrap string          // the dispatch function built for this machine
	ORTLib    string
	// IdleAfter replaces the tiers' IdleMinutes (minutes are long on a laptop); 0 keeps them.
	IdleAfter time.Duration
	// Models are model files the operator uploads beside the stack's own
	// (Config.ModelPath), each under models/<base name>, for jobs that name
	// them.
	Models []string
	Logs   io.Writer // the workers' and the function's output
}

// Stack is a running local stack on loopback.
type Stack struct {
	Env       []string // AWS_* (the client principal's keys) and INFERSTACK_* for clients of this stack
	Bucket    string
	Intake    string
	Queues    map[string]string // queue URL by logical name
	TierParam string
	// EventsTopic is the job events topic; EventsWatch a queue subscribed
	// to it, where a user (or a test) watches the events go by.
	EventsTopic, EventsWatch string
	// OperatorEnv is AWS_* for the operator: the deployer's rights on AWS
	// (policy.ModelOperator), which the client must never have.
	OperatorEnv []string
	// Models are the models the operator uploaded, the stack's own first.
	Models []Model

	moto   *emulator.Moto
	lambda *emulator.Lambda
	sqs    *sqs.Client // the stack's own (admin): set-up, backlogs, counts
	s3     *s3.Client  // the stack's own (admin)
	scaler *Scaler
	opts   Options
	log    *slog.Logger // to Logs: the stack's own lines (where its parts listen, the scaler's)

	watchARN string                        // EventsWatch's ARN
	dispatch emulator.Principal            // the dispatch function's role, also the event source mapping's
	workers  map[string]emulator.Principal // each tier's worker task role, by tier name
	intake   *sqs.Client                   // the event source mapping's, as the dispatch role
}

// Up starts moto with IAM enforced and creates the stack's resources from
// its settings, then one IAM user per component whose policy is the
// document the Pulumi program gives that component's role (internal/policy,
// with moto's ARNs), then the dispatch function under the Lambda emulator.
// The function, the workers and the clients the exports point at each run
// as their own user, so a permission the program leaves out fails here as
// on AWS. Run serves it.
func Up(ctx context.Context, opts Options) (*Stack, error) {
	if opts.Logs == nil {
		opts.Logs = io.Discard
	}
	log := slog.New(slog.NewTextHandler(opts.Logs, nil))
	moto, err := emulator.StartMoto(ctx, emulator.WithIAM())
	if err != nil {
		return nil, err
	}
	log.Info("moto started", "url", moto.URL)
	s := &Stack{moto: moto, opts: opts, log: log, Queues: map[string]string{}, Bucket: "inferstack-" + opts.Config.Environment,
		TierParam: opts.Config.TierParameterName(), workers: map[string]emulator.Principal{}}
	if err := s.create(ctx); err != nil {
		s.Down()
		return nil, err
	}
	return s, nil
}

func (s *Stack) create(ctx context.Context) error {
	cfg := s.opts.Config
	awsCfg, err := s.moto.Config(ctx)
	if err != nil {
		return err
	}
	s.sqs = sqs.NewFromConfig(awsCfg)
	s.s3 = s3.NewFromConfig(awsCfg, awsenv.EmulatorS3Options)
	ssmClient := ssm.NewFromConfig(awsCfg)
	topics := sns.NewFromConfig(awsCfg)
	made, err := Create(ctx, s.s3, s.sqs, topics, Spec{Bucket: s.Bucket, Queues: cfg.Queues(), Topic: "inferstack-" + cfg.Environment + "-events"})
	if err != nil {
		return err
	}
	s.Queues, s.EventsTopic, s.Intake = made.Queues, made.EventsTopic, made.Queues[job.IntakeQueue]
	arns := made.ARNs
	if err := s.events(ctx, topics); err != nil {
		return err
	}
	if cfg.UploadTriggers {
		if err := s.uploadTriggers(ctx, arns[job.IntakeQueue]); err != nil {
			return err
		}
	}
	if _, err := ssmClient.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(s.TierParam), Value: aws.String(string(cfg.Tier)),
		Type: ssmtypes.ParameterTypeString, Overwrite: aws.Bool(true)}); err != nil {
		return fmt.Errorf("create tier parameter: %w", err)
	}
	if s.Models, err = PlanModels(cfg.ModelPath, s.opts.Models); err != nil {
		return err
	}
	client, err := s.principals(ctx, arns)
	if err != nil {
		return err
	}
	s.Env = append(client.Env(), "INFERSTACK_BUCKET="+s.Bucket, "INFERSTACK_INTAKE_QUEUE_URL="+s.Intake, "INFERSTACK_TIER_PARAMETER="+s.TierParam)
	if err := s.uploadModels(ctx); err != nil {
		return err
	}

	fn := runenv.Dispatch{
		Bucket: s.Bucket, InputPrefix: job.InputPrefix, TierParameter: s.TierParam, TierCacheTTL: cfg.TierCacheTTL,
		CPUQueueURL: s.Queues[job.TierQueue(job.TierCPU)], GPUQueueURL: s.Queues[job.TierQueue(job.TierGPU)],
		DeadLetterURL: s.Queues[job.IntakeDeadLetterQueue], AutoGPUMin: cfg.AutoGPUMinBytes, AllowOverride: cfg.AllowTierOverride,
		EventsTopicARN: s.EventsTopic, Keep: cfg.Keep,
	}
	env := append(s.dispatch.Env(), runenv.List(fn.Env())...)
	if s.lambda, err = emulator.StartLambda(ctx, s.opts.Bootstrap, env); err != nil {
		return err
	}
	s.log.Info("lambda emulator started", "url", s.lambda.URL)
	return nil
}

// events subscribes a queue to the job events topic (which Create made,
// as the Core does; moto does not encrypt it) to watch the events on. The
// subscription keeps SNS's envelope, whose MessageAttributes carry the
// state and tier that filter policies match.
func (s *Stack) events(ctx context.Context, topics *sns.Client) error {
	watch, err := s.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("inferstack-events-watch")})
	if err != nil {
		return fmt.Errorf("create events watch queue: %w", err)
	}
	s.EventsWatch = aws.ToString(watch.QueueUrl)
	if s.watchARN, err = queueARN(ctx, s.sqs, watch.QueueUrl); err != nil {
		return fmt.Errorf("events watch queue: %w", err)
	}
	if _, err := topics.Subscribe(ctx, &sns.SubscribeInput{TopicArn: aws.String(s.EventsTopic), Protocol: aws.String("sqs"),
		Endpoint: aws.String(s.watchARN)}); err != nil {
		return fmt.Errorf("subscribe the watch queue to the events topic: %w", err)
	}
	return nil
}

// uploadTriggers sends the bucket's ObjectCreated events under inputs/ to
// the intake queue, with the queue policy the program gives it (moto does
// not check it; the Pulumi mock provider checks that the program creates it
// first, as S3 does).
func (s *Stack) uploadTriggers(ctx context.Context, intakeARN string) error {
	if _, err := s.sqs.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(s.Intake), Attributes: map[string]string{
		"Policy": policy.IntakeFromBucket(intakeARN, emulator.BucketARN(s.Bucket), emulator.Account).JSON(),
	}}); err != nil {
		return fmt.Errorf("intake queue policy: %w", err)
	}
	_, err := s.s3.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{
		Bucket: aws.String(s.Bucket),
		NotificationConfiguration: &s3types.NotificationConfiguration{QueueConfigurations: []s3types.QueueConfiguration{{
			QueueArn: aws.String(intakeARN), Events: []s3types.Event{"s3:ObjectCreated:*"},
			Filter: &s3types.NotificationConfigurationFilter{Key: &s3types.S3KeyFilter{FilterRules: []s3types.FilterRule{
				{Name: s3types.FilterRuleNamePrefix, Value: aws.String(job.InputPrefix)},
			}}},
		}}},
	})
	if err != nil {
		return fmt.Errorf("upload triggers: %w", err)
	}
	return nil
}

// principals creates the dispatch function's and each tier's worker's
// users from the documents the Pulumi program attaches to their roles, and
// returns the client user (policy.Client), for the exports. arns are the
// queues' ARNs by logical name.
func (s *Stack) principals(ctx context.Context, arns map[string]string) (emulator.Principal, error) {
	cfg, bucket, param := s.opts.Config, emulator.BucketARN(s.Bucket), emulator.ParameterARN(s.TierParam)
	var tierQueues []string
	for _, t := range cfg.Tiers() {
		tierQueues = append(tierQueues, arns[job.TierQueue(job.Tier(t.Name))])
		doc := policy.WorkerTask(policy.WorkerArgs{QueueARN: arns[job.TierQueue(job.Tier(t.Name))], DeadLetterARN: arns[job.TierDeadLetterQueue(job.Tier(t.Name))],
			BucketARN: bucket, ClusterARN: "arn:aws:ecs:" + emulator.Region + ":" + emulator.Account + ":cluster/inferstack-local-" + t.Name,
			Events: policy.EventsArgs{TopicARN: s.EventsTopic}})
		p, err := s.moto.Principal(ctx, "inferstack-local-"+t.Name+"-worker", doc)
		if err != nil {
			return emulator.Principal{}, err
		}
		s.workers[t.Name] = p
	}
	var err error
	s.dispatch, err = s.moto.Principal(ctx, "inferstack-local-dispatch", policy.Dispatch(policy.DispatchArgs{
		IntakeQueueARN: arns[job.IntakeQueue], DeadLetterARN: arns[job.IntakeDeadLetterQueue], TierQueueARNs: tierQueues,
		TierParameterARN: param, BucketARN: bucket, Events: policy.EventsArgs{TopicARN: s.EventsTopic},
		// Not checked by moto (and the function logs to its stdout here); the program's log group.
		LogGroupARN: "arn:aws:logs:" + emulator.Region + ":" + emulator.Account + ":log-group:/inferstack/" + cfg.Environment + "/dispatch",
	}))
	if err != nil {
		return emulator.Principal{}, err
	}
	// On AWS the event source mapping reads and deletes intake messages with
	// the function's role: so does the local poller.
	dispatchCfg, err := s.dispatch.Config(ctx)
	if err != nil {
		return emulator.Principal{}, err
	}
	s.intake = sqs.NewFromConfig(dispatchCfg)
	client := policy.Client(policy.ClientArgs{IntakeQueueARN: arns[job.IntakeQueue], TierParameterARN: param, BucketARN: bucket})
	// The watch queue is the user's own subscriber on AWS, not the stack's:
	// locally the client may read it.
	client.Statement = append(client.Statement, policy.Statement{Sid: "WatchEvents", Effect: "Allow",
		Action: []string{"sqs:ReceiveMessage", "sqs:DeleteMessage"}, Resource: []string{s.watchARN}})
	return s.moto.Principal(ctx, "inferstack-local-client", client)
}

// modelKey is the workers' default model: the stack's own, uploaded first.
func (s *Stack) modelKey() string { return s.Models[0].Key }

// uploadModels uploads the planned models as the operator, a user whose
// policy is what the deployer does on AWS (policy.ModelOperator), so that a
// policy that forgot models/ fails here as it would there.
func (s *Stack) uploadModels(ctx context.Context) error {
	op, err := s.moto.Principal(ctx, "inferstack-local-operator", policy.ModelOperator(emulator.BucketARN(s.Bucket)))
	if err != nil {
		return err
	}
	s.OperatorEnv = op.Env()
	cfg, err := op.Config(ctx)
	if err != nil {
		return err
	}
	objects := s3.NewFromConfig(cfg, awsenv.EmulatorS3Options)
	for i, m := range s.Models {
		f, err := os.Open(m.File)
		if err != nil {
			if i == 0 {
				return fmt.Errorf("model: %w (make demo writes the default one)", err)
			}
			return fmt.Errorf("model: %w", err)
		}
		// A file is a ReadSeeker: the SDK signs its length and hash over plain HTTP.
		_, err = objects.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(m.Key), Body: f})
		_ = f.Close() // read only
		if err != nil {
			return fmt.Errorf("upload model %s as the operator: %w", m.File, err)
		}
		s.log.Info("model uploaded", "file", m.File, "key", m.Key)
	}
	return nil
}

// workerEnv is what the tier's worker processes get, as the task definition
// sets it (with the tier's worker user's keys for its role), plus the local
// library and a short poll (quick stops).
func (s *Stack) workerEnv(t settings.Tier) []string {
	return append(append(s.workers[t.Name].Env(), runenv.List(s.workerRuntime(t).Env())...), "INFERSTACK_ORT_LIB="+s.opts.ORTLib, runenv.EnvPollWait+"=2s")
}

// workerRuntime is what the tier's task definition tells its worker on
// AWS (settings.Workers.Runtime: its queue, visibility, threads, shard
// size...), at this stack's resources.
func (s *Stack) workerRuntime(t settings.Tier) runenv.Worker {
	return s.opts.Config.Runtime(t, settings.Location{
		Region: emulator.Region, Bucket: s.Bucket, ModelKey: s.modelKey(),
		QueueURL: s.Queues[job.TierQueue(job.Tier(t.Name))], DeadLetterURL: s.Queues[job.TierDeadLetterQueue(job.Tier(t.Name))],
		EventsTopicARN: s.EventsTopic,
	})
}

// Run feeds the dispatch function from the intake queue (as the event source
// mapping does) and scales each tier's workers, until ctx ends. onSample
// sees every scaler observation.
func (s *Stack) Run(ctx context.Context, onSample func(Sample)) error {
	poller := &eventsource.Poller{Queue: s.intake, QueueURL: s.Intake, Region: emulator.Region, BatchSize: 10, WaitTime: 1,
		Invoke: func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
			var resp events.SQSEventResponse
			err := s.lambda.Invoke(ctx, ev, &resp)
			return resp, err
		}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if _, err := poller.PollOnce(ctx); err != nil && ctx.Err() == nil {
				time.Sleep(time.Second)
			}
		}
	}()
	defer func() { <-done }()
	var tiers []Tier
	for _, t := range s.opts.Config.Tiers() {
		scale, err := scaling.New(t.Scaling())
		if err != nil {
			return err
		}
		idle := time.Duration(t.IdleMinutes) * time.Minute
		if s.opts.IdleAfter > 0 {
			idle = s.opts.IdleAfter
		}
		env := s.workerEnv(t)
		tiers = append(tiers, Tier{Name: t.Name, QueueURL: s.Queues[job.TierQueue(job.Tier(t.Name))], Policy: scale, IdleAfter: idle,
			Start: func() (Process, error) { return StartWorker(s.opts.Binary, env, s.opts.Logs) }})
	}
	// The scaler's log (workers started, stopped, and exited with their
	// status, as ECS records a stopped task's reason) goes with the workers'.
	s.scaler = &Scaler{Queues: s.sqs, Tiers: tiers, Interval: 250 * time.Millisecond, OnSample: onSample, Log: s.log}
	return s.scaler.Run(ctx)
}

// Counts are the jobs the stack has finished and failed.
func (s *Stack) Counts(ctx context.Context) (done, failed int, err error) {
	for prefix, n := range map[string]*int{job.ResultsPrefix: &done, job.ErrorsPrefix: &failed} {
		p := s3.NewListObjectsV2Paginator(s.s3, &s3.ListObjectsV2Input{Bucket: aws.String(s.Bucket), Prefix: aws.String(prefix)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return 0, 0, err
			}
			for _, o := range page.Contents {
				if prefix == job.ErrorsPrefix || strings.HasSuffix(aws.ToString(o.Key), "/manifest.json") {
					*n++
				}
			}
		}
	}
	return done, failed, nil
}

// Clients are the stack's own S3 and SQS clients (admin: they may do anything).
func (s *Stack) Clients() (*s3.Client, *sqs.Client) { return s.s3, s.sqs }

// Endpoint is the stack's AWS endpoint (moto) on loopback.
func (s *Stack) Endpoint() string { return s.moto.URL }

// QueueBacklog is the backlog (visible + in flight) of a queue by its logical name.
func (s *Stack) QueueBacklog(ctx context.Context, name string) (int, error) {
	return Backlog(ctx, s.sqs, s.Queues[name])
}

// Down stops the dispatch function and moto (Run stops the workers).
func (s *Stack) Down() {
	if s.lambda != nil {
		s.lambda.Stop()
	}
	s.moto.Stop()
}

// ExportLines are the shell lines that point clients at the stack.
func (s *Stack) ExportLines() string { return exportLines(s.Env) }

// OperatorExportLines are the shell lines that act as the operator.
func (s *Stack) OperatorExportLines() string { return exportLines(s.OperatorEnv) }

func exportLines(env []string) string {
	var b strings.Builder
	for _, kv := range env {
		if strings.HasPrefix(kv, "AWS_") || strings.HasPrefix(kv, "INFERSTACK_") {
			k, v, _ := strings.Cut(kv, "=")
			fmt.Fprintf(&b, "export %s=%q\n", k, v)
		}
	}
	return b.String()
}
