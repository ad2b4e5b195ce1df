package npy

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// This file holds a small parser for the Python literals that appear in .npy headers:
// a dict of strings, ints, True/False/None, tuples and lists. It is strict (anything else is an
// error) and bounded, because headers come from untrusted files: nesting depth is capped, only
// known keys are accepted, and only what the header needs is kept (the dict values and the ints of a
// top-level tuple); nested containers are checked for syntax and discarded, so memory stays
// proportional to the header and not to what a hostile header claims.

const (
	maxDepth      = 16 // nesting of tuples/lists; structured dtypes nest a few levels at most
	maxTupleItems = 64 // ints kept per tuple; numpy arrays have at most 64 dimensions
)

type valueKind int

const (
	kindNone valueKind = iota
	kindString
	kindInt
	kindBool
	kindTuple
	kindList
)

func (k valueKind) String() string {
	return [...]string{"None", "a string", "an int", "a bool", "a tuple", "a list"}[k]
}

// pyValue is one parsed Python literal.
type pyValue struct {
	kind      valueKind
	str       string    // kindString
	num       int64     // kindInt
	flag      bool      // kindBool
	ints      []int64   // kindTuple: its first maxTupleItems items, if they are all ints
	count     int       // kindTuple, kindList: number of items
	nonInt    valueKind // kindTuple: kind of the first item that is not an int
	hasNonInt bool      // kindTuple: nonInt is set
}

// dictEntry is one key/value pair of the header dict; raw is the start of a list value's source text.
type dictEntry struct {
	key string
	val pyValue
	raw string
}

type pyParser struct {
	s       []byte
	pos     int
	depth   int // current nesting of tuples/lists
	discard int // > 0 while parsing inside a container: values are checked, not kept
}

// parseDict parses s as a Python dict literal, allowing surrounding whitespace. Its keys must be
// strings among known, each at most once.
func parseDict(s []byte, known []string) ([]dictEntry, error) {
	p := &pyParser{s: s}
	p.skipSpace()
	if !p.eat('{') {
		return nil, p.errorf("header dict must start with '{'")
	}
	var entries []dictEntry
	for {
		p.skipSpace()
		if p.eat('}') {
			break
		}
		keyPos := p.pos
		if p.pos >= len(p.s) || (p.s[p.pos] != '\'' && p.s[p.pos] != '"') {
			return nil, p.errorf("expected a quoted key or '}'")
		}
		key, err := p.parseString()
		if err != nil {
			return nil, err
		}
		if !contains(known, key) {
			return nil, invalidf(nil, "header has unknown key %q (want only %s)", short(key), quoteAll(known))
		}
		for _, e := range entries {
			if e.key == key {
				p.pos = keyPos
				return nil, p.errorf("duplicate key %q", key)
			}
		}
		p.skipSpace()
		if !p.eat(':') {
			return nil, p.errorf("expected ':' after key %q", key)
		}
		p.skipSpace()
		start := p.pos
		val, err := p.parseValue()
		if err != nil {
			return nil, err
		}
		e := dictEntry{key: key, val: val}
		if val.kind == kindList {
			e.raw = string(p.s[start:min(p.pos, start+100)]) // only for the error message
		}
		entries = append(entries, e)
		p.skipSpace()
		if p.eat(',') {
			continue
		}
		if !p.eat('}') {
			return nil, p.errorf("expected ',' or '}' after the value of %q", key)
		}
		break
	}
	p.skipSpace()
	if p.pos != len(p.s) {
		return nil, p.errorf("unexpected data after the header dict")
	}
	return entries, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func quoteAll(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = "'" + s + "'"
	}
	return strings.Join(q, ", ")
}

func (p *pyParser) errorf(format string, args ...any) error {
	return invalidf(nil, "malformed header dict at byte %d: %s", p.pos, fmt.Sprintf(format, args...))
}

func (p *pyParser) skipSpace() {
	for p.pos < len(p.s) {
		switch p.s[p.pos] {
		case ' ', '\t', '\n', '\r', '\f', '\v':
			p.pos++
		default:
			return
		}
	}
}

func (p *pyParser) eat(c byte) bool {
	if p.pos < len(p.s) && p.s[p.pos] == c {
		p.pos++
		return true
	}
	return false
}

