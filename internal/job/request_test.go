package job

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseAcceptsTheClassicMessageAndOptionalFields(t *testing.T) {
	t.Parallel()
	r, err := Parse([]byte(`{"filename": "file_to_process.bin"}`))
	require.NoError(t, err)
	require.Equal(t, "file_to_process.bin", r.Filename)
	require.Regexp(t, `^j-[0-9a-f]{20}$`, r.JobID)

	again, err := Parse([]byte(`{ "filename" : "file_to_process.bin" }`))
	require.NoError(t, err)
	require.Equal(t, r.JobID, again.JobID, "the same request names the same job however it is spaced")
	other, err := Parse([]byte(`{"filename": "file_to_process.bin", "window": 256, "hop": 128}`))
	require.NoError(t, err)
	require.NotEqual(t, r.JobID, other.JobID, "a different request names a different job")

	full, err := Parse([]byte(`{"filename":"a/b.npy","job_id":"my-job_1","tier":"gpu","model":"m/v2.onnx","output_prefix":"runs/7/","window":256,"hop":128}`))
	require.NoError(t, err)
	require.Equal(t, Request{Filename: "a/b.npy", JobID: "my-job_1", Tier: TierGPU, Model: "m/v2.onnx", OutputPrefix: "runs/7/", Window: 256, Hop: 128}, full)

	table, err := Parse([]byte(`{"filename":"t/part-0003.data","input_format":"parquet","feed":{"float_input":["a","b"],"cat":["c"]},"keep":["id","ts"],"output_format":"parquet"}`))
	require.NoError(t, err)
	require.Equal(t, map[string][]string{"float_input": {"a", "b"}, "cat": {"c"}}, table.Feed)
	require.Equal(t, []string{"id", "ts"}, table.Keep)
	require.True(t, table.IsTable(), "input_format names a table whatever the extension")
	reordered, err := Parse([]byte(`{"output_format":"parquet","keep":["id","ts"],"feed":{"cat":["c"],"float_input":["a","b"]},"input_format":"parquet","filename":"t/part-0003.data"}`))
	require.NoError(t, err)
	require.Equal(t, table.JobID, reordered.JobID, "feed keys in another order name the same job")
	swapped, err := Parse([]byte(`{"filename":"t/part-0003.data","input_format":"parquet","feed":{"float_input":["b","a"],"cat":["c"]},"keep":["id","ts"]}`))
	require.NoError(t, err)
	require.NotEqual(t, table.JobID, swapped.JobID, "columns in another order feed another tensor")
}

func TestParseAcceptsShards(t *testing.T) {
	t.Parallel()
	r, err := Parse([]byte(`{"filename":"big.npy","shards":4}`))
	require.NoError(t, err)
	require.Equal(t, 4, r.Shards)
	plain, err := Parse([]byte(`{"filename":"big.npy"}`))
	require.NoError(t, err)
	require.NotEqual(t, plain.JobID, r.JobID, "a split job is another job")

	s, err := Parse([]byte(`{"filename":"big.npy","job_id":"` + r.JobID + `","shard":{"plan":"p-1","index":3,"count":4}}`))
	require.NoError(t, err)
	require.Equal(t, &ShardRef{Plan: "p-1", Index: 3, Count: 4}, s.Shard)
	require.Equal(t, r.JobID, s.JobID)
	_, err = ParseIntake([]byte(`{"filename":"big.npy","job_id":"j","shard":{"plan":"p-1","index":3,"count":4}}`))
	require.ErrorIs(t, err, ErrInvalid, "a sender does not send shards")
	require.Contains(t, err.Error(), `ask for a split with "shards"`)
	_, err = ParseIntake([]byte(`{"filename":"big.npy","shards":4}`))
	require.NoError(t, err)

	// A request at the intake's limit still parses once a worker adds its
	// job id and shard to it.
	long := Request{Filename: "k", Shards: 4}
	body, _ := json.Marshal(long)
	for len(body) < MaxBodyBytes-900 {
		long.Keep = append(long.Keep, fmt.Sprintf("%0255d", len(long.Keep)))
		body, _ = json.Marshal(long)
	}
	long.Filename += strings.Repeat("k", MaxBodyBytes-len(body))
	body, _ = json.Marshal(long)
	require.Len(t, body, MaxBodyBytes)
	parsed, err := ParseIntake(body)
	require.NoError(t, err)
	parsed.Shards, parsed.Shard = 0, &ShardRef{Plan: strings.Repeat("p", 64), Index: 999, Count: 1000}
	forwarded, err := json.Marshal(parsed)
	require.NoError(t, err)
	require.Greater(t, len(forwarded), MaxBodyBytes)
	_, err = Parse(forwarded)
	require.NoError(t, err)
}

func TestIsTableByExtension(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{"a/part-0003.parquet": true, "x.CSV.gz": true, "y.ndjson": true, "z.jsonl.gz": true, "s.npy": false, "file_to_process.bin": false, "csv": false} {
		require.Equal(t, want, Request{Filename: name}.IsTable(), name)
	}
}

