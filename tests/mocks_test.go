package tests

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/deploy"
	"github.com/inferstack/inferstack/deploy/settings"
	"github.com/inferstack/inferstack/tests/fakeaws"
)

// registered is one resource the program registered.
type registered struct {
	Type, Name, Parent string
	Custom             bool
	Deps               []string // URNs it depends on
	AliasParents       []string // the parent URNs its aliases name: where it was before a move
	Inputs             resource.PropertyMap
	Outputs            resource.PropertyMap
}

// mocks answers registrations with realistic computed outputs (ids, ARNs,
// URLs) and records every resource for the tests to inspect.
type mocks struct {
	mu  sync.Mutex
	all []registered
}

func (m *mocks) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	id, outs := fakeaws.Outputs(args.TypeToken, args.Name, args.Inputs)
	var aliasParents []string
	for _, a := range args.RegisterRPC.GetAliases() { // the provider SDK's own aliases (old type tokens) name no parent
		if parent := a.GetSpec().GetParentUrn(); parent != "" {
			aliasParents = append(aliasParents, parent)
		}
	}
	m.mu.Lock()
	m.all = append(m.all, registered{Type: args.TypeToken, Name: args.Name, Parent: args.RegisterRPC.GetParent(), Custom: args.Custom,
		Deps: args.RegisterRPC.GetDependencies(), AliasParents: aliasParents, Inputs: args.Inputs, Outputs: outs})
	m.mu.Unlock()
	return id, outs, nil
}

func (m *mocks) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	return args.Args, nil
}

// deployment is what one run of the program registered.
type deployment struct{ all []registered }

func (d deployment) ofType(typ string) []registered {
	var out []registered
	for _, r := range d.all {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

func (d deployment) named(name string) registered {
	for _, r := range d.all {
		if r.Name == name {
			return r
		}
	}
	panic("no resource named " + name)
}

func (d deployment) counts() map[string]int {
	c := map[string]int{}
	for _, r := range d.all {
		c[r.Type]++
	}
	return c
}

// run runs the program against the mocks.
func run(t *testing.T, cfg settings.Config) deployment {
	t.Helper()
	m := &mocks{}
	err := pulumi.RunErr(func(ctx *pulumi.Context) error { return deploy.Program(ctx, cfg) },
		pulumi.WithMocks("inferstack", cfg.Environment, m))
	require.NoError(t, err)
	return deployment{all: m.all}
}

// config returns the validated config of an environment, with stack
// settings as in Pulumi.<env>.yaml plus overrides, and a real model and zip.
func config(t *testing.T, env string, overrides map[string]string) settings.Config {
	t.Helper()
	dir := t.TempDir()
	model := filepath.Join(dir, "detector.onnx")
	zip := filepath.Join(dir, "bootstrap.zip")
	require.NoError(t, os.WriteFile(model, []byte("onnx"), 0o644))
	require.NoError(t, os.WriteFile(zip, []byte("zip"), 0o644))
	values := stackConfig(t, env)
	values["modelPath"], values["dispatchZip"] = model, zip
	for k, v := range overrides {
		values[k] = v
	}
	cfg, err := settings.Parse(env, values)
	require.NoError(t, err)
	return cfg
}