func (p *pyParser) parseValue() (pyValue, error) {
	if p.pos >= len(p.s) {
		return pyValue{}, p.errorf("unexpected end of header, expected a value")
	}
	switch c := p.s[p.pos]; {
	case c == '\'' || c == '"':
		s, err := p.parseString()
		return pyValue{kind: kindString, str: s}, err
	case c == '-' || (c >= '0' && c <= '9'):
		n, err := p.parseInt()
		return pyValue{kind: kindInt, num: n}, err
	case c == '(' || c == '[':
		return p.parseSeq()
	case c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z'):
		return p.parseName()
	default:
		return pyValue{}, p.errorf("unexpected character %q", c)
	}
}

// parseString parses a single- or double-quoted string without prefix. Keys and descrs never need
// escapes, so a backslash is refused there; inside containers (field names of structured dtypes,
// whose text is not kept) it skips the next byte.
func (p *pyParser) parseString() (string, error) {
	quote := p.s[p.pos]
	p.pos++
	start := p.pos
	for p.pos < len(p.s) {
		switch p.s[p.pos] {
		case quote:
			p.pos++
			if p.discard > 0 {
				return "", nil
			}
			return string(p.s[start : p.pos-1]), nil
		case '\n', '\r':
			return "", p.errorf("newline inside a string")
		case '\\':
			if p.discard == 0 {
				return "", p.errorf("backslash escapes are not supported here")
			}
			p.pos++ // skip the escaped byte too
		}
		p.pos++
	}
	return "", p.errorf("unterminated string")
}

// parseInt parses a decimal int with an optional '-' and the 'L' suffix of Python 2 longs.
func (p *pyParser) parseInt() (int64, error) {
	start := p.pos
	if p.s[p.pos] == '-' {
		p.pos++
	}
	digits := p.pos
	for p.pos < len(p.s) && p.s[p.pos] >= '0' && p.s[p.pos] <= '9' {
		p.pos++
	}
	if p.pos == digits {
		return 0, p.errorf("expected digits after '-'")
	}
	text := p.s[start:p.pos]
	if p.pos < len(p.s) && (p.s[p.pos] == 'L' || p.s[p.pos] == 'l') {
		p.pos++
	}
	n, err := strconv.ParseInt(string(text), 10, 64)
	if err != nil {
		p.pos = start
		return 0, p.errorf("integer %s is out of range", short(string(text)))
	}
	return n, nil
}

func (p *pyParser) parseName() (pyValue, error) {
	start := p.pos
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		if c != '_' && (c|0x20 < 'a' || c|0x20 > 'z') && (c < '0' || c > '9') {
			break
		}
		p.pos++
	}
	name := p.s[start:p.pos]
	switch {
	case bytes.Equal(name, []byte("True")):
		return pyValue{kind: kindBool, flag: true}, nil
	case bytes.Equal(name, []byte("False")):
		return pyValue{kind: kindBool}, nil
	case bytes.Equal(name, []byte("None")):
		return pyValue{kind: kindNone}, nil
	}
	p.pos = start
	return pyValue{}, p.errorf("unexpected name %q (want True, False or None)", short(string(name)))
}

// parseSeq parses a tuple "(a, b)" or list "[a, b]". A one-item tuple needs its trailing comma:
// Python would read "(5)" as the int 5, which is never valid in a header, so it is refused here.
func (p *pyParser) parseSeq() (pyValue, error) {
	closer := byte(')')
	v := pyValue{kind: kindTuple}
	if p.s[p.pos] == '[' {
		closer, v.kind = ']', kindList
	}
	if p.depth >= maxDepth {
		return pyValue{}, p.errorf("literals nested deeper than %d levels", maxDepth)
	}
	keep := p.discard == 0 && v.kind == kindTuple
	p.depth++
	p.discard++
	defer func() { p.depth--; p.discard-- }()
	p.pos++
	for {
		p.skipSpace()
		if p.eat(closer) {
			break
		}
		item, err := p.parseValue()
		if err != nil {
			return pyValue{}, err
		}
		v.count++
		if keep {
			switch {
			case item.kind != kindInt:
				if !v.hasNonInt {
					v.nonInt, v.hasNonInt = item.kind, true
				}
			case len(v.ints) < maxTupleItems:
				v.ints = append(v.ints, item.num)
			}
		}
		p.skipSpace()
		if p.eat(',') {
			continue
		}
		if !p.eat(closer) {
			return pyValue{}, p.errorf("expected ',' or %q", closer)
		}
		if v.kind == kindTuple && v.count == 1 {
			p.pos--
			return pyValue{}, p.errorf("a one-item tuple needs a trailing comma, as in (5,)")
		}
		break
	}
	return v, nil
}
