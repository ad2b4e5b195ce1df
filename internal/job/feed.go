package job

import (
	"fmt"
	"strings"
)

// ParseFeed reads one feed mapping, INPUT=COL or INPUT=COL1,COL2,...: the
// model input and the table columns it reads, in order (K scalar columns
// build an [N, K] input).
func ParseFeed(s string) (input string, columns []string, err error) {
	input, list, ok := strings.Cut(s, "=")
	input = strings.TrimSpace(input)
	if !ok || input == "" || strings.TrimSpace(list) == "" {
		return "", nil, fmt.Errorf("feed %q: want INPUT=COLUMN or INPUT=COL1,COL2 (columns in order)", s)
	}
	for c := range strings.SplitSeq(list, ",") {
		if c = strings.TrimSpace(c); c == "" {
			return "", nil, fmt.Errorf("feed %q: an empty column name", s)
		}
		columns = append(columns, c)
	}
	return input, columns, nil
}

// ParseColumns reads a comma-separated list of column names (--keep).
func ParseColumns(s string) ([]string, error) {
	var cols []string
	for c := range strings.SplitSeq(s, ",") {
		cols = append(cols, strings.TrimSpace(c))
	}
	if err := checkNames(cols); err != nil {
		return nil, fmt.Errorf("columns %q: %w", s, err)
	}
	return cols, nil
}
