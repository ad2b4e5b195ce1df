package tests

// These tests drive the real Pulumi engine through the Automation API: an
// inline program (package deploy), a file:// backend, and the mock provider
// plugin (tests/mockprovider) installed as aws and awsx.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/events"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/deploy"
	"github.com/inferstack/inferstack/tests/fakeaws"
)

// PulumiVersion is the CLI `make setup-test` builds from source.
const PulumiVersion = "v3.276.0"

// pulumiRoot is the CLI's root (bin/pulumi under it), or the test fails with the fix.
func pulumiRoot(t testing.TB) string {
	t.Helper()
	base := os.Getenv("INFERSTACK_CACHE")
	if base == "" {
		cache, err := os.UserCacheDir()
		require.NoError(t, err)
		base = filepath.Join(cache, "inferstack")
	}
	root := filepath.Join(base, "tools", "pulumi-"+PulumiVersion)
	if _, err := os.Stat(filepath.Join(root, "bin", "pulumi")); err != nil {
		t.Fatalf("the Pulumi CLI is missing at %s: run `make setup-test` (it builds %s from source through the module proxy)", root, PulumiVersion)
	}
	return root
}

// engine is a Pulumi home with the mock provider installed, a file backend,
// and the CLI, shared by the steps of one test.
type engine struct {
	opts []auto.LocalWorkspaceOption
}

func newEngine(t testing.TB) *engine {
	t.Helper()
	root := pulumiRoot(t)
	home, backend, bin := t.TempDir(), t.TempDir(), t.TempDir()
	env := map[string]string{
		"PULUMI_CONFIG_PASSPHRASE": "inferstack-test", "PULUMI_SKIP_UPDATE_CHECK": "true",
		"PULUMI_HOME": home, "PULUMI_BACKEND_URL": "file://" + backend, "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
		// The mock provider keeps ECS's state (associations, services) from
		// one provider process (one `up`) to the next, to enforce ECS's rules.
		fakeaws.ECSStateEnv: filepath.Join(home, "ecs-state.json"),
		// And SQS's queue policies, which S3 checks for a bucket notification.
		fakeaws.SQSStateEnv: filepath.Join(home, "sqs-state.json"),
	}
	for _, name := range []string{"aws", "awsx"} {
		plugin := filepath.Join(bin, "pulumi-resource-"+name)
		out, err := exec.Command("go", "build", "-o", plugin, "./mockprovider").CombinedOutput()
		require.NoError(t, err, "build mock provider: %s", out)
		cmd := exec.Command(filepath.Join(root, "bin", "pulumi"), "plugin", "install", "resource", name,
			map[string]string{"aws": "6.83.4", "awsx": "2.22.0"}[name], "--file", plugin)
		cmd.Env = os.Environ()
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		out, err = cmd.CombinedOutput()
		require.NoError(t, err, "pulumi plugin install: %s", out)
	}
	cli, err := auto.NewPulumiCommand(&auto.PulumiCommandOptions{Root: root, SkipVersionCheck: true})
	require.NoError(t, err)
	return &engine{opts: []auto.LocalWorkspaceOption{
		auto.Pulumi(cli),
		auto.PulumiHome(home),
		auto.EnvVars(env),
		auto.Project(workspace.Project{
			Name:    "inferstack",
			Runtime: workspace.NewProjectRuntimeInfo("go", nil),
			Backend: &workspace.ProjectBackend{URL: "file://" + backend},
		}),
	}}
}

func program(ctx *pulumi.Context) error {
	cfg, err := deploy.ParseConfig(ctx)
	if err != nil {
		return err
	}
	return deploy.Program(ctx, cfg)
}

// steps are the operations of one `pulumi up` or `destroy`, by URN.
type steps map[apitype.OpType][]string

func collect(ch <-chan events.EngineEvent, done chan<- steps) {
	s := steps{}
	for ev := range ch {
		if ev.ResourcePreEvent != nil {
			m := ev.ResourcePreEvent.Metadata
			if m.Type != "pulumi:pulumi:Stack" && !strings.HasPrefix(m.Type, "pulumi:providers:") {
				s[m.Op] = append(s[m.Op], m.URN)
			}
		}
	}
	for _, urns := range s {
		sort.Strings(urns)
	}
	done <- s
}

func up(t testing.TB, ctx context.Context, stack auto.Stack) (auto.UpResult, steps) {
	t.Helper()
	ch, done := make(chan events.EngineEvent), make(chan steps)
	go collect(ch, done)
	res, err := stack.Up(ctx, optup.EventStreams(ch))
	require.NoError(t, err)
	return res, <-done
}

func names(urns []string) []string {
	out := make([]string, len(urns))
	for i, u := range urns {
		out[i] = u[strings.LastIndex(u, "::")+2:]
	}
	sort.Strings(out)
	return out
}

