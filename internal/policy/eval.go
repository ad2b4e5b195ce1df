package policy

import (
	"path"
	"strings"
)

// Allows says whether d allows action on resource in the request context
// ctx (condition keys such as s3:prefix). It is the part of IAM's
// evaluation these documents use: Allow and Deny statements, wildcards in
// actions and resources, and StringEquals, StringLike, ArnEquals, ArnLike,
// their negations, and Bool conditions; an explicit Deny wins. For tests
// that ask what AWS would decide. Principals are not checked (identity
// policies have none); AllowsPrincipal checks them for resource policies.
func (d Document) Allows(action, resource string, ctx map[string]string) bool {
	return d.AllowsPrincipal("", "", action, resource, ctx)
}

// AllowsPrincipal is Allows for a resource policy: a statement applies to
// the request only where its Principal names kind ("AWS" or "Service") and
// id, or "*". kind "" skips the check.
func (d Document) AllowsPrincipal(kind, id, action, resource string, ctx map[string]string) bool {
	allowed := false
	for _, s := range d.Statement {
		if !matchAny(s.Action, action, true) || !matchAny(s.Resource, resource, false) || !conditionsHold(s.Condition, ctx) ||
			(kind != "" && !principalMatches(s.Principal, kind, id)) {
			continue
		}
		if s.Effect == "Deny" {
			return false
		}
		allowed = true
	}
	return allowed
}

func principalMatches(principal any, kind, id string) bool {
	p, ok := principal.(map[string]any)
	if !ok {
		return principal == "*"
	}
	for _, x := range stringsOf(p[kind]) {
		if x == "*" || x == id {
			return true
		}
	}
	return false
}

func matchAny(patterns []string, v string, caseFold bool) bool {
	for _, p := range patterns {
		if caseFold {
			p, v = strings.ToLower(p), strings.ToLower(v)
		}
		if like(p, v) {
			return true
		}
	}
	return false
}

// like is IAM's wildcard match: * any run of characters (slashes too), ? one.
func like(pattern, v string) bool {
	// path.Match stops * at '/', which IAM does not: match segment-free by
	// replacing the separator with one path.Match never sees.
	const sep = "\x00"
	ok, err := path.Match(strings.ReplaceAll(escape(pattern), "/", sep), strings.ReplaceAll(v, "/", sep))
	return err == nil && ok
}

// escape keeps IAM's only wildcards, * and ?, and quotes what path.Match
// would read as a character class or escape.
func escape(p string) string {
	r := strings.NewReplacer(`\`, `\\`, `[`, `\[`, `]`, `\]`)
	return r.Replace(p)
}

func conditionsHold(conditions map[string]map[string]any, ctx map[string]string) bool {
	for op, keys := range conditions {
		for key, want := range keys {
			got, ok := ctx[key]
			if !ok {
				// A condition on a key the request lacks does not hold,
				// unless it is a negated one (IAM's rule).
				if strings.Contains(op, "Not") {
					continue
				}
				return false
			}
			values := stringsOf(want)
			// StringNotEquals and the like hold where no value matches.
			negated := strings.Contains(op, "Not")
			base := strings.Replace(op, "Not", "", 1)
			match := false
			for _, v := range values {
				switch base {
				case "StringLike", "ArnLike":
					match = match || like(v, got)
				case "StringEquals", "ArnEquals", "Bool":
					match = match || v == got
				}
			}
			if match == negated {
				return false
			}
		}
	}
	return true
}

// stringsOf reads a policy value that is one string or a list of them (as
// built in Go, or as decoded from JSON).
func stringsOf(v any) []string {
	switch w := v.(type) {
	case string:
		return []string{w}
	case []string:
		return w
	case []any:
		var out []string
		for _, x := range w {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
