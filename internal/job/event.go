package job

import (
	"encoding/json"
	"time"
)

// EventState is what happened to a job, as its event on the stack's events
// topic says.
type EventState string

// The job events: the worker publishes finished and failed, the dispatcher
// refused (a message or upload it will not route).
const (
	EventFinished EventState = "finished"
	EventFailed   EventState = "failed"
	EventRefused  EventState = "refused"
)

// EventVersion is the schema version of Event; fields are only ever added.
const EventVersion = 1

// Event is one message on the events topic: one per job that finished or
// failed, one per message or upload the dispatcher refused. Subscribers
// filter on the message attributes AttrEventState and AttrTier (SNS filter
// policies match message attributes), and read the rest from the body.
type Event struct {
	Version int        `json:"version"`
	State   EventState `json:"state"`
	JobID   string     `json:"job_id"`
	Bucket  string     `json:"bucket"`
	Input   string     `json:"input,omitempty"` // the input's key
	Tier    string     `json:"tier,omitempty"`  // cpu or gpu; empty for refusals
	// Results is the prefix of a finished job's outputs and manifest.
	Results string `json:"results,omitempty"`
	Samples int64  `json:"samples,omitempty"`
	// Reason says why a job failed or a message was refused; ErrorRecord is
	// the key of its full record.
	Reason      string `json:"reason,omitempty"`
	Stage       string `json:"stage,omitempty"` // dispatch or worker, for failed and refused
	ErrorRecord string `json:"error_record,omitempty"`
	// When the job reached each stage it reached, as its status says.
	Timings
	At time.Time `json:"at"` // the event's own time
}

// Message attributes of an event, for subscription filter policies.
const (
	AttrEventState = "state"
	// AttrTier ("tier") as on forwarded messages.
)

// Body is the event as published: JSON, its reason cut to MaxReasonBytes so
// every event stays far below SNS's 256 KiB message limit.
func (e Event) Body() string {
	e.Version = EventVersion
	e.Reason = Truncate(e.Reason, MaxReasonBytes)
	data, _ := json.Marshal(e) // no field can fail to marshal
	return string(data)
}

// Attributes are the event's message attributes: state, and tier where known.
func (e Event) Attributes() map[string]string {
	attrs := map[string]string{AttrEventState: string(e.State)}
	if e.Tier != "" {
		attrs[AttrTier] = e.Tier
	}
	return attrs
}
