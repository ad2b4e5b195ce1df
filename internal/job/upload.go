package job

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// Upload is one object-created record of an S3 event notification: an
// upload under the input prefix that starts a job by itself.
type Upload struct {
	Bucket string
	Key    string // URL-decoded, as the object is named
	Size   int64
	ETag   string
	// Sequencer orders the events of one key (S3 sets it on every event).
	Sequencer string
	VersionID string
	EventName string // ObjectCreated:Put, ...
}

// SubmitPrefix is where `inferstack submit` uploads inputs: it sends a job
// message of its own (with its options), so the upload must not start a
// second job. Notifications of uploads under it start nothing.
const SubmitPrefix = InputPrefix + ".submit/"

// ErrNotNotification says a body is not an S3 event notification (it may be
// a job message).
var ErrNotNotification = fmt.Errorf("not an S3 event notification")

// ParseNotification reads an S3 event notification body as S3 sends it to
// SQS. test reports a notification that starts nothing: the s3:TestEvent S3
// sends when a notification is configured, or one whose uploads are all
// under SubmitPrefix (dropped from uploads). A body that is not a notification gives
// ErrNotNotification; records that are not object-created events are
// refused (ErrInvalid), as a notification configured for them is not ours.
func ParseNotification(body []byte) (uploads []Upload, test bool, err error) {
	var probe struct {
		Records *json.RawMessage `json:"Records"`
		Event   string           `json:"Event"`
		Service string           `json:"Service"`
	}
	if json.Unmarshal(body, &probe) != nil {
		return nil, false, ErrNotNotification
	}
	if probe.Service == "Amazon S3" && probe.Event == "s3:TestEvent" {
		return nil, true, nil
	}
	if probe.Records == nil {
		return nil, false, ErrNotNotification
	}
	// Only the fields a job needs are read: aws-lambda-go's S3Event would
	// refuse a whole notification over a field such as eventTime (moto's
	// has no time zone), which a job never looks at.
	var ev struct {
		Records []struct {
			EventSource string `json:"eventSource"`
			EventName   string `json:"eventName"`
			S3          struct {
				Bucket struct {
					Name string `json:"name"`
				} `json:"bucket"`
				Object struct {
					Key       string `json:"key"`
					Size      int64  `json:"size"`
					ETag      string `json:"eTag"`
					Sequencer string `json:"sequencer"`
					VersionID string `json:"versionId"`
				} `json:"object"`
			} `json:"s3"`
		} `json:"Records"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return nil, false, invalid("S3 event notification does not parse: %s", jsonReason(err))
	}
	if len(ev.Records) == 0 {
		return nil, false, invalid("S3 event notification has no records")
	}
	for _, r := range ev.Records {
		if r.EventSource != "aws:s3" || !strings.HasPrefix(r.EventName, "ObjectCreated:") {
			return nil, false, invalid("S3 event %q from %q: only ObjectCreated events start jobs", r.EventName, r.EventSource)
		}
		// S3 encodes keys as form values: '+' for a space, %XX for other
		// bytes (%2F for '/' where it escapes it).
		key, err := url.QueryUnescape(r.S3.Object.Key)
		if err != nil {
			return nil, false, invalid("S3 event notification does not parse: key %q is not form-encoded: %v", r.S3.Object.Key, err)
		}
		if strings.HasPrefix(key, SubmitPrefix) {
			continue
		}
		uploads = append(uploads, Upload{
			Bucket: r.S3.Bucket.Name, Key: key, Size: r.S3.Object.Size,
			ETag: r.S3.Object.ETag, Sequencer: r.S3.Object.Sequencer, VersionID: r.S3.Object.VersionID, EventName: r.EventName,
		})
	}
	return uploads, len(uploads) == 0, nil
}

// JobID names the upload's job: "s3-" and a hash of the bucket, the key and
// the object's version (its ETag and version id; the sequencer where S3 gave
// no ETag). A redelivered notification names the same job, and an upload of
// new bytes under the same key a new one; an upload of the very same bytes
// names the job that already holds their results, which the worker then
// acknowledges without recomputing (unless the model changed). Anyone who
// knows the ETag S3 returned for the upload can name the job.
func (u Upload) JobID() string {
	// Events carry the ETag bare, PutObject's answer in quotes.
	identity := strings.Trim(u.ETag, `"`) + "|" + u.VersionID
	if u.ETag == "" {
		identity = "sequencer:" + u.Sequencer
	}
	sum := sha256.Sum256([]byte(u.Bucket + "\x00" + u.Key + "\x00" + identity))
	return "s3-" + hex.EncodeToString(sum[:10])
}

// Request is the job an upload starts in bucket under inputPrefix, with the
// deployment's defaults (a table keeps the columns keep names); an upload
// elsewhere is refused with the reason.
func (u Upload) Request(bucket, inputPrefix string, keep []string) (Request, error) {
	if u.Bucket != bucket {
		return Request{}, invalid("upload s3://%s/%s is in another bucket than this stack's (%s)", u.Bucket, u.Key, bucket)
	}
	name, ok := strings.CutPrefix(u.Key, inputPrefix)
	if !ok || name == "" {
		return Request{}, invalid("upload s3://%s/%s is outside %s, where uploads start jobs", u.Bucket, u.Key, inputPrefix)
	}
	r := Request{Filename: name, JobID: u.JobID()}
	if r.IsTable() {
		r.Keep = keep
	}
	if err := r.validate(); err != nil {
		return Request{}, err
	}
	return r, nil
}

// Body is the request as a job message.
func (r Request) Body() string {
	data, _ := json.Marshal(r) // no field can fail to marshal
	return string(data)
}
