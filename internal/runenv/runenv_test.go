package runenv

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/configerr"
)

func getter(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

// filled sets every field of v to a distinct non-zero value, so a field
// that Env writes and the parser does not read (or the reverse) shows.
func filled(t *testing.T, v any) {
	t.Helper()
	s := reflect.ValueOf(v).Elem()
	for i := range s.NumField() {
		f := s.Field(i)
		switch f.Interface().(type) {
		case string:
			if f.String() == "" {
				f.SetString(s.Type().Field(i).Name + "-value")
			}
		case time.Duration:
			f.SetInt(int64(time.Duration(i+7) * time.Second))
		case int, int64:
			f.SetInt(int64(i + 2))
		case bool:
			f.SetBool(true)
		case []string:
			f.Set(reflect.ValueOf([]string{s.Type().Field(i).Name + "-a", s.Type().Field(i).Name + "-b"}))
		default:
			t.Fatalf("field %s: add its type to filled", s.Type().Field(i).Name)
		}
	}
}

func TestWorkerRoundTripsEveryField(t *testing.T) {
	w := Worker{Tier: "gpu", Device: "auto"}
	filled(t, &w)
	got, err := ParseWorker(getter(w.Env()))
	require.NoError(t, err)
	require.Equal(t, w, got)
}

func TestDispatchRoundTripsEveryField(t *testing.T) {
	d := Dispatch{InputPrefix: "inputs/"}
	filled(t, &d)
	got, err := ParseDispatch(getter(d.Env()))
	require.NoError(t, err)
	require.Equal(t, d, got)

	// A disabled gpu tier: no queue, and that is valid.
	d.GPUQueueURL = ""
	require.NotContains(t, d.Env(), EnvGPUQueueURL)
	got, err = ParseDispatch(getter(d.Env()))
	require.NoError(t, err)
	require.Equal(t, d, got)
}

func TestEveryDeployedVariableIsRequired(t *testing.T) {
	w := Worker{Tier: "cpu", Device: "cpu"}
	filled(t, &w)
	for key := range w.Env() {
		env := w.Env()
		delete(env, key)
		_, err := ParseWorker(getter(env))
		var e *configerr.Error
		require.ErrorAs(t, err, &e, key)
		require.Equal(t, key, e.Key)
		require.True(t, errors.Is(err, ErrRequired), key)
	}
	d := Dispatch{InputPrefix: "inputs/"}
	filled(t, &d)
	for key := range d.Env() {
		if key == EnvGPUQueueURL || key == EnvKeep { // optional: empty means none
			continue
		}
		env := d.Env()
		delete(env, key)
		_, err := ParseDispatch(getter(env))
		require.ErrorIs(t, err, ErrRequired, key)
	}
}

func TestParsersEnforceAWSLimits(t *testing.T) {
	w := Worker{Tier: "cpu", Device: "cpu", Visibility: time.Minute, MaxReceives: 5, StopTimeout: 105 * time.Second}
	filled(t, &w)
	for key, value := range map[string]string{
		EnvVisibility:  "12h0m1s", // SQS: at most 43,200 s
		EnvMaxReceives: "1001",    // redrive: at most 1,000
		EnvStopTimeout: "-3s",     // a stop timeout of 2 s less the margin
		EnvTier:        "tpu",
	} {
		env := w.Env()
		env[key] = value
		_, err := ParseWorker(getter(env))
		var e *configerr.Error
		require.ErrorAs(t, err, &e, key)
		require.Equal(t, key, e.Key)
	}
	require.Equal(t, 105*time.Second, WorkerStopTimeout(110))
}

func TestDispatchEnvAvoidsLambdaReservedKeys(t *testing.T) {
	d := Dispatch{InputPrefix: "inputs/"}
	filled(t, &d)
	for _, k := range LambdaReserved {
		require.NotContains(t, d.Env(), k, "Lambda refuses a function configuration that sets %s", k)
	}
}

func TestList(t *testing.T) {
	require.Equal(t, []string{"A=1", "B=2"}, List(map[string]string{"B": "2", "A": "1"}))
}
