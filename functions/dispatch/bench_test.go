package dispatch

import (
	"fmt"
	"testing"

	"github.com/aws/aws-lambda-go/events"
)

// BenchmarkHandle: routing throughput in process, with fakes for AWS, in
// batches of 10 (the event source mapping's default batch size).
func BenchmarkHandle(b *testing.B) {
	d := New(testConfig, &fakeQueues{SendFn: func(*sqsSendInput) (*sqsSendOutput, error) { return &sqsSendOutput{}, nil }}, &fakeParameters{value: "cpu"}, fakeObjects{}, &fakeEvents{}, nil, nil)
	var ev events.SQSEvent
	for i := range 10 {
		ev.Records = append(ev.Records, events.SQSMessage{MessageId: fmt.Sprint(i), Body: fmt.Sprintf(`{"filename": "inputs/file-%d.bin", "window": 256, "hop": 128}`, i)})
	}
	for b.Loop() {
		resp, err := d.Handle(b.Context(), ev)
		if err != nil || len(resp.BatchItemFailures) > 0 {
			b.Fatal(err, resp)
		}
	}
	b.ReportMetric(float64(b.N*len(ev.Records))/b.Elapsed().Seconds(), "msgs/s")
}
