// Package logcheck checks structured log output in tests: the records that
// ringtrain's processes write with log/slog's JSON handler.
//
// # Who calls it
//
// The tests of cmd/ringtrain, coordinator and localcluster, which check that one record never
// repeats a key (slog's JSON handler writes a repeated attribute twice).
//
// # Usage
//
//	if dup := logcheck.DuplicateKeys(line); dup != nil {
//		t.Errorf("record repeats %v: %s", dup, line)
//	}
package logcheck

import (
	"bytes"
	"encoding/json"
)

// DuplicateKeys returns the keys that occur more than once in one object of the JSON
// document doc (nil when none, or when doc is not JSON).
func DuplicateKeys(doc []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(doc))
	var dups []string
	var walk func() error
	walk = func() error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				key, _ := k.(string)
				if seen[key] {
					dups = append(dups, key)
				}
				seen[key] = true
				if err := walk(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case json.Delim('['):
			for dec.More() {
				if err := walk(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	if walk() != nil {
		return nil
	}
	return dups
}