func TestParseRefusesBadRequestsWithAReason(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, body, reason string }{
		{"empty", ``, "empty body"},
		{"not json", `filename=x`, "invalid character"},
		{"array", `["x"]`, "must be a job.Request"},
		{"unknown field", `{"filename":"x","bucket":"other"}`, `unknown field "bucket"`},
		{"wrong type", `{"filename":42}`, `field "filename" must be a string`},
		{"trailing data", `{"filename":"x"} {"filename":"y"}`, "data after the JSON object"},
		{"missing filename", `{"job_id":"a"}`, `"filename" is required`},
		{"absolute key", `{"filename":"/etc/passwd"}`, "relative"},
		{"parent segment", `{"filename":"a/../../secrets"}`, `".." segment`},
		{"dot segment", `{"filename":"./a"}`, `"." segment`},
		{"empty segment", `{"filename":"a//b"}`, "empty segments"},
		{"url", `{"filename":"s3://other-bucket/x"}`, "not a URL"},
		{"https url", `{"filename":"https://evil.example/x"}`, "not a URL"},
		{"arn", `{"filename":"arn:aws:s3:::other/x"}`, "not a URL or ARN"},
		{"backslash", `{"filename":"a\\b"}`, `'\'`},
		{"control char", `{"filename":"a\u0001b"}`, "control characters"},
		{"long key", `{"filename":"` + strings.Repeat("k", 1000) + `"}`, "the limit is 960"},
		{"bad model key", `{"filename":"x","model":"../m.onnx"}`, `"model"`},
		{"bad output prefix", `{"filename":"x","output_prefix":"/abs"}`, `"output_prefix"`},
		{"bad job id", `{"filename":"x","job_id":"a/b"}`, `"job_id"`},
		{"bad tier", `{"filename":"x","tier":"tpu"}`, `tier "tpu"`},
		{"window without hop", `{"filename":"x","window":4}`, "go together"},
		{"negative window", `{"filename":"x","window":-4,"hop":-1}`, "between 1 and"},
		{"unknown input format", `{"filename":"x","input_format":"xlsx"}`, `"input_format" "xlsx": want one of csv, jsonl, parquet`},
		{"unknown output format", `{"filename":"x.csv","output_format":"arrow"}`, `"output_format" "arrow": want npy or parquet`},
		{"keep into npy", `{"filename":"x.csv","keep":["id"],"output_format":"npy"}`, `cannot go with "output_format" npy`},
		{"feed reads nothing", `{"filename":"x.csv","feed":{"x":[]}}`, `input "x" reads no column`},
		{"feed empty column", `{"filename":"x.csv","feed":{"x":["a",""]}}`, `input "x": column "": empty name`},
		{"feed column twice", `{"filename":"x.csv","feed":{"x":["a","a"]}}`, `column "a" named twice`},
		{"feed empty input", `{"filename":"x.csv","feed":{"":["a"]}}`, `input "": empty name`},
		{"feed wrong type", `{"filename":"x.csv","feed":{"x":"a"}}`, `field "feed" must be a []string`},
		{"keep twice", `{"filename":"x.csv","keep":["id","id"]}`, `"keep": column "id" named twice`},
		{"keep control char", `{"filename":"x.csv","keep":["a\u0007"]}`, "control characters"},
		{"shards negative", `{"filename":"x","shards":-1}`, `"shards" must be between 1 and 1000`},
		{"shards too many", `{"filename":"x","shards":1001}`, `"shards" must be between 1 and 1000`},
		{"shards not a number", `{"filename":"x","shards":"4"}`, `field "shards" must be a int`},
		{"shard without job", `{"filename":"x","shard":{"plan":"p","index":0,"count":2}}`, `"shard" goes with the "job_id"`},
		{"shard bad plan", `{"filename":"x","job_id":"j","shard":{"plan":"a/b","index":0,"count":2}}`, `"plan" must be`},
		{"shard index past count", `{"filename":"x","job_id":"j","shard":{"plan":"p","index":2,"count":2}}`, `"index" must be between 0 and 1`},
		{"shard of one", `{"filename":"x","job_id":"j","shard":{"plan":"p","index":0,"count":1}}`, `"count" must be between 2 and 1000`},
		{"huge body", `{"filename":"` + strings.Repeat("a/", MaxBodyBytes) + `"}`, "limit is 16384"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseIntake([]byte(tc.body))
			require.ErrorIs(t, err, ErrInvalid)
			require.Contains(t, err.Error(), tc.reason)
		})
	}
}

func TestCheckRelativeKeyAllowsOrdinaryKeys(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"file_to_process.bin", "a/b/c.npy", "dir/", "ünïcode/файл.bin", "name with spaces.bin", "a.b..c"} {
		require.NoError(t, CheckRelativeKey(key), key)
	}
}
