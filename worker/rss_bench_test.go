package worker_test

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"
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
// S3 is memS3Multipart, in this process: moto would hold the 2 GiB and
// spend the two cores checksumming it. It keeps small objects and only the
// sizes and digests of parts. SQS stays on moto.
func BenchmarkWorkerPeakRSSLargeOutput(b *testing.B) {
	e := newEnv(b, 30*time.Second)
	fake := &memS3Multipart{objects: map[string][]byte{}, sizes: map[string]int64{}, uploads: map[string]*memUpload{}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	cfg, err := moto.Config(b.Context())
	require.NoError(b, err)
	// Through the options: moto.Config's endpoint is a config source,
	// which outranks cfg.BaseEndpoint.
	e.s3 = s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint, o.UsePathStyle = aws.String(srv.URL), true
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	})
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
		proc, logs := e.process("AWS_ENDPOINT_URL_S3=" + srv.URL)
		jobID := e.send(fmt.Sprintf(`{"filename": "big.npy", "job_id": "big-%d"}`, i))
		i++
		start := time.Now()
		e.waitFor("the manifest", 10*time.Minute, func() bool { _, ok := e.manifest(jobID); return ok })
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

// memS3Multipart is the least of S3 the worker uses, in memory, path-style:
// PUT, HEAD, and GET with Range and If-Match of whole objects, and multipart
// uploads (create, part, complete, abort). Parts are not kept: a completed
// upload is a size and an ETag, which HEAD answers (GET does not).
type memS3Multipart struct {
	mu       sync.Mutex
	objects  map[string][]byte
	sizes    map[string]int64 // completed uploads
	uploads  map[string]*memUpload
	next     int
	received atomic.Int64 // bytes of results and checkpoints received
}

type memUpload struct {
	key   string
	parts map[int]memPart
}

type memPart struct {
	etag string
	size int64
}

func s3Error(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "<Error><Code>%s</Code><Message>%s</Message></Error>", code, code)
}

// body reads a request's payload, undoing aws-chunked framing.
func body(r *http.Request) ([]byte, error) {
	if !strings.Contains(r.Header.Get("Content-Encoding"), "aws-chunked") && r.Header.Get("X-Amz-Decoded-Content-Length") == "" {
		return io.ReadAll(r.Body)
	}
	var out bytes.Buffer
	br := bufio.NewReader(r.Body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		size, err := strconv.ParseInt(strings.TrimSpace(strings.SplitN(line, ";", 2)[0]), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("aws-chunked: %w", err)
		}
		if size == 0 {
			return out.Bytes(), nil // trailers follow
		}
		if _, err := io.CopyN(&out, br, size); err != nil {
			return nil, err
		}
		if _, err := br.ReadString('\n'); err != nil {
			return nil, err
		}
	}
}

// digest is an S3 ETag of data: its quoted MD5, without keeping data.
func digest(r io.Reader) (string, int64, error) {
	h := md5.New()
	n, err := io.Copy(h, r)
	return fmt.Sprintf(`"%x"`, h.Sum(nil)), n, err
}

