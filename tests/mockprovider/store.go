package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// store guards a state T (the engine calls the provider concurrently) and
// keeps it, as JSON, in the file at path, or in mem if path is "". Every
// update works on a fresh copy and saves it only on success, so a refused
// call changes nothing; the file is read on every call so that what an
// earlier provider process saved is seen (the engine starts a new plugin for
// every `pulumi up` or `destroy`).
type store[T any] struct {
	mu   sync.Mutex
	path string
	mem  []byte
	what string   // "ecs state": errors say which
	fill func(*T) // makes nil maps empty, fresh or as read
}

func newStore[T any](path, what string, fill func(*T)) *store[T] {
	return &store[T]{path: path, what: what, fill: fill}
}

// update applies fn to the state and saves the result unless fn fails.
func (s *store[T]) update(fn func(*T) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.load()
	if err != nil {
		return err
	}
	if err := fn(st); err != nil {
		return err
	}
	return s.save(st)
}

// read applies fn to the state as saved, and saves nothing.
func (s *store[T]) read(fn func(*T) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.load()
	if err != nil {
		return err
	}
	return fn(st)
}

func (s *store[T]) load() (*T, error) {
	data := s.mem
	if s.path != "" {
		var err error
		data, err = os.ReadFile(s.path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("read %s: %w", s.what, err)
		}
	}
	st := new(T)
	if len(data) > 0 {
		if err := json.Unmarshal(data, st); err != nil {
			return nil, fmt.Errorf("parse %s: %w", s.what, err)
		}
	}
	s.fill(st) // written while empty, the maps are null
	return st, nil
}

// save writes a temporary file and renames it over the state, so that no
// reader sees half a file.
func (s *store[T]) save(st *T) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if s.path == "" {
		s.mem = data
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), filepath.Base(s.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", s.what, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // fails harmlessly once renamed
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close() // the write's error is the one to report
		return fmt.Errorf("write %s: %w", s.what, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", s.what, err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("write %s: %w", s.what, err)
	}
	return nil
}
