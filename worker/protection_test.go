package worker

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// The agent's bodies as the ECS developer guide shows them ("Task scale-in
// protection endpoint").
const (
	protectedBody   = `{"protection":{"ExpirationDate":"2026-11-28T12:15:00Z","ProtectionEnabled":true,"TaskArn":"arn:aws:ecs:us-east-1:123456789012:task/c/1234"}}`
	unprotectedBody = `{"protection":{"ExpirationDate":null,"ProtectionEnabled":false,"TaskArn":"arn:aws:ecs:us-east-1:123456789012:task/c/1234"}}`
	failureBody     = `{"failure":{"Arn":"arn:aws:ecs:us-east-1:123456789012:task/c/1234","Detail":null,"Reason":"TASK_NOT_VALID"}}`
	errorBody       = `{"error":{"Arn":"arn:aws:ecs:us-east-1:123456789012:task/c/1234","Code":"AccessDeniedException","Message":"User is not authorized to perform ecs:UpdateTaskProtection"}}`
)

func TestProtectionReadsTheAgentsAnswer(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		on      bool
		status  int
		body    string
		wantErr []string // substrings of the error; none: success
	}{
		{"protected", true, 200, protectedBody, nil},
		{"unprotected", false, 200, unprotectedBody, nil},
		{"refused by ECS with 200", true, 200, failureBody, []string{"refused", "TASK_NOT_VALID"}},
		{"refused with a detail", true, 200, `{"failure":{"Arn":"a","Detail":"task is stopping","Reason":"TASK_NOT_VALID"}}`,
			[]string{"TASK_NOT_VALID", "task is stopping"}},
		{"error with 400", true, 400, errorBody, []string{"400 Bad Request", "AccessDeniedException", "not authorized"}},
		{"error with 500", false, 500, `{"error":{"Code":"ServerException","Message":"try again"}}`, []string{"500", "ServerException", "try again"}},
		{"5xx without a body", true, 503, ``, []string{"503 Service Unavailable"}},
		{"garbage body", true, 200, `<html>proxy</html>`, []string{"unreadable response", "<html>"}},
		{"empty body", true, 200, ``, []string{"unreadable response"}},
		{"no protection member", true, 200, `{}`, []string{"without protection"}},
		{"not in the state asked for", true, 200, unprotectedBody, []string{"asked for true", "says false"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got atomic.Value
			agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				got.Store(r.Method + " " + r.URL.Path + " " + r.Header.Get("Content-Type") + " " + string(body))
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			}))
			defer agent.Close()
			p := protection{uri: agent.URL, client: agent.Client()}
			err := p.set(t.Context(), tc.on)
			want := `PUT /task-protection/v1/state application/json {"ProtectionEnabled":false}`
			if tc.on {
				want = `PUT /task-protection/v1/state application/json {"ExpiresInMinutes":15,"ProtectionEnabled":true}`
			}
			require.Equal(t, want, got.Load())
			if tc.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, s := range tc.wantErr {
				require.Contains(t, err.Error(), s)
			}
		})
	}
}

func TestProtectionOutsideECSDoesNothing(t *testing.T) {
	t.Parallel()
	p := protection{uri: "", client: nil} // no ECS_AGENT_URI; a request would panic on the nil client
	require.NoError(t, p.set(t.Context(), true))
	require.NoError(t, p.set(t.Context(), false))
}

func TestProtectionUnreachableAgent(t *testing.T) {
	t.Parallel()
	agent := httptest.NewServer(http.NotFoundHandler())
	uri := agent.URL
	agent.Close()
	err := (&protection{uri: uri, client: &http.Client{}}).set(t.Context(), true)
	require.ErrorContains(t, err, "task protection")
}
