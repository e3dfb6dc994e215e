package trainer

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/ringtrain/ringtrain/model"
)

// FuzzLoadSpec: a job YAML file of any bytes is refused with an error wrapping
// ErrBadSpec, or gives a spec that CheckSubmitted accepts or refuses with an error
// naming ErrBadSpec, never a panic; an accepted spec travels as JSON (what the
// coordinator carries to the workers) and decodes back to the same spec.
func FuzzLoadSpec(f *testing.F) {
	f.Add([]byte("model: {layers: 4, heads: 4, embd: 128}\nseq_len: 64\nsteps: 100\n"))
	f.Add([]byte("lr: .nan\n"))
	f.Add([]byte("adamw: {beta1: .inf}\n"))
	f.Add([]byte("model: {embd: 1000000000}\n"))
	f.Add([]byte("micro_batch: 9223372036854775807\nseq_len: 9223372036854775807\n"))
	f.Add([]byte("max_time: 1h30m\ndata: ../../etc\nunknown: 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseSpec(bytes.NewReader(b), "job.yaml")
		if err != nil {
			if !errors.Is(err, ErrBadSpec) {
				t.Fatalf("error %v does not wrap ErrBadSpec", err)
			}
			return
		}
		if err := s.CheckSubmitted(model.HardLimits); err != nil {
			if !errors.Is(err, ErrBadSpec) {
				t.Fatalf("error %v does not wrap ErrBadSpec", err)
			}
			return
		}
		j, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("accepted spec does not encode: %v", err)
		}
		var back Spec
		if err := json.Unmarshal(j, &back); err != nil || !reflect.DeepEqual(back, s) {
			t.Fatalf("JSON round trip: %v\n%+v\n%+v", err, back, s)
		}
	})
}
