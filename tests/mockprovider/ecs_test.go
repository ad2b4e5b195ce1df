package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/stretchr/testify/require"
)

// op is one ECS call on a state.
type op func(*ecsState) error

func service(id, cluster string, providers ...string) op {
	return func(s *ecsState) error {
		return s.createService(id, ecsService{Cluster: cluster, CapacityProviders: providers})
	}
}
func updateService(id, cluster string, providers ...string) op {
	return func(s *ecsState) error {
		return s.updateService(id, ecsService{Cluster: cluster, CapacityProviders: providers})
	}
}
func deleteService(id string) op {
	return func(s *ecsState) error { s.deleteService(id); return nil }
}
func associate(cluster string, providers ...string) op {
	return func(s *ecsState) error { return s.putAssociation(cluster, providers) }
}
func dissociate(cluster string) op {
	return func(s *ecsState) error { return s.deleteAssociation(cluster) }
}
func deleteCluster(cluster string) op {
	return func(s *ecsState) error { return s.deleteCluster(cluster) }
}

func TestECSRules(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ops  []op  // all but the last must succeed
		want error // what the last returns
	}{
		{"service with no strategy needs no association", []op{service("s", "c")}, nil},
		{"service before any association", []op{service("s", "c", "cp")}, ErrNotAssociated},
		{"service after its association", []op{associate("c", "cp"), service("s", "c", "cp")}, nil},
		{"association of another cluster", []op{associate("other", "cp"), service("s", "c", "cp")}, ErrNotAssociated},
		{"one provider of two not associated", []op{associate("c", "a"), service("s", "c", "a", "b")}, ErrNotAssociated},
		{"update to an unassociated provider", []op{associate("c", "a"), service("s", "c", "a"), updateService("s", "c", "b")}, ErrNotAssociated},
		{"update to an associated provider", []op{associate("c", "a", "b"), service("s", "c", "a"), updateService("s", "c", "b")}, nil},
		{"removing a provider in use", []op{associate("c", "a", "b"), service("s", "c", "a"), associate("c", "b")}, ErrProviderInUse},
		{"removing a provider not in use", []op{associate("c", "a", "b"), service("s", "c", "a"), associate("c", "a")}, nil},
		{"removing a provider no longer in use", []op{associate("c", "a", "b"), service("s", "c", "a"), updateService("s", "c", "b"), associate("c", "b")}, nil},
		{"a service on another cluster does not hold it", []op{associate("c", "a"), associate("d", "a"), service("s", "d", "a"), associate("c")}, nil},
		{"deleting an association in use", []op{associate("c", "a"), service("s", "c", "a"), dissociate("c")}, ErrProviderInUse},
		{"deleting an association after its service", []op{associate("c", "a"), service("s", "c", "a"), deleteService("s"), dissociate("c")}, nil},
		{"deleting an association never made", []op{dissociate("c")}, nil},
		{"deleting a cluster with a service", []op{associate("c", "a"), service("s", "c", "a"), deleteCluster("c")}, ErrClusterContainsServices},
		{"deleting a cluster with a service of no strategy", []op{service("s", "c"), deleteCluster("c")}, ErrClusterContainsServices},
		{"deleting a cluster after its services", []op{associate("c", "a"), service("s", "c", "a"), deleteService("s"), deleteCluster("c")}, nil},
		{"deleting a cluster with services on others", []op{service("s", "d"), deleteCluster("c")}, nil},
		{"a deleted cluster's association is gone", []op{associate("c", "a"), deleteCluster("c"), service("s", "c", "a")}, ErrNotAssociated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newECSState()
			last := len(tc.ops) - 1
			for _, o := range tc.ops[:last] {
				require.NoError(t, o(s))
			}
			err := tc.ops[last](s)
			if tc.want == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.want)
			}
		})
	}
}

func TestClusterName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"arn:aws:ecs:us-east-1:123456789012:cluster/inferstack-cluster": "inferstack-cluster",
		"inferstack-cluster": "inferstack-cluster",
		"":                   "",
	} {
		require.Equal(t, want, clusterName(in), in)
	}
}

