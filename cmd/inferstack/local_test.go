package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/localstack"
)

// The operator's exports come under a label that says whose rights they
// are, after the models and how a job names one.
func TestOperatorNote(t *testing.T) {
	t.Parallel()
	models := []localstack.Model{{File: "mlp.onnx", Key: "models/mlp.onnx"}, {File: "../my.onnx", Key: "models/my.onnx"}}
	n := operatorNote("http://127.0.0.1:9", "b", models, "export AWS_ACCESS_KEY_ID=\"OP\"\n")
	label := "the deployer's rights on AWS; never give these to a client"
	require.Contains(t, n, label)
	require.Less(t, strings.Index(n, label), strings.Index(n, "export AWS_ACCESS_KEY_ID"), "exports before their label")
	require.Contains(t, n, "s3://b/models/mlp.onnx  from mlp.onnx\n")
	require.Contains(t, n, "s3://b/models/my.onnx  from ../my.onnx\n")
	require.Contains(t, n, `a job without "model" runs mlp.onnx`)
	require.Contains(t, n, `{"filename": ".submit/FILE", "model": "my.onnx"}`)
	require.Contains(t, n, "  aws --endpoint-url http://127.0.0.1:9 s3 cp MODEL.onnx s3://b/models/MODEL.onnx\n")
}

func TestStatusLine(t *testing.T) {
	t.Parallel()
	latest := map[string]localstack.Sample{"cpu": {Tier: "cpu", Backlog: 3, Workers: 1}}
	require.Equal(t, "cpu: backlog 3, workers 1 | gpu: backlog 0, workers 0 | done 2, errors 1",
		statusLine([]string{"cpu", "gpu"}, latest, 2, 1))
}

func TestModelFlags(t *testing.T) {
	t.Parallel()
	var f modelFlags
	require.NoError(t, f.Set("a.onnx"))
	require.NoError(t, f.Set("b/c.onnx"))
	require.Error(t, f.Set(""))
	require.Equal(t, modelFlags{"a.onnx", "b/c.onnx"}, f)
}
