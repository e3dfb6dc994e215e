package jobspec

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/trainer"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	spec := trainer.DefaultSpec()
	spec.Streams, spec.Exact = 8, true
	// An SFT job: the objective, init_from and epochs travel with the spec.
	spec.Objective, spec.InitFrom, spec.Epochs, spec.Steps = trainer.SFT, "base/ckpt/step-000600", 3, 1500
	job, err := Encode(spec, 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	if job.GetStreams() != 8 || job.GetMinWorkers() != 2 || job.GetMaxWorkers() != 4 || job.GetSteps() != spec.Steps {
		t.Fatalf("job %v", job)
	}
	back, err := Decode(job)
	if err != nil || !reflect.DeepEqual(back, spec) {
		t.Fatalf("round trip: %v\n%+v\n%+v", err, back, spec)
	}
	// A job without exact mode leaves the key out of its JSON, as before the key existed.
	spec.Exact = false
	plain, err := Encode(spec, 2, 4)
	if err != nil || strings.Contains(string(plain.GetSpecJson()), "exact") || !strings.Contains(string(job.GetSpecJson()), `"exact":true`) {
		t.Fatalf("spec JSON: %v\nplain: %s\nexact: %s", err, plain.GetSpecJson(), job.GetSpecJson())
	}
	if _, err := Encode(spec, 9, 0); !errors.Is(err, coordinator.ErrBadCommand) {
		t.Fatalf("min_workers above streams: %v", err)
	}
	job.Streams = 3
	if _, err := Decode(job); !errors.Is(err, coordinator.ErrBadCommand) {
		t.Fatalf("disagreeing job: %v", err)
	}
}
