package job

// Prefixes of the stack's bucket: where a job's input, results, status,
// error record and checkpoints live. The Pulumi program scopes permissions
// and lifecycle rules to them; the dispatch function, the worker and the
// client read and write under them.
const (
	InputPrefix      = "inputs/"
	ResultsPrefix    = "results/"
	StatusPrefix     = "status/"
	ErrorsPrefix     = "errors/"
	CheckpointPrefix = "checkpoints/"
	ModelsPrefix     = "models/"
)

// MetricsNamespace is the CloudWatch namespace of the worker's metrics.
const MetricsNamespace = "Inferstack"
