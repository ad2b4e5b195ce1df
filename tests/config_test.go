package tests

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/inferstack/inferstack/deploy/settings"
	"github.com/inferstack/inferstack/internal/configerr"
)

var update = flag.Bool("update", false, "rewrite Pulumi.yaml from settings.Keys")

// stackConfig reads ../Pulumi.<env>.yaml as `pulumi config` would hand it to the program.
func stackConfig(t testing.TB, env string) map[string]string {
	t.Helper()
	values, err := settings.ParseStackFile("../Pulumi." + env + ".yaml")
	require.NoError(t, err)
	return values
}

// Pulumi.yaml declares every key with the type, default and description the
// program uses; `go test ./tests -run PulumiYAML -update` rewrites it.
func TestPulumiYAMLDeclaresEveryKey(t *testing.T) {
	var b strings.Builder
	b.WriteString("# Generated from deploy/settings.Keys: go test ./tests -run PulumiYAML -update\n")
	b.WriteString("name: inferstack\nruntime: go\ndescription: Batch ML inference on AWS that scales CPU and GPU workers from zero and back.\nconfig:\n")
	for _, k := range settings.Keys {
		fmt.Fprintf(&b, "  %s:\n    type: %s\n", k.Name, k.Type)
		if k.Type == "array" {
			b.WriteString("    items:\n      type: string\n")
		}
		switch k.Type {
		case "string":
			fmt.Fprintf(&b, "    default: %q\n", k.Default)
		default:
			fmt.Fprintf(&b, "    default: %s\n", k.Default)
		}
		fmt.Fprintf(&b, "    description: %q\n", k.Description)
	}
	if *update {
		require.NoError(t, os.WriteFile("../Pulumi.yaml", []byte(b.String()), 0o644))
	}
	data, err := os.ReadFile("../Pulumi.yaml")
	require.NoError(t, err)
	require.Equal(t, b.String(), string(data), "Pulumi.yaml is out of date: go test ./tests -run PulumiYAML -update")

	// And it is valid YAML whose defaults parse as the program reads them.
	var project struct {
		Name    string `yaml:"name"`
		Runtime string `yaml:"runtime"`
		Config  map[string]struct {
			Type    string `yaml:"type"`
			Default any    `yaml:"default"`
		} `yaml:"config"`
	}
	require.NoError(t, yaml.Unmarshal(data, &project))
	require.Equal(t, "inferstack", project.Name)
	require.Len(t, project.Config, len(settings.Keys))
}

func TestEveryStackConfigIsValid(t *testing.T) {
	t.Parallel()
	for _, env := range []string{"dev", "prod"} {
		values := stackConfig(t, env)
		for k := range values {
			found := false
			for _, key := range settings.Keys {
				found = found || key.Name == k
			}
			require.True(t, found, "Pulumi.%s.yaml sets undeclared key %s", env, k)
		}
		config(t, env, nil) // validates
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	cases := map[string]map[string]string{
		"tier":               {"tier": "tpu"},
		"gpuEnabled":         {"gpuEnabled": "maybe"},
		"cpuMaxTasks":        {"cpuMaxTasks": "0"},
		"gpuMaxTasks":        {"gpuIdleMinutes": "0"},
		"logRetentionDays":   {"logRetentionDays": "10"},
		"subnetIds":          {"vpcId": "vpc-1"},
		"tierCacheTtl":       {"tierCacheTtl": "soon"},
		"cpuInstanceTypes":   {"cpuInstanceTypes": "c7i.large"},
		"dispatchZip":        {"dispatchZip": "/nonexistent/bootstrap.zip"},
		"modelPath":          {"modelPath": "/nonexistent/model.onnx"},
		"alarmEmail":         {"alarmEmail": "nobody"},
		"uploadTriggers":     {"uploadTriggers": "sometimes"},
		"keep":               {"keep": "id,,ts"},
		"eventsSubscription": {"eventsSubscription": "arn:aws:sns:us-east-1:123456789012:topic"},
		"availabilityZones":  {"availabilityZones": "0"},
		"stopTimeout":        {"stopTimeout": "4"}, // the worker would get -1 s
		"visibilityTimeout":  {"visibilityTimeout": "43201"},
		"maxReceives":        {"maxReceives": "1001"},
		// A dead-lettered message keeps its first enqueue time: a queue
		// keeping messages as long as its DLQ would lose them there.
		"queueRetentionDays": {"queueRetentionDays": "14"},
		"cpuImage":           {"buildImages": "false"},
		"gpuImage": {"buildImages": "false", "cpuImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/w@sha256:" + strings.Repeat("0", 64),
			"gpuImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/w:gpu"}, // a tag: nothing says it was pushed
	}
	for key, values := range cases {
		t.Run(key, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			all := map[string]string{"modelPath": dir, "dispatchZip": dir}
			for k, v := range values {
				all[k] = v
			}
			_, err := settings.Parse("dev", all)
			var ce *configerr.Error
			require.ErrorAs(t, err, &ce)
			require.Equal(t, settings.Namespace+":"+key, ce.Key, "error: %v", err)
			require.Contains(t, err.Error(), "inferstack:"+key)
		})
	}
	// Stack settings the tests do not override still hold.
	_, err := settings.Parse("dev", map[string]string{"tier": "gpu", "gpuEnabled": "false", "modelPath": ".", "dispatchZip": "."})
	require.ErrorContains(t, err, "gpuEnabled is false")
}