func (m *memS3Multipart) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key, q := r.URL.Path, r.URL.Query()
	switch {
	case r.Method == http.MethodPost && q.Has("uploads"):
		m.mu.Lock()
		m.next++
		id := fmt.Sprintf("upload-%d", m.next)
		m.uploads[id] = &memUpload{key: key, parts: map[int]memPart{}}
		m.mu.Unlock()
		_, _ = fmt.Fprintf(w, "<InitiateMultipartUploadResult><Key>%s</Key><UploadId>%s</UploadId></InitiateMultipartUploadResult>", key, id)
	case r.Method == http.MethodPut && q.Has("uploadId"):
		n, _ := strconv.Atoi(q.Get("partNumber"))
		var etag string
		var size int64
		var err error
		if strings.Contains(r.Header.Get("Content-Encoding"), "aws-chunked") {
			var data []byte
			if data, err = body(r); err == nil {
				etag, size, err = digest(bytes.NewReader(data))
			}
		} else {
			etag, size, err = digest(r.Body)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		m.received.Add(size)
		m.mu.Lock()
		u, ok := m.uploads[q.Get("uploadId")]
		if ok {
			u.parts[n] = memPart{etag: etag, size: size}
		}
		m.mu.Unlock()
		if !ok {
			s3Error(w, http.StatusNotFound, "NoSuchUpload")
			return
		}
		w.Header().Set("ETag", etag)
	case r.Method == http.MethodPost && q.Has("uploadId"):
		var done struct {
			Parts []struct {
				PartNumber int
				ETag       string
			} `xml:"Part"`
		}
		if err := xml.NewDecoder(r.Body).Decode(&done); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		u, ok := m.uploads[q.Get("uploadId")]
		if !ok {
			s3Error(w, http.StatusNotFound, "NoSuchUpload")
			return
		}
		var size int64
		for i, p := range done.Parts {
			got, ok := u.parts[p.PartNumber]
			if !ok || got.etag != p.ETag || p.PartNumber != i+1 {
				s3Error(w, http.StatusBadRequest, "InvalidPart")
				return
			}
			if i < len(done.Parts)-1 && got.size < 5<<20 {
				s3Error(w, http.StatusBadRequest, "EntityTooSmall")
				return
			}
			size += got.size
		}
		delete(m.uploads, q.Get("uploadId"))
		delete(m.objects, key)
		m.sizes[key] = size
		_, _ = fmt.Fprintf(w, `<CompleteMultipartUploadResult><Key>%s</Key><ETag>"mp-%d"</ETag></CompleteMultipartUploadResult>`, key, len(done.Parts))
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		m.mu.Lock()
		_, ok := m.uploads[q.Get("uploadId")]
		delete(m.uploads, q.Get("uploadId"))
		m.mu.Unlock()
		if !ok {
			s3Error(w, http.StatusNotFound, "NoSuchUpload")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPut:
		data, err := body(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if strings.Contains(key, "/results/") || strings.Contains(key, "/checkpoints/") {
			m.received.Add(int64(len(data)))
		}
		m.mu.Lock()
		m.objects[key] = data
		delete(m.sizes, key)
		m.mu.Unlock()
		w.Header().Set("ETag", fmt.Sprintf(`"%x"`, md5.Sum(data)))
	case r.Method == http.MethodHead || r.Method == http.MethodGet:
		m.get(w, r, key)
	default:
		http.Error(w, "not supported", http.StatusNotImplemented)
	}
}

func (m *memS3Multipart) get(w http.ResponseWriter, r *http.Request, key string) {
	m.mu.Lock()
	data, ok := m.objects[key]
	size, multipart := m.sizes[key]
	m.mu.Unlock()
	if multipart {
		if r.Method == http.MethodGet {
			http.Error(w, "parts are not kept", http.StatusNotImplemented)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.Header().Set("ETag", `"mp"`)
		return
	}
	if !ok {
		s3Error(w, http.StatusNotFound, "NoSuchKey")
		return
	}
	etag := fmt.Sprintf(`"%x"`, md5.Sum(data))
	if im := r.Header.Get("If-Match"); im != "" && im != etag {
		w.WriteHeader(http.StatusPreconditionFailed)
		return
	}
	w.Header().Set("ETag", etag)
	status := http.StatusOK
	if rng := r.Header.Get("Range"); rng != "" {
		var from, to int
		if _, err := fmt.Sscanf(rng, "bytes=%d-%d", &from, &to); err != nil || from > to || from >= len(data) {
			http.Error(w, "bad range", http.StatusRequestedRangeNotSatisfiable)
			return
		}
		to = min(to, len(data)-1)
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, to, len(data)))
		data, status = data[from:to+1], http.StatusPartialContent
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(status)
	if r.Method == http.MethodGet {
		_, _ = w.Write(data)
	}
}
