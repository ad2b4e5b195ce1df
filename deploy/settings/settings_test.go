package settings

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/configerr"
)

func TestEventsProtocol(t *testing.T) {
	t.Parallel()
	for endpoint, want := range map[string]string{
		"ops@example.com": "email",
		"arn:aws:sqs:us-east-1:123456789012:job-events":     "sqs",
		"arn:aws-cn:sqs:cn-north-1:123456789012:job-events": "sqs",
		"arn:aws:sns:us-east-1:123456789012:topic":          "",
		"arn:aws:sqs:us-east-1:123456789012":                "",
		"arn:aws:sqs::123456789012:q":                       "",
		"ops at example.com":                                "",
		"":                                                  "",
	} {
		got, err := EventsProtocol(endpoint)
		require.Equal(t, want, got, endpoint)
		require.Equal(t, want == "", err != nil, "%q: %v", endpoint, err)
	}
}

// Upload triggers are on and the events topic has no subscriber unless the
// stack says otherwise.
func TestEventsDefaults(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	values := func(extra map[string]string) map[string]string {
		v := map[string]string{"modelPath": dir, "dispatchZip": dir}
		for k, e := range extra {
			v[k] = e
		}
		return v
	}
	c, err := Parse("dev", values(nil))
	require.NoError(t, err)
	require.True(t, c.UploadTriggers)
	require.Empty(t, c.EventsSubscription)

	c, err = Parse("dev", values(map[string]string{"uploadTriggers": "false", "eventsSubscription": "ops@example.com"}))
	require.NoError(t, err)
	require.False(t, c.UploadTriggers)
	require.Equal(t, Subscription{Protocol: "email", Endpoint: "ops@example.com"}, c.EventsSubscription)
}

// A key the stack sets that no setting declares is refused, naming the
// nearest declared key: a misspelt key must not run with the default.
func TestUndeclaredKeyNamesTheNearest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for key, want := range map[string]string{
		"cpuMaxTask":        "cpuMaxTasks",
		"cpumaxtasks":       "cpuMaxTasks",
		"visibilityTimout":  "visibilityTimeout",
		"gpuTaskMem":        "gpuTaskMemory",
		"subnetIDs":         "subnetIds",
		"availabilityZone":  "availabilityZones",
		"uploadTrigger":     "uploadTriggers",
		"eventSubscription": "eventsSubscription",
	} {
		_, err := Parse("dev", map[string]string{"modelPath": dir, "dispatchZip": dir, key: "1"})
		var ce *configerr.Error
		require.ErrorAs(t, err, &ce, key)
		require.Equal(t, Namespace+":"+key, ce.Key)
		require.ErrorContains(t, err, "did you mean "+Namespace+":"+want+"?")
	}
}

// Every key sets a field of its own, and every field of Config but the
// stack's name is set by a key.
func TestEveryKeyBindsItsOwnField(t *testing.T) {
	t.Parallel()
	var c Config
	seen := map[any]string{}
	for _, k := range Keys {
		p := k.bind(&c)
		other, dup := seen[p]
		require.False(t, dup, "%s and %s set the same field", k.Name, other)
		seen[p] = k.Name
		require.NoError(t, k.set(&Config{}, k.Default), "%s's default", k.Name)
	}
	fields := 0
	var count func(reflect.Type)
	count = func(t reflect.Type) {
		for f := range t.Fields() {
			if f.Anonymous || f.Type == reflect.TypeFor[TierConfig]() {
				count(f.Type)
				continue
			}
			fields++
		}
	}
	count(reflect.TypeFor[Config]()) // CPU and GPU: a TierConfig each
	require.Equal(t, len(Keys)+1, fields, "Config's fields: the keys and Environment")
}

// `inferstack local up` reads a stack file: a misspelt key there is refused
// by name, not run with the default.
func TestStackFileWithAMisspeltKeyIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "Pulumi.dev.yaml")
	require.NoError(t, os.WriteFile(file, []byte("config:\n  aws:region: us-east-1\n  inferstack:modelPath: "+dir+
		"\n  inferstack:dispatchZip: "+dir+"\n  inferstack:cpuInstanceTypes:\n    - c7i.large\n  inferstack:cpuMaxTask: 8\n"), 0o644))
	values, err := ParseStackFile(file)
	require.NoError(t, err)
	require.Equal(t, `["c7i.large"]`, values["cpuInstanceTypes"])
	_, err = Parse("dev", values)
	require.EqualError(t, err, "inferstack:cpuMaxTask: no such setting; did you mean inferstack:cpuMaxTasks?")

	delete(values, "cpuMaxTask")
	c, err := Parse("dev", values)
	require.NoError(t, err)
	require.Equal(t, []string{"c7i.large"}, c.CPU.InstanceTypes)
}