// TestPropertiesAsTheEngineSendsThem: the cluster, strategy and association
// are read from property maps, through secrets and known outputs.
func TestPropertiesAsTheEngineSendsThem(t *testing.T) {
	t.Parallel()
	svc := resource.NewPropertyMapFromMap(map[string]any{
		"cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/c",
		"capacityProviderStrategies": []any{
			map[string]any{"capacityProvider": "a", "weight": 1},
			map[string]any{"capacityProvider": "b"},
		},
	})
	require.Equal(t, ecsService{Cluster: "c", CapacityProviders: []string{"a", "b"}}, serviceOf(svc))
	require.Equal(t, ecsService{}, serviceOf(resource.PropertyMap{}))

	assoc := resource.PropertyMap{
		"clusterName": resource.MakeSecret(resource.NewStringProperty("c")),
		"capacityProviders": resource.NewOutputProperty(resource.Output{Known: true, Element: resource.NewArrayProperty(
			[]resource.PropertyValue{resource.NewStringProperty("a"), resource.MakeSecret(resource.NewStringProperty("b"))})}),
	}
	cluster, providers := associationOf(assoc)
	require.Equal(t, "c", cluster)
	require.Equal(t, []string{"a", "b"}, providers)
}

// TestStoreRefusalChangesNothing: a refused call leaves the state as it was,
// in memory and in a file.
func TestStoreRefusalChangesNothing(t *testing.T) {
	t.Parallel()
	for name, path := range map[string]string{"memory": "", "file": filepath.Join(t.TempDir(), "ecs.json")} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newECSStore(path)
			require.NoError(t, s.update(associate("c", "a", "b")))
			require.NoError(t, s.update(service("s", "c", "a")))
			// Deletes the association of d, then is refused on c.
			err := s.update(func(st *ecsState) error {
				require.NoError(t, st.deleteAssociation("c2"))
				st.Associations["d"] = []string{"x"}
				return st.putAssociation("c", []string{"b"})
			})
			require.ErrorIs(t, err, ErrProviderInUse)
			st, err := s.load()
			require.NoError(t, err)
			require.Equal(t, map[string][]string{"c": {"a", "b"}}, st.Associations)
			require.Equal(t, map[string]ecsService{"s": {Cluster: "c", CapacityProviders: []string{"a"}}}, st.Services)
		})
	}
}

// TestStoreSurvivesTheProcess: a second store on the same file (the next
// provider process) sees what the first saved, and no temporary file is left.
func TestStoreSurvivesTheProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "ecs.json")
	first := newECSStore(path)
	require.NoError(t, first.create(typeService, "s", "s-id", resource.NewPropertyMapFromMap(map[string]any{"cluster": "c"})))
	require.ErrorIs(t, first.create(typeService, "s2", "s2-id", resource.NewPropertyMapFromMap(map[string]any{
		"cluster": "c", "capacityProviderStrategies": []any{map[string]any{"capacityProvider": "a"}},
	})), ErrNotAssociated)
	require.NoError(t, first.create(typeAssociation, "assoc", "assoc-id", resource.NewPropertyMapFromMap(map[string]any{
		"clusterName": "c", "capacityProviders": []any{"a"},
	})))

	next := newECSStore(path)
	cluster := resource.NewPropertyMapFromMap(map[string]any{"name": "c"})
	err := next.remove(typeCluster, "c-id", cluster)
	require.ErrorIs(t, err, ErrClusterContainsServices)
	require.Contains(t, err.Error(), "deleting ECS Cluster (c)")
	require.NoError(t, next.remove(typeService, "s-id", nil))
	require.NoError(t, next.remove(typeCluster, "c-id", cluster))

	st, err := newECSStore(path).load()
	require.NoError(t, err)
	require.Empty(t, st.Services)
	require.Empty(t, st.Associations)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "only the state file")
}

// TestAssociationTakesTime: PutClusterCapacityProviders holds only when it
// returns, so a service created meanwhile is refused.
func TestAssociationTakesTime(t *testing.T) {
	t.Parallel()
	s := newECSStore("")
	done := make(chan error)
	go func() {
		done <- s.create(typeAssociation, "assoc", "assoc-id", resource.NewPropertyMapFromMap(map[string]any{
			"clusterName": "c", "capacityProviders": []any{"a"},
		}))
	}()
	svc := resource.NewPropertyMapFromMap(map[string]any{
		"cluster": "c", "capacityProviderStrategies": []any{map[string]any{"capacityProvider": "a"}},
	})
	time.Sleep(associationDelay / 3)
	require.ErrorIs(t, s.create(typeService, "s", "s-id", svc), ErrNotAssociated)
	require.NoError(t, <-done)
	require.NoError(t, s.create(typeService, "s", "s-id", svc))
}
