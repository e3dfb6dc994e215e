package trainer

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration that a job spec writes as Go's duration text ("90m",
// "1h30m0s") in YAML and in JSON alike, so that the job's JSON (in checkpoints and in
// the coordinator) reads as its YAML does. A bare number without a unit is refused:
// "60" could mean seconds or minutes.
type Duration time.Duration

// String returns the duration as time.Duration writes it ("1h30m0s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the duration as String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a duration as time.ParseDuration does ("0" is zero).
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: want a number with a unit (s, m, h), such as 90m or 1h30m", b)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML reads a scalar as UnmarshalText does, naming the line of a bad value.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a duration must be a scalar such as 90m", n.Line)
	}
	if err := d.UnmarshalText([]byte(n.Value)); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}
