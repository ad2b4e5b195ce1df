package job

import (
	"time"
	"unicode/utf8"
)

// State is where a job is.
type State string

// The states of a job's status object and error record.
const (
	StateRunning     State = "running"
	StateDone        State = "done"
	StateFailed      State = "failed"
	StateInterrupted State = "interrupted" // handed back at shutdown; another worker resumes it
)

// Status is status/<job>.json: the worker rewrites it as the job runs, and
// clients follow it. The worker writes it and the client reads it through
// this one type.
type Status struct {
	JobID  string `json:"job_id"`
	State  State  `json:"state"`
	Tier   string `json:"tier,omitempty"`
	Worker string `json:"worker,omitempty"`
	Input  string `json:"input,omitempty"` // the input's key
	// Results is the key prefix of the job's outputs and manifest (see
	// Request.ResultsPrefix): where clients look for them.
	Results        string `json:"results,omitempty"`
	SamplesDone    int64  `json:"samples_done"`
	SamplesTotal   int64  `json:"samples_total"`
	ResumedAtChunk int64  `json:"resumed_at_chunk,omitempty"`
	Device         string `json:"device,omitempty"`
	FallbackReason string `json:"fallback_reason,omitempty"`
	Reason         string `json:"reason,omitempty"` // why it failed
	// Shards says how the job was split, where it was (nil: one worker runs it).
	Shards *ShardsProgress `json:"shards,omitempty"`
	// Announced says the job's ending (done or failed) is on the events
	// topic. A redelivery that finds the job done and this false (a worker
	// killed between its manifest and its event) announces it: events come
	// at least once.
	Announced bool `json:"announced,omitempty"`
	Timings
	UpdatedAt time.Time `json:"updated_at"`
}

// ShardsProgress is a split job's shards: its plan, their number, and how
// many are done (each shard's own status is at ShardStatusKey; a client
// counts them while the job runs).
type ShardsProgress struct {
	Plan  string `json:"plan"`
	Total int    `json:"total"`
	Done  int    `json:"done"`
}

// ShardStatus is status/<job>/<plan>/<index>.json: one shard's progress,
// written by the worker running it.
type ShardStatus struct {
	Index        int       `json:"index"`
	State        State     `json:"state"`
	Worker       string    `json:"worker,omitempty"`
	SamplesDone  int64     `json:"samples_done"`
	SamplesTotal int64     `json:"samples_total"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// Timings say when a job reached each stage it reached, for latency
// breakdowns: in its status, and in its event.
type Timings struct {
	DispatchedAt     *time.Time `json:"dispatched_at,omitempty"`
	ReceivedAt       *time.Time `json:"received_at,omitempty"`
	EngineStartedAt  *time.Time `json:"engine_started_at,omitempty"`
	EngineFinishedAt *time.Time `json:"engine_finished_at,omitempty"`
}

// Stages that refuse a message, in error records.
const (
	StageDispatch = "dispatch"
	StageWorker   = "worker"
)

// ErrorRecord is errors/<job>.json: why a job or message can never succeed.
// Every message ends as a result or as one of these plus a dead letter.
type ErrorRecord struct {
	JobID     string    `json:"job_id"` // "message-<id>" when the message named no job
	State     State     `json:"state"`  // always failed
	Reason    string    `json:"reason"`
	Stage     string    `json:"stage"` // dispatch or worker
	MessageID string    `json:"message_id"`
	Body      string    `json:"body"` // the message as received
	Tier      string    `json:"tier,omitempty"`
	Worker    string    `json:"worker,omitempty"`
	FailedAt  time.Time `json:"failed_at"`
}

// MessageJobID names the job of a message that named none (it did not parse).
func MessageJobID(messageID string) string { return "message-" + messageID }

// Message attributes the dispatcher adds to forwarded and dead-lettered
// messages, and the worker to the ones it dead-letters.
const (
	AttrJobID           = "job_id"
	AttrTier            = "tier"
	AttrDispatchedAt    = "dispatched_at"
	AttrOriginMessageID = "origin_message_id"
	AttrReason          = "reason"
	// AttrStalls counts the hand-overs at the visibility ceiling, in a
	// row, of a job that finished no chunk in between (the worker's copies
	// carry it; progress drops it).
	AttrStalls = "stalls"
)

// MaxReasonBytes bounds a reason attribute: dead letters stay far below
// SQS's message size limit, whatever the reason says.
const MaxReasonBytes = 1024

// Truncate cuts s to at most n bytes without splitting a UTF-8 character
// (SQS refuses attribute values that are not valid UTF-8).
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
