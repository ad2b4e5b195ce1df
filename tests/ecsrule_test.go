package tests

// These tests check, through the real engine, that the mock provider refuses
// what ECS refuses about capacity providers (tests/mockprovider/ecs.go), so
// that a program which misorders its ECS resources fails here as it would on
// AWS. Each runs a small inline program: a cluster, capacity providers "a"
// and "b", maybe their association with the cluster, and a service whose
// strategy names "a".
//
// They do not run in parallel: on two busy cores a parallel engine could
// start a service's creation so late that it misses the association's delay
// and passes by chance.

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ecs"
	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/events"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/tests/fakeaws"
)

// What ECS answers, as the mock words it.
const (
	notAssociated = "InvalidParameterException: The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster."
	inUse         = "ResourceInUseException: The specified capacity provider is in use and cannot be removed."
)

// ecsProgram is the test program: associate lists the capacity providers
// put on the cluster (none: no association resource), and dependsOn makes
// the service wait for the association.
func ecsProgram(associate []string, dependsOn bool) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		cluster, err := ecs.NewCluster(ctx, "ecsrule-cluster", &ecs.ClusterArgs{})
		if err != nil {
			return err
		}
		providers := map[string]*ecs.CapacityProvider{}
		for _, p := range []string{"a", "b"} {
			providers[p], err = ecs.NewCapacityProvider(ctx, "ecsrule-"+p, &ecs.CapacityProviderArgs{
				AutoScalingGroupProvider: &ecs.CapacityProviderAutoScalingGroupProviderArgs{
					AutoScalingGroupArn: pulumi.String("arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:uuid:autoScalingGroupName/ecsrule-" + p),
				},
			})
			if err != nil {
				return err
			}
		}
		var opts []pulumi.ResourceOption
		if associate != nil {
			var names pulumi.StringArray
			for _, p := range associate {
				names = append(names, providers[p].Name)
			}
			assoc, err := ecs.NewClusterCapacityProviders(ctx, "ecsrule-providers", &ecs.ClusterCapacityProvidersArgs{
				ClusterName: cluster.Name, CapacityProviders: names,
			})
			if err != nil {
				return err
			}
			if dependsOn {
				opts = append(opts, pulumi.DependsOn([]pulumi.Resource{assoc}))
			}
		}
		_, err = ecs.NewService(ctx, "ecsrule-service", &ecs.ServiceArgs{
			Cluster: cluster.Arn,
			CapacityProviderStrategies: ecs.ServiceCapacityProviderStrategyArray{&ecs.ServiceCapacityProviderStrategyArgs{
				CapacityProvider: providers["a"].Name, Weight: pulumi.Int(1),
			}},
		}, opts...)
		return err
	}
}

// ecsStack is a new stack running prog, whose mock provider keeps the ECS
// state in a file of its own, so that it lasts from one `up` to the next.
func ecsStack(t *testing.T, prog pulumi.RunFunc) auto.Stack {
	t.Helper()
	ctx := t.Context()
	e := newEngine(t)
	stack, err := auto.UpsertStackInlineSource(ctx, "ecsrule", "inferstack", prog, e.opts...)
	require.NoError(t, err)
	// SetEnvVar adds to the workspace's variables; a second auto.EnvVars
	// option would replace newEngine's.
	stack.Workspace().SetEnvVar(fakeaws.ECSStateEnv, filepath.Join(t.TempDir(), "ecs-state.json"))
	require.NoError(t, stack.SetConfig(ctx, "aws:region", auto.ConfigValue{Value: "us-east-1"}))
	return stack
}

func TestECSRuleServiceWithoutAssociationFails(t *testing.T) {
	stack := ecsStack(t, ecsProgram(nil, false))
	_, err := stack.Up(t.Context())
	require.Error(t, err)
	require.Contains(t, err.Error(), "creating ECS Service (ecsrule-service)")
	require.Contains(t, err.Error(), notAssociated)
}

// The association exists but the service does not wait for it: the engine
// creates both at once and the service is refused, since an association
// holds only once PutClusterCapacityProviders returns.
func TestECSRuleServiceNotAfterAssociationFails(t *testing.T) {
	stack := ecsStack(t, ecsProgram([]string{"a", "b"}, false))
	_, err := stack.Up(t.Context())
	require.Error(t, err)
	require.Contains(t, err.Error(), "creating ECS Service (ecsrule-service)")
	require.Contains(t, err.Error(), notAssociated)
}

// deleted is the order in which the engine finished deleting resources, by name.
func deleted(ch <-chan events.EngineEvent, done chan<- []string) {
	var order []string
	for ev := range ch {
		if ev.ResOutputsEvent != nil && ev.ResOutputsEvent.Metadata.Op == apitype.OpDelete {
			order = append(order, names([]string{ev.ResOutputsEvent.Metadata.URN})[0])
		}
	}
	done <- order
}

func TestECSRuleServiceAfterAssociationUpAndDestroy(t *testing.T) {
	ctx := t.Context()
	stack := ecsStack(t, ecsProgram([]string{"a", "b"}, true))
	_, s := up(t, ctx, stack)
	require.ElementsMatch(t, []string{"ecsrule-cluster", "ecsrule-a", "ecsrule-b", "ecsrule-providers", "ecsrule-service"}, names(s[apitype.OpCreate]))

	// Destroy runs in a new provider process, which knows the service from
	// the state file: the service goes before the association (else
	// ResourceInUse), and both before the cluster (else ClusterContainsServices).
	ch, done := make(chan events.EngineEvent), make(chan []string)
	go deleted(ch, done)
	res, err := stack.Destroy(ctx, optdestroy.EventStreams(ch))
	require.NoError(t, err)
	require.Equal(t, "succeeded", res.Summary.Result)
	order := <-done
	at := func(n string) int {
		i := slices.Index(order, n)
		require.NotEqual(t, -1, i, "%s deleted; deleted %v", n, order)
		return i
	}
	require.Less(t, at("ecsrule-service"), at("ecsrule-providers"), order)
	require.Less(t, at("ecsrule-providers"), at("ecsrule-cluster"), order)
}

func TestECSRuleRemovingProviderInUseFails(t *testing.T) {
	ctx := t.Context()
	stack := ecsStack(t, ecsProgram([]string{"a", "b"}, true))
	up(t, ctx, stack)

	// Dropping "a", which the service uses, from the cluster is refused.
	stack.Workspace().SetProgram(ecsProgram([]string{"b"}, true))
	_, err := stack.Up(ctx)
	require.Error(t, err)
	require.Contains(t, err.Error(), "updating ECS Cluster Capacity Providers (ecsrule-cluster)")
	require.Contains(t, err.Error(), inUse)

	// Dropping "b", which no service uses, is not.
	stack.Workspace().SetProgram(ecsProgram([]string{"a"}, true))
	_, s := up(t, ctx, stack)
	require.Equal(t, []string{"ecsrule-providers"}, names(s[apitype.OpUpdate]))
}
