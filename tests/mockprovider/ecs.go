package main

// ECS rules the real API enforces and a permissive mock would hide: a
// service may only use capacity providers associated with its cluster
// (PutClusterCapacityProviders, the ClusterCapacityProviders resource), an
// association cannot drop a provider a live service still uses, and a
// cluster with services cannot be deleted. The rules are pure methods on
// ecsState; ecsStore persists the state between provider processes, since
// the engine starts a new plugin for every `pulumi up` or `destroy`.

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// Errors worded as ECS words them, code first, so a test (or a person
// reading the engine's output) sees what AWS would answer.
//
//nolint:staticcheck // ST1005: AWS's own messages, verbatim, full stops included
var (
	ErrNotAssociated           = errors.New("InvalidParameterException: The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster. Associate the capacity provider with the cluster or specify a valid capacity provider and try again.")
	ErrProviderInUse           = errors.New("ResourceInUseException: The specified capacity provider is in use and cannot be removed.")
	ErrClusterContainsServices = errors.New("ClusterContainsServicesException: The Cluster cannot be deleted while Services are active.")
)

// ecsService is a live service as far as the rules care.
type ecsService struct {
	Cluster           string   `json:"cluster"` // cluster name
	CapacityProviders []string `json:"capacityProviders"`
}

// ecsState is what ECS knows: each cluster's associated capacity providers,
// by cluster name, and the live services by id (the id Create returned,
// which Update and Delete are given back).
type ecsState struct {
	Associations map[string][]string   `json:"associations"`
	Services     map[string]ecsService `json:"services"`
}

func newECSState() *ecsState {
	return &ecsState{Associations: map[string][]string{}, Services: map[string]ecsService{}}
}

// checkStrategy fails unless every provider of svc is associated with its cluster.
func (s *ecsState) checkStrategy(svc ecsService) error {
	for _, p := range svc.CapacityProviders {
		if !slices.Contains(s.Associations[svc.Cluster], p) {
			return fmt.Errorf("capacity provider %s, cluster %s: %w", p, svc.Cluster, ErrNotAssociated)
		}
	}
	return nil
}

// createService is CreateService.
func (s *ecsState) createService(id string, svc ecsService) error {
	if err := s.checkStrategy(svc); err != nil {
		return err
	}
	s.Services[id] = svc
	return nil
}

// updateService is UpdateService: the new strategy is checked as on create.
func (s *ecsState) updateService(id string, svc ecsService) error {
	return s.createService(id, svc)
}

// deleteService is DeleteService; ECS forgets a deleted service.
func (s *ecsState) deleteService(id string) {
	delete(s.Services, id)
}

// inUse fails if a live service on cluster names one of providers.
func (s *ecsState) inUse(cluster string, providers []string) error {
	for id, svc := range s.Services {
		if svc.Cluster != cluster {
			continue
		}
		for _, p := range svc.CapacityProviders {
			if slices.Contains(providers, p) {
				return fmt.Errorf("capacity provider %s, cluster %s, service %s: %w", p, cluster, id, ErrProviderInUse)
			}
		}
	}
	return nil
}

// putAssociation is PutClusterCapacityProviders: it replaces the cluster's
// list, and fails if that removes a provider a live service uses.
func (s *ecsState) putAssociation(cluster string, providers []string) error {
	var removed []string
	for _, p := range s.Associations[cluster] {
		if !slices.Contains(providers, p) {
			removed = append(removed, p)
		}
	}
	if err := s.inUse(cluster, removed); err != nil {
		return err
	}
	s.Associations[cluster] = slices.Clone(providers)
	return nil
}

// deleteAssociation is what deleting a ClusterCapacityProviders does: an
// empty PutClusterCapacityProviders.
func (s *ecsState) deleteAssociation(cluster string) error {
	if err := s.putAssociation(cluster, nil); err != nil {
		return err
	}
	delete(s.Associations, cluster)
	return nil
}

// deleteCluster is DeleteCluster; the cluster's association goes with it.
func (s *ecsState) deleteCluster(cluster string) error {
	for id, svc := range s.Services {
		if svc.Cluster == cluster {
			return fmt.Errorf("cluster %s, service %s: %w", cluster, id, ErrClusterContainsServices)
		}
	}
	delete(s.Associations, cluster)
	return nil
}

// clusterName is the name in a cluster ARN (arn:aws:ecs:R:A:cluster/NAME)
// or the name itself: a service's cluster may be either.
func clusterName(s string) string {
	if strings.HasPrefix(s, "arn:") {
		return s[strings.LastIndex(s, "/")+1:]
	}
	return s
}

// ecsStore keeps the ECS state from one provider process to the next.
type ecsStore struct {
	*store[ecsState]
}

func newECSStore(path string) *ecsStore {
	return &ecsStore{newStore(path, "ecs state", func(st *ecsState) {
		if st.Associations == nil {
			st.Associations = map[string][]string{}
		}
		if st.Services == nil {
			st.Services = map[string]ecsService{}
		}
	})}
}

