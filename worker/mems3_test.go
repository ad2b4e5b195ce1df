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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/awsenv"
)

// useMemS3 serves a new memS3 on loopback and points e's S3 client at it
// (SQS stays on moto); it returns the fake and its URL.
func useMemS3(b *testing.B, e *env) (*memS3, string) {
	fake := newMemS3()
	srv := httptest.NewServer(fake)
	b.Cleanup(srv.Close)
	cfg, err := moto.Config(b.Context())
	require.NoError(b, err)
	e.s3 = s3.NewFromConfig(cfg, awsenv.EmulatorS3Options, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(srv.URL)
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired // plain bodies
	})
	return fake, srv.URL
}

// memS3 is the least of S3 the worker uses, in memory, path-style, with
// no per-request overhead (moto and gofakes3 spend tens of milliseconds of
// CPU per ranged GET on the same two cores, so benchmarks would time them):
// PUT, HEAD, and GET with Range and If-Match of whole objects, and multipart
// uploads (create, part, complete, abort). Parts are not kept: a completed
// upload is a size and an ETag, which HEAD answers (GET does not).
type memS3 struct {
	mu       sync.Mutex
	objects  map[string][]byte
	etags    map[string]string // computed once, at PUT: hashing per GET would time the hash
	sizes    map[string]int64  // completed uploads
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

func (m *memS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
		delete(m.etags, key)
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
		etag := fmt.Sprintf(`"%x"`, md5.Sum(data))
		m.mu.Lock()
		m.objects[key], m.etags[key] = data, etag
		delete(m.sizes, key)
		m.mu.Unlock()
		w.Header().Set("ETag", etag)
	case r.Method == http.MethodHead || r.Method == http.MethodGet:
		m.get(w, r, key)
	default:
		http.Error(w, "not supported", http.StatusNotImplemented)
	}
}

func (m *memS3) get(w http.ResponseWriter, r *http.Request, key string) {
	m.mu.Lock()
	data, ok := m.objects[key]
	etag := m.etags[key]
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

func newMemS3() *memS3 {
	return &memS3{objects: map[string][]byte{}, etags: map[string]string{}, sizes: map[string]int64{}, uploads: map[string]*memUpload{}}
}
