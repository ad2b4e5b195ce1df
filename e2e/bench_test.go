package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/inference/npy"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/localstack"
	"github.com/inferstack/inferstack/internal/testenv"
)

// BenchmarkLocalStackLatency: from sending the intake message to the job's
// results, for a small job (1,000 samples through the MLP) on the local
// stack, cold (the cpu tier at zero workers: the scaler starts one) and warm
// (a worker waiting), with the breakdown the worker's status object and the
// manifest record: dispatch, queue wait (and worker start), preparation,
// inference, upload.
func BenchmarkLocalStackLatency(b *testing.B) {
	cfg := devSettings(b, map[string]string{"uploadTriggers": "false"}) // each job is its message
	stack, err := localstack.Up(b.Context(), localstack.Options{Config: cfg, Binary: binary, Bootstrap: bootstrap,
		ORTLib: inference.DefaultLibPath(), IdleAfter: 500 * time.Millisecond})
	require.NoError(b, err)
	defer stack.Down()
	var mu sync.Mutex
	workers := 0
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- stack.Run(ctx, func(x localstack.Sample) {
			if x.Tier == "cpu" {
				mu.Lock()
				workers = x.Workers
				mu.Unlock()
			}
		})
	}()
	defer func() { cancel(); <-done }()

	s3c, sqsc := stack.Clients()
	_, err = s3c.PutObject(b.Context(), &s3.PutObjectInput{Bucket: aws.String(stack.Bucket), Key: aws.String("inputs/small.bin"),
		Body: bytes.NewReader(npy.FromFloat32(make([]float32, 24*1000)))})
	require.NoError(b, err)

	type breakdown struct{ total, dispatch, wait, prepare, infer, upload time.Duration }
	n := 0
	job := func() breakdown {
		id := fmt.Sprintf("latency-%d", n)
		n++
		sent := time.Now()
		_, err := sqsc.SendMessage(b.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(stack.Intake),
			MessageBody: aws.String(fmt.Sprintf(`{"filename": "small.bin", "job_id": %q}`, id))})
		require.NoError(b, err)
		var st job.Status
		testenv.Eventually(b, "job "+id+" to finish", 60*time.Second, func() bool {
			out, err := s3c.GetObject(b.Context(), &s3.GetObjectInput{Bucket: aws.String(stack.Bucket), Key: aws.String(job.StatusKey(id))})
			if err != nil {
				return false
			}
			_ = json.NewDecoder(out.Body).Decode(&st)
			_ = out.Body.Close()
			return st.State == job.StateDone
		})
		return breakdown{total: st.UpdatedAt.Sub(sent), dispatch: st.DispatchedAt.Sub(sent), wait: st.ReceivedAt.Sub(*st.DispatchedAt),
			prepare: st.EngineStartedAt.Sub(*st.ReceivedAt), infer: st.EngineFinishedAt.Sub(*st.EngineStartedAt), upload: st.UpdatedAt.Sub(*st.EngineFinishedAt)}
	}
	var cold, warm []breakdown
	for b.Loop() {
		testenv.Eventually(b, "the tier to return to zero", 30*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return workers == 0
		})
		cold = append(cold, job())
		warm = append(warm, job())
	}
	med := func(xs []breakdown, f func(breakdown) time.Duration) float64 {
		v := make([]float64, len(xs))
		for i, x := range xs {
			v[i] = float64(f(x).Microseconds()) / 1000
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	b.ReportMetric(med(cold, func(x breakdown) time.Duration { return x.total }), "cold-total-ms")
	b.ReportMetric(med(warm, func(x breakdown) time.Duration { return x.total }), "warm-total-ms")
	b.ReportMetric(med(warm, func(x breakdown) time.Duration { return x.dispatch }), "dispatch-ms")
	b.ReportMetric(med(warm, func(x breakdown) time.Duration { return x.wait }), "warm-queue-wait-ms")
	b.ReportMetric(med(cold, func(x breakdown) time.Duration { return x.wait }), "cold-queue-wait-and-start-ms")
	b.ReportMetric(med(warm, func(x breakdown) time.Duration { return x.prepare }), "prepare-ms")
	b.ReportMetric(med(warm, func(x breakdown) time.Duration { return x.infer }), "inference-ms")
	b.ReportMetric(med(warm, func(x breakdown) time.Duration { return x.upload }), "upload-ms")
}
