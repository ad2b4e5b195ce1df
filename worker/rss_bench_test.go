package worker_test

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/testenv"
)

// BenchmarkWorkerPeakRSSLargeOutput: the real `inferstack worker` process
// on a job whose two outputs are 1 GiB each (65,536 samples through an MLP
// with 4,096 outputs: 16 KiB per sample per output), in chunks of 512
// samples (8 MiB per output, a part each). peak-RSS-MiB is the process's
// VmHWM once the manifest is in S3; the target is under 256 MiB, whatever
// the output's size. upload/output is the bytes S3 received for the
// results and checkpoints over the results' size: 1 when every chunk went
// up once.
//
// S3 is memS3, in this process: moto would hold the 2 GiB and spend the
// two cores checksumming it. It keeps small objects and only the sizes and
// digests of parts. SQS stays on moto.
func BenchmarkWorkerPeakRSSLargeOutput(b *testing.B) {
	e := newEnv(b, 30*time.Second)
	fake, url := useMemS3(b, e)
	wide(e, 4096)
	const samples, out = 65536, 4096
	e.cfg.ChunkSamples = 512
	e.input("big.npy", samples)
	outputBytes := int64(2 * samples * out * 4)

	var rss, manifestRSS, seconds float64
	var received int64
	i := 0
	for b.Loop() {
		fake.received.Store(0)
		proc, logs := e.process("AWS_ENDPOINT_URL_S3=" + url)
		jobID := e.send(fmt.Sprintf(`{"filename": "big.npy", "job_id": "big-%d"}`, i))
		i++
		start := time.Now()
		testenv.Eventually(e.t, "the manifest", 10*time.Minute, func() bool { _, ok := e.manifest(jobID); return ok })
		seconds += time.Since(start).Seconds()
		hwm, err := peakRSS(proc.Process.Pid)
		require.NoError(b, err, "%s", logs)
		rss = max(rss, float64(hwm)/(1<<20))
		require.NoError(b, proc.Process.Signal(syscall.SIGKILL))
		_, _ = proc.Process.Wait()

		m, _ := e.manifest(jobID)
		manifestRSS = max(manifestRSS, float64(m.PeakRSSBytes)/(1<<20))
		for _, o := range m.Outputs {
			head, err := e.s3.HeadObject(b.Context(), &s3.HeadObjectInput{Bucket: aws.String(e.bucket), Key: aws.String("results/" + jobID + "/" + o.File)})
			require.NoError(b, err)
			require.Greater(b, aws.ToInt64(head.ContentLength), int64(samples*out*4), o.File)
		}
		received += fake.received.Load()
	}
	b.ReportMetric(rss, "peak-RSS-MiB")
	b.ReportMetric(manifestRSS, "manifest-peak-RSS-MiB")
	b.ReportMetric(float64(outputBytes)/(1<<30), "output-GiB")
	b.ReportMetric(float64(received)/float64(int64(i)*outputBytes), "upload/output")
	b.ReportMetric(float64(int64(i)*outputBytes)/(1<<20)/seconds, "output-MiB/s")
}

// peakRSS is a process's peak resident set (VmHWM), in bytes.
func peakRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(rest, "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