// Resource types the rules apply to.
const (
	typeCluster     = "aws:ecs/cluster:Cluster"
	typeService     = "aws:ecs/service:Service"
	typeAssociation = "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"
)

// associationDelay is how long PutClusterCapacityProviders takes before the
// association holds. A service created without depending on its association
// then reliably runs its CreateService inside that window and fails, as it
// can on AWS, instead of passing or failing by the luck of scheduling.
const associationDelay = 300 * time.Millisecond

// create applies the creation of resource typ named name, with id and
// inputs, to the state; errors read as the AWS provider's would.
func (s *ecsStore) create(typ, name, id string, inputs resource.PropertyMap) error {
	switch typ {
	case typeService:
		svc := serviceOf(inputs)
		if err := s.update(func(st *ecsState) error { return st.createService(id, svc) }); err != nil {
			return fmt.Errorf("creating ECS Service (%s): operation error ECS: CreateService, %w", name, err)
		}
	case typeAssociation:
		time.Sleep(associationDelay)
		cluster, providers := associationOf(inputs)
		if err := s.update(func(st *ecsState) error { return st.putAssociation(cluster, providers) }); err != nil {
			return fmt.Errorf("creating ECS Cluster Capacity Providers (%s): operation error ECS: PutClusterCapacityProviders, %w", cluster, err)
		}
	}
	return nil
}

// change applies an update from olds (the old outputs) to news.
func (s *ecsStore) change(typ, id string, olds, news resource.PropertyMap) error {
	switch typ {
	case typeService:
		svc := serviceOf(news)
		if err := s.update(func(st *ecsState) error { return st.updateService(id, svc) }); err != nil {
			return fmt.Errorf("updating ECS Service (%s): operation error ECS: UpdateService, %w", id, err)
		}
	case typeAssociation:
		time.Sleep(associationDelay)
		oldCluster, _ := associationOf(olds)
		cluster, providers := associationOf(news)
		err := s.update(func(st *ecsState) error {
			if oldCluster != cluster { // moved: the old cluster loses its association
				if err := st.deleteAssociation(oldCluster); err != nil {
					return err
				}
			}
			return st.putAssociation(cluster, providers)
		})
		if err != nil {
			return fmt.Errorf("updating ECS Cluster Capacity Providers (%s): operation error ECS: PutClusterCapacityProviders, %w", cluster, err)
		}
	}
	return nil
}

// remove applies a deletion; olds are the resource's last outputs.
func (s *ecsStore) remove(typ, id string, olds resource.PropertyMap) error {
	switch typ {
	case typeService:
		return s.update(func(st *ecsState) error { st.deleteService(id); return nil })
	case typeAssociation:
		cluster, _ := associationOf(olds)
		if err := s.update(func(st *ecsState) error { return st.deleteAssociation(cluster) }); err != nil {
			return fmt.Errorf("deleting ECS Cluster Capacity Providers (%s): operation error ECS: PutClusterCapacityProviders, %w", cluster, err)
		}
	case typeCluster:
		cluster := str(olds["name"])
		if err := s.update(func(st *ecsState) error { return st.deleteCluster(cluster) }); err != nil {
			return fmt.Errorf("deleting ECS Cluster (%s): operation error ECS: DeleteCluster, %w", cluster, err)
		}
	}
	return nil
}

// str is a string property, seen through secrets and known outputs; "" otherwise.
func str(v resource.PropertyValue) string {
	switch {
	case v.IsSecret():
		return str(v.SecretValue().Element)
	case v.IsOutput() && v.OutputValue().Known:
		return str(v.OutputValue().Element)
	case v.IsString():
		return v.StringValue()
	}
	return ""
}

// elems is an array property's elements, seen through secrets and known outputs.
func elems(v resource.PropertyValue) []resource.PropertyValue {
	switch {
	case v.IsSecret():
		return elems(v.SecretValue().Element)
	case v.IsOutput() && v.OutputValue().Known:
		return elems(v.OutputValue().Element)
	case v.IsArray():
		return v.ArrayValue()
	}
	return nil
}

// serviceOf reads an aws:ecs/service:Service's cluster and strategy.
func serviceOf(props resource.PropertyMap) ecsService {
	svc := ecsService{Cluster: clusterName(str(props["cluster"]))}
	for _, e := range elems(props["capacityProviderStrategies"]) {
		if e.IsSecret() {
			e = e.SecretValue().Element
		}
		if e.IsObject() {
			if p := str(e.ObjectValue()["capacityProvider"]); p != "" {
				svc.CapacityProviders = append(svc.CapacityProviders, p)
			}
		}
	}
	return svc
}

// associationOf reads an aws:ecs/clusterCapacityProviders:ClusterCapacityProviders.
func associationOf(props resource.PropertyMap) (cluster string, providers []string) {
	for _, e := range elems(props["capacityProviders"]) {
		if p := str(e); p != "" {
			providers = append(providers, p)
		}
	}
	return clusterName(str(props["clusterName"])), providers
}
