package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// protection sets the task's ECS scale-in protection through the agent's
// task protection endpoint ($ECS_AGENT_URI/task-protection/v1/state), so a
// scale-in never stops a task mid-job. Outside ECS it does nothing.
type protection struct {
	uri    string
	client *http.Client
}

// protectionMinutes is how long one protection lasts; the heartbeat renews
// it, so a crashed worker's protection lapses by itself.
const protectionMinutes = 15

func (p *protection) set(ctx context.Context, on bool) error {
	if p.uri == "" {
		return nil
	}
	body := map[string]any{"ProtectionEnabled": on}
	if on {
		body["ExpiresInMinutes"] = protectionMinutes
	}
	data, _ := json.Marshal(body)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, p.uri+"/task-protection/v1/state", bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("task protection: %w", err)
	}
	defer resp.Body.Close() //nolint:errcheck // read below
	data, err = io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return fmt.Errorf("task protection: read response: %w", err)
	}
	return protectionResult(resp.Status, resp.StatusCode, data, on)
}

// protectionResponse is the agent's answer (ECS developer guide, "Task
// scale-in protection endpoint"): protection on success; failure when ECS
// refused, with HTTP 200; error with a 4xx or 5xx status.
type protectionResponse struct {
	Protection *struct {
		ProtectionEnabled bool
		ExpirationDate    *string
		TaskArn           string
	} `json:"protection"`
	Failure *struct {
		Arn    string
		Reason string
		Detail *string
	} `json:"failure"`
	Error *struct {
		Arn     string
		Code    string
		Message string
	} `json:"error"`
}

// protectionResult reads the agent's answer: only a protection in the
// requested state is success, whatever the HTTP status says.
func protectionResult(status string, code int, body []byte, on bool) error {
	var r protectionResponse
	decodeErr := json.Unmarshal(body, &r)
	switch {
	case r.Error != nil:
		return fmt.Errorf("task protection: %s: %s: %s", status, r.Error.Code, r.Error.Message)
	case r.Failure != nil:
		detail := ""
		if r.Failure.Detail != nil && *r.Failure.Detail != "" {
			detail = ": " + *r.Failure.Detail
		}
		return fmt.Errorf("task protection refused: %s%s", r.Failure.Reason, detail)
	case code != http.StatusOK:
		return fmt.Errorf("task protection: %s", status)
	case decodeErr != nil:
		return fmt.Errorf("task protection: unreadable response %.100q: %w", body, decodeErr)
	case r.Protection == nil:
		return fmt.Errorf("task protection: response without protection: %.100q", body)
	case r.Protection.ProtectionEnabled != on:
		return fmt.Errorf("task protection: asked for %t, the agent says %t", on, r.Protection.ProtectionEnabled)
	}
	return nil
}