// devStack is a new dev stack configured as Pulumi.dev.yaml says.
func devStack(t testing.TB, ctx context.Context) auto.Stack {
	t.Helper()
	e := newEngine(t)
	stack, err := auto.UpsertStackInlineSource(ctx, "dev", "inferstack", program, e.opts...)
	require.NoError(t, err)
	dir := t.TempDir()
	model, zip := filepath.Join(dir, "detector.onnx"), filepath.Join(dir, "bootstrap.zip")
	require.NoError(t, os.WriteFile(model, []byte("onnx"), 0o644))
	require.NoError(t, os.WriteFile(zip, []byte("zip"), 0o644))
	cfg := auto.ConfigMap{"aws:region": {Value: "us-east-1"}, "inferstack:modelPath": {Value: model}, "inferstack:dispatchZip": {Value: zip}}
	for k, v := range stackConfig(t, "dev") {
		cfg["inferstack:"+k] = auto.ConfigValue{Value: v}
	}
	require.NoError(t, stack.SetAllConfig(ctx, cfg))
	return stack
}

func TestDevStackLifecycleThroughTheEngine(t *testing.T) {
	ctx := t.Context()
	stack := devStack(t, ctx)

	// A dev stack goes up from scratch.
	res, s := up(t, ctx, stack)
	created := len(s[apitype.OpCreate])
	require.Equal(t, len(run(t, config(t, "dev", nil)).all), created, "the engine creates what the mocks saw registered")
	require.Equal(t, map[string]int{"create": created + 1}, *res.Summary.ResourceChanges, "everything created (and the stack)")
	require.Contains(t, res.Outputs["intakeQueueUrl"].Value, "https://sqs.us-east-1.amazonaws.com/")
	require.Contains(t, res.Outputs, "gpuQueueUrl")
	require.Contains(t, res.Outputs["dashboardUrl"].Value, "dashboards:name=inferstack-dev")
	require.Equal(t, "arn:aws:sns:us-east-1:123456789012:inferstack-events", res.Outputs["eventsTopic"].Value)
	// The upload triggers went through the mock's S3 rule (tests/notificationrule_test.go).
	require.Subset(t, names(s[apitype.OpCreate]), []string{"inferstack-intake-from-bucket", "inferstack-uploads"})

	// A second up changes nothing.
	res, s = up(t, ctx, stack)
	require.Empty(t, s[apitype.OpUpdate])
	require.Empty(t, s[apitype.OpCreate])
	require.Equal(t, map[string]int{"same": created + 1}, *res.Summary.ResourceChanges)

	// Switching tiers updates the tier parameter and nothing else.
	require.NoError(t, stack.SetConfig(ctx, "inferstack:tier", auto.ConfigValue{Value: "gpu"}))
	res, s = up(t, ctx, stack)
	require.Equal(t, []string{"inferstack-tier"}, names(s[apitype.OpUpdate]))
	require.Empty(t, s[apitype.OpCreate])
	require.Empty(t, s[apitype.OpDelete])

	// Disabling the gpu tier (back on cpu) deletes exactly the gpu tier, its
	// service before its cluster's association (the mock provider refuses the
	// reverse, as ECS does); what pointed at it (routing, dashboard,
	// permissions, the events topic's publishers) is updated.
	require.NoError(t, stack.SetAllConfig(ctx, auto.ConfigMap{"inferstack:tier": {Value: "cpu"}, "inferstack:gpuEnabled": {Value: "false"}}))
	_, s = up(t, ctx, stack)
	deleted := names(s[apitype.OpDelete])
	require.Len(t, deleted, 28, "the gpu component and its 27 resources")
	for _, n := range deleted {
		require.True(t, strings.HasPrefix(n, "inferstack-gpu"), "deleted %s, not of the gpu tier", n)
	}
	require.ElementsMatch(t, []string{"inferstack-tier", "inferstack-dispatch", "inferstack-dispatch-policy", "inferstack-dashboard",
		"inferstack-events-policy"},
		names(s[apitype.OpUpdate]))
	require.Empty(t, s[apitype.OpCreate])

	// Destroy removes the rest.
	ch, done := make(chan events.EngineEvent), make(chan steps)
	go collect(ch, done)
	dres, err := stack.Destroy(ctx, optdestroy.EventStreams(ch))
	require.NoError(t, err)
	s = <-done
	require.Len(t, s[apitype.OpDelete], created-28)
	require.Equal(t, "succeeded", dres.Summary.Result)
}

// BenchmarkPreview: `pulumi preview` of the dev stack, already up, through
// the real engine against the mock provider.
func BenchmarkPreview(b *testing.B) {
	ctx := b.Context()
	stack := devStack(b, ctx)
	up(b, ctx, stack)
	for b.Loop() {
		res, err := stack.Preview(ctx)
		require.NoError(b, err)
		require.Zero(b, res.ChangeSummary[apitype.OpUpdate]+res.ChangeSummary[apitype.OpCreate])
	}
}
