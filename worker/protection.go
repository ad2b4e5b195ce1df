package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
	defer resp.Body.Close() //nolint:errcheck // nothing to read
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("task protection: %s", resp.Status)
	}
	return nil
}
