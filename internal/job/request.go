// Package job is the contract the stack's parts exchange about a job: the
// intake message (schema, validation, job id) and the S3 uploads that start
// one, the bucket's layout and a job's keys, its status, error record and
// events, and the queue and attribute names. The dispatch function, the
// worker and the client all speak it; no cgo, no SDK.
package job

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
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
	// InputFormat names a table format where the key's extension does not
	// (one of TableFormats).
	InputFormat string `json:"input_format,omitempty"`
	// Feed maps a model input to the table columns it reads, in order (by
	// default an input reads the column of its own name).
	Feed map[string][]string `json:"feed,omitempty"`
	// Keep names the table columns copied to the result beside the predictions.
	Keep []string `json:"keep,omitempty"`
	// OutputFormat is parquet (a table's default) or npy (one file per output).
	OutputFormat string `json:"output_format,omitempty"`
	// Shards splits the job into this many shards, each run by a worker of
	// its own, whatever the input's size (1: never split; 0: the stack's
	// inferstack:shardBytes decides).
	Shards int `json:"shards,omitempty"`
	// Shard is set on the messages a worker sends for the shards of a job it
	// split: which plan, and which of its shards.
	Shard *ShardRef `json:"shard,omitempty"`
}

// ShardRef names one shard of a split job.
type ShardRef struct {
	Plan  string `json:"plan"`
	Index int    `json:"index"`
	Count int    `json:"count"`
}

// MaxShards bounds a job's shards. Each shard is at least one part of each
// assembled output, and S3 allows 10,000 parts per object: 1,000 shards
// leave room for the parts that join small shards and split large ones.
const MaxShards = 1000

// TableFormats are the table formats a job reads; inference's table
// readers register the same names.
var TableFormats = []string{"csv", "jsonl", "parquet"}

// The output formats of a job.
const (
	OutputNpy     = "npy"
	OutputParquet = "parquet"
)

// MaxColumns bounds the columns a request names in feed and keep together.
const MaxColumns = 4096

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
	return parse(body, MaxBodyBytes+shardFieldsBytes)
}

// shardFieldsBytes is room for what a worker adds to a request it splits:
// the job id, where the sender set none, and the shard.
const shardFieldsBytes = 512

func parse(body []byte, limit int) (Request, error) {
	if len(body) > limit {
		return Request{}, invalid("body is %d bytes, the limit is %d", len(body), limit)
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

// ParseIntake is Parse for a message sent to the stack's intake: a shard's
// message is the workers' own, sent to the tier queue by the worker that
// split its job, and never comes from a sender.
func ParseIntake(body []byte) (Request, error) {
	r, err := parse(body, MaxBodyBytes)
	if err == nil && r.Shard != nil {
		return r, invalid(`"shard" is set by the worker that splits a job; ask for a split with "shards"`)
	}
	return r, err
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
	if err := r.validateShards(); err != nil {
		return err
	}
	return r.validateTable()
}

func (r *Request) validateShards() error {
	if r.Shards < 0 || r.Shards > MaxShards {
		return invalid(`"shards" must be between 1 and %d`, MaxShards)
	}
	s := r.Shard
	switch {
	case s == nil:
		return nil
	case r.JobID == "":
		return invalid(`"shard" goes with the "job_id" of the job it is part of`)
	case !jobIDPattern.MatchString(s.Plan):
		return invalid(`"shard": "plan" must be 1-64 letters, digits, '-' or '_'`)
	case s.Count < 2 || s.Count > MaxShards:
		return invalid(`"shard": "count" must be between 2 and %d`, MaxShards)
	case s.Index < 0 || s.Index >= s.Count:
		return invalid(`"shard": "index" must be between 0 and %d`, s.Count-1)
	}
	return nil
}

// validateTable checks the table fields as strictly as the rest: names that
// a column can have, no name twice in one list, formats that exist.
func (r *Request) validateTable() error {
	if r.InputFormat != "" && !slices.Contains(TableFormats, r.InputFormat) {
		return invalid(`"input_format" %q: want one of %s`, r.InputFormat, strings.Join(TableFormats, ", "))
	}
	switch r.OutputFormat {
	case "", OutputNpy, OutputParquet:
	default:
		return invalid(`"output_format" %q: want npy or parquet`, r.OutputFormat)
	}
	if len(r.Keep) > 0 && r.OutputFormat == OutputNpy {
		return invalid(`"keep" copies columns into the Parquet result: it cannot go with "output_format" npy`)
	}
	named := len(r.Keep)
	for _, input := range slices.Sorted(maps.Keys(r.Feed)) {
		cols := r.Feed[input]
		if err := checkName(input); err != nil {
			return invalid(`"feed": input %q: %v`, input, err)
		}
		if len(cols) == 0 {
			return invalid(`"feed": input %q reads no column`, input)
		}
		if err := checkNames(cols); err != nil {
			return invalid(`"feed": input %q: %v`, input, err)
		}
		named += len(cols)
	}
	if err := checkNames(r.Keep); err != nil {
		return invalid(`"keep": %v`, err)
	}
	if named > MaxColumns {
		return invalid(`"feed" and "keep" name %d columns, the limit is %d`, named, MaxColumns)
	}
	return nil
}

// tableExtensions are the extensions inference's table readers register
// (a test holds the two equal), for code that does not link them.
var tableExtensions = []string{".parquet", ".parq", ".csv", ".csv.gz", ".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz"}

// IsTable says whether the request's input is a table, by its format or
// its key's extension (as inference's readers choose).
func (r Request) IsTable() bool {
	name := strings.ToLower(r.Filename)
	return r.InputFormat != "" || slices.ContainsFunc(tableExtensions, func(ext string) bool { return strings.HasSuffix(name, ext) })
}

// TableExtensions lists the extensions that make a key a table.
func TableExtensions() []string { return slices.Clone(tableExtensions) }

func checkNames(names []string) error {
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if err := checkName(n); err != nil {
			return fmt.Errorf("column %q: %w", n, err)
		}
		if seen[n] {
			return fmt.Errorf("column %q named twice", n)
		}
		seen[n] = true
	}
	return nil
}

// checkName refuses names no column or model input has: empty, not UTF-8,
// control characters, or longer than 255 bytes.
func checkName(n string) error {
	switch {
	case n == "":
		return errors.New("empty name")
	case len(n) > 255:
		return fmt.Errorf("name is %d bytes, the limit is 255", len(n))
	case !utf8.ValidString(n):
		return errors.New("name is not valid UTF-8")
	case strings.ContainsFunc(n, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("name has control characters")
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
