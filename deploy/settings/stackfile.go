package settings

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// ParseStackFile reads a stack file (Pulumi.<stack>.yaml) into the values
// Parse takes, as `pulumi config` hands them to the program: the inferstack
// keys only, without the namespace, arrays as JSON.
func ParseStackFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var file struct {
		Config map[string]any `yaml:"config"`
	}
	if err := yaml.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	values := map[string]string{}
	for k, v := range file.Config {
		key, ok := strings.CutPrefix(k, Namespace+":")
		if !ok {
			continue
		}
		if list, ok := v.([]any); ok {
			data, _ := json.Marshal(list)
			values[key] = string(data)
		} else {
			values[key] = fmt.Sprint(v)
		}
	}
	return values, nil
}
