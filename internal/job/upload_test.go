package job

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// put is a notification of one ObjectCreated:Put record, its key as given
// (S3 sends keys encoded as form values).
func put(bucket, key, object string) string {
	return `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put",` +
		`"s3":{"bucket":{"name":"` + bucket + `"},"object":{"key":"` + key + `"` + object + `}}}]}`
}

func TestParseNotificationDecodesKeysAsS3EncodesThem(t *testing.T) {
	t.Parallel()
	uploads, test, err := ParseNotification([]byte(put("b", "inputs/a+b%C3%A9%2Bc.npy", `,"size":7,"eTag":"e","sequencer":"0A"`)))
	require.NoError(t, err)
	require.False(t, test)
	require.Equal(t, []Upload{{Bucket: "b", Key: "inputs/a bé+c.npy", Size: 7, ETag: "e", Sequencer: "0A", EventName: "ObjectCreated:Put"}}, uploads)

	req, err := uploads[0].Request("b", InputPrefix, nil)
	require.NoError(t, err)
	require.Equal(t, Request{Filename: "a bé+c.npy", JobID: uploads[0].JobID()}, req)
	back, err := Parse([]byte(req.Body()))
	require.NoError(t, err, "the job message parses as one")
	require.Equal(t, req, back)
}

func TestAnUploadedTableKeepsTheStacksColumns(t *testing.T) {
	t.Parallel()
	keep := []string{"id", "ts"}
	table, err := Upload{Bucket: "b", Key: "inputs/day/part-0003.parquet"}.Request("b", InputPrefix, keep)
	require.NoError(t, err)
	require.Equal(t, keep, table.Keep)
	back, err := Parse([]byte(table.Body()))
	require.NoError(t, err)
	require.Equal(t, table, back)

	signal, err := Upload{Bucket: "b", Key: "inputs/signal.npy"}.Request("b", InputPrefix, keep)
	require.NoError(t, err)
	require.Empty(t, signal.Keep, "a .npy has no columns to keep")
}

func TestParseNotificationTellsTestEventsAndOtherBodiesApart(t *testing.T) {
	t.Parallel()
	_, test, err := ParseNotification([]byte(`{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-28T09:00:00.000Z","Bucket":"b"}`))
	require.NoError(t, err)
	require.True(t, test)

	for _, body := range []string{`{"filename": "x.npy"}`, `not json`, ``, `{"Service":"Amazon S3","Event":"s3:Other"}`} {
		_, test, err := ParseNotification([]byte(body))
		require.ErrorIs(t, err, ErrNotNotification, body)
		require.False(t, test)
	}
	for body, reason := range map[string]string{
		`{"Records":[]}`:           "no records",
		`{"Records":{}}`:           "does not parse",
		put("b", "inputs/%zz", ""): "does not parse",
		strings.Replace(put("b", "inputs/x", ""), "ObjectCreated:Put", "ObjectRemoved:Delete", 1): "only ObjectCreated events",
	} {
		_, _, err := ParseNotification([]byte(body))
		require.ErrorIs(t, err, ErrInvalid, body)
		require.False(t, errors.Is(err, ErrNotNotification))
		require.Contains(t, err.Error(), reason)
	}
}

func TestUploadJobIDNamesTheObjectVersion(t *testing.T) {
	t.Parallel()
	u := Upload{Bucket: "b", Key: "inputs/x.npy", ETag: "e", Sequencer: "0A"}
	require.Regexp(t, `^s3-[0-9a-f]{20}$`, u.JobID())
	require.Regexp(t, jobIDPattern, u.JobID(), "a valid job id in a job message")
	for _, other := range []Upload{
		{Bucket: "c", Key: u.Key, ETag: u.ETag},
		{Bucket: u.Bucket, Key: "inputs/y.npy", ETag: u.ETag},
		{Bucket: u.Bucket, Key: u.Key, ETag: "f"},                    // new bytes
		{Bucket: u.Bucket, Key: u.Key, ETag: u.ETag, VersionID: "2"}, // another version
	} {
		require.NotEqual(t, u.JobID(), other.JobID(), "%+v", other)
	}
	for _, same := range []Upload{
		{Bucket: u.Bucket, Key: u.Key, ETag: u.ETag, Sequencer: "0B"}, // the same bytes again
		{Bucket: u.Bucket, Key: u.Key, ETag: `"e"`},                   // PutObject's quoted ETag
	} {
		require.Equal(t, u.JobID(), same.JobID(), "%+v", same)
	}
	noETag := Upload{Bucket: "b", Key: "inputs/x.npy", Sequencer: "0A"}
	require.NotEqual(t, noETag.JobID(), Upload{Bucket: "b", Key: "inputs/x.npy", Sequencer: "0B"}.JobID(), "without an ETag the sequencer tells uploads apart")
}

func TestParseNotificationLeavesSubmitUploadsOut(t *testing.T) {
	t.Parallel()
	uploads, test, err := ParseNotification([]byte(put("b", "inputs%2F.submit%2Fx.npy", "")))
	require.NoError(t, err)
	require.True(t, test, "starts nothing")
	require.Empty(t, uploads)
}

func TestUploadRequestRefusesUploadsElsewhere(t *testing.T) {
	t.Parallel()
	for key, reason := range map[string]string{
		"other/x.npy":     "outside inputs/",
		"inputs/":         "outside inputs/",
		"inputs/../x.npy": `".." segment`,
		"inputs//x.npy":   "relative",
	} {
		_, err := Upload{Bucket: "b", Key: key}.Request("b", InputPrefix, nil)
		require.ErrorIs(t, err, ErrInvalid, key)
		require.Contains(t, err.Error(), reason, key)
	}
	_, err := Upload{Bucket: "c", Key: "inputs/x.npy"}.Request("b", InputPrefix, nil)
	require.ErrorIs(t, err, ErrInvalid)
	require.Contains(t, err.Error(), "another bucket")
}
