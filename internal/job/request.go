// Package job defines the intake message that starts a job: its schema, its
// validation, and its job id. The dispatch function, the worker and the
// client all speak it.
package job

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Tier names a compute tier, or auto (choose by input size).
type Tier string

// The tiers.
const (
	TierCPU  Tier = "cpu"
	TierGPU  Tier = "gpu"
	TierAuto Tier = "auto"
)

// ParseTier accepts cpu, gpu and auto.
func ParseTier(s string) (Tier, error) {
	switch t := Tier(strings.TrimSpace(s)); t {
	case TierCPU, TierGPU, TierAuto:
		return t, nil
	}
	return "", fmt.Errorf("tier %q: want cpu, gpu or auto", s)
}

// Request is one intake message. Only Filename is required: the classic
// {"filename": "file_to_process.bin"} is a complete request.
type Request struct {
	// Filename is the input's key relative to the bucket's input prefix.
	Filename string `json:"filename"`
	// JobID names the job; when absent it is derived from the request, so a
	// redelivered or resent message names the same job.
	JobID string `json:"job_id,omitempty"`
	// Tier overrides the active tier, where the deployment allows it.
	Tier Tier `json:"tier,omitempty"`
	// Model is a key relative to the models prefix (default: the deployment's model).
	Model string `json:"model,omitempty"`
	// OutputPrefix is where results go, relative to the results prefix (default: the job id).
	OutputPrefix string `json:"output_prefix,omitempty"`
	// Window and Hop cut a signal into samples (see inferstack run --window).
	Window int64 `json:"window,omitempty"`
	Hop    int64 `json:"hop,omitempty"`
}

// Limits of a request. The body limit is ours, far below SQS's own (256 KiB
// by default, 1 MiB at most: the MaximumMessageSize queue attribute); a key
// may hold at most 1,024 bytes of UTF-8 in S3.
const (
	MaxBodyBytes = 16 << 10
	MaxKeyBytes  = 1024
	MaxWindow    = 1 << 24
)

// ErrInvalid marks a request that can never succeed: retrying it is useless,
// so it goes to the dead-letter queue at once.
var ErrInvalid = errors.New("invalid request")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

var jobIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// Parse decodes and validates a message body strictly: unknown fields, wrong
// types, trailing data and unsafe keys are refused with a reason. The job id
// is filled in when the body has none.
func Parse(body []byte) (Request, error) {
	if len(body) > MaxBodyBytes {
		return Request{}, invalid("body is %d bytes, the limit is %d", len(body), MaxBodyBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var r Request
	if err := dec.Decode(&r); err != nil {
		return Request{}, invalid("body is not a valid request: %s", jsonReason(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Request{}, invalid("body has data after the JSON object")
	}
	if err := r.validate(); err != nil {
		return Request{}, err
	}
	if r.JobID == "" {
		r.JobID = r.derivedID()
	}
	return r, nil
}

func (r *Request) validate() error {
	if r.Filename == "" {
		return invalid(`"filename" is required`)
	}
	for _, f := range []struct{ name, value string }{{"filename", r.Filename}, {"model", r.Model}, {"output_prefix", r.OutputPrefix}} {
		if f.value == "" {
			continue
		}
		if err := CheckRelativeKey(f.value); err != nil {
			return invalid("%q: %v", f.name, err)
		}
	}
	if r.JobID != "" && !jobIDPattern.MatchString(r.JobID) {
		return invalid(`"job_id" must be 1-64 letters, digits, '-' or '_', starting with a letter or digit`)
	}
	if r.Tier != "" {
		if _, err := ParseTier(string(r.Tier)); err != nil {
			return invalid("%v", err)
		}
	}
	switch {
	case (r.Window == 0) != (r.Hop == 0):
		return invalid(`"window" and "hop" go together`)
	case r.Window < 0 || r.Hop < 0 || r.Window > MaxWindow || r.Hop > MaxWindow:
		return invalid(`"window" and "hop" must be between 1 and %d`, MaxWindow)
	}
	return nil
}

// CheckRelativeKey refuses keys that could leave their prefix or the bucket:
// absolute paths, '.' and '..' segments, empty segments, backslashes, URLs
// and ARNs, control characters, invalid UTF-8, and keys too long for S3.
func CheckRelativeKey(key string) error {
	switch {
	case len(key) > MaxKeyBytes-64: // leave room for the prefix in front of it
		return fmt.Errorf("key is %d bytes, the limit is %d", len(key), MaxKeyBytes-64)
	case !utf8.ValidString(key):
		return errors.New("key is not valid UTF-8")
	case strings.HasPrefix(key, "/"):
		return errors.New("key must be relative, not start with '/'")
	case strings.Contains(key, "://") || strings.HasPrefix(key, "arn:") || strings.HasPrefix(key, "s3:"):
		return errors.New("key must be a key in this bucket, not a URL or ARN")
	case strings.ContainsRune(key, '\\'):
		return errors.New("key must not contain '\\'")
	case strings.Contains(key, "//"):
		return errors.New("key must not contain empty segments ('//')")
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f {
			return errors.New("key must not contain control characters")
		}
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == ".." || seg == "." {
			return fmt.Errorf("key must not contain a %q segment", seg)
		}
	}
	return nil
}

// derivedID names a request by its content, so redeliveries and resends of
// the same request map to the same job and downstream duplicates are harmless.
func (r Request) derivedID() string {
	canonical, _ := json.Marshal(r) // field order is fixed by the struct
	sum := sha256.Sum256(canonical)
	return "j-" + hex.EncodeToString(sum[:10])
}

// jsonReason shortens encoding/json's messages to what a sender can act on.
func jsonReason(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return fmt.Sprintf("field %q must be a %s", typeErr.Field, typeErr.Type)
	}
	if errors.Is(err, io.EOF) {
		return "empty body"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}
