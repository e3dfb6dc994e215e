package jobspec

import (
	"encoding/json"
	"fmt"

	"github.com/ringtrain/ringtrain/coordinator"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/trainer"
)

// Encode builds the coordinator's job from a trainer spec: the spec travels whole as
// JSON (what workers decode with Decode), and the fields the coordinator acts on
// (streams, steps, checkpoint interval) are copied beside it with the worker bounds.
// minWorkers 0 means 1; maxWorkers 0 means one worker per stream. The job is checked
// with coordinator.ValidateJob and Check; errors wrap coordinator.ErrBadCommand.
func Encode(spec trainer.Spec, minWorkers, maxWorkers int) (*pb.JobSpec, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("jobspec: encode job spec: %w", err)
	}
	job := &pb.JobSpec{
		SpecJson:           b,
		Streams:            int32(spec.Streams),
		MinWorkers:         int32(minWorkers),
		MaxWorkers:         int32(maxWorkers),
		Steps:              spec.Steps,
		CheckpointInterval: spec.CheckpointInterval,
	}
	if int(job.Streams) != spec.Streams || int(job.MinWorkers) != minWorkers || int(job.MaxWorkers) != maxWorkers {
		return nil, fmt.Errorf("%w: job.streams/min_workers/max_workers out of range", coordinator.ErrBadCommand)
	}
	if err := coordinator.ValidateJob(job); err != nil {
		return nil, err
	}
	if err := Check(job); err != nil {
		return nil, err
	}
	return job, nil
}

// Decode decodes the trainer spec a job carries and checks that it agrees with the
// job's own fields; errors wrap coordinator.ErrBadCommand.
func Decode(job *pb.JobSpec) (trainer.Spec, error) {
	var spec trainer.Spec
	if err := json.Unmarshal(job.GetSpecJson(), &spec); err != nil {
		return spec, fmt.Errorf("jobspec: decode job spec: %w: %w", coordinator.ErrBadCommand, err)
	}
	if spec.Streams != int(job.GetStreams()) || spec.Steps != job.GetSteps() || spec.CheckpointInterval != job.GetCheckpointInterval() {
		return spec, fmt.Errorf("%w: job spec (streams %d, steps %d, checkpoint_interval %d) disagrees with the job (%d, %d, %d)",
			coordinator.ErrBadCommand, spec.Streams, spec.Steps, spec.CheckpointInterval, job.GetStreams(), job.GetSteps(), job.GetCheckpointInterval())
	}
	return spec, nil
}
