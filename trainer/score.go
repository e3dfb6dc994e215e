package trainer

import (
	"context"
	"fmt"

	"github.com/ringtrain/ringtrain/chat"
	"github.com/ringtrain/ringtrain/model"
)

// Score returns the reward model m's score of each example (a prompt and its answer):
// the example is rendered with tmpl and tokenized segment by segment as training
// rendered it (chat.Encode), and the score read at its last token before the
// end-of-text that closes the answer, where training read it. An example longer
// than the model's context is an error naming it.
func Score(ctx context.Context, m *model.GPT, enc chat.Encoder, tmpl *chat.Template, examples []chat.Example) ([]float32, error) {
	if m.Config.NumLabels != 1 {
		return nil, fmt.Errorf("%w: scoring needs a reward model (num_labels 1; train --objective reward), this model has num_labels %d", ErrBadSpec, m.Config.NumLabels)
	}
	out := make([]float32, len(examples))
	for i, ex := range examples {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		segs, err := tmpl.Segments(ex)
		if err != nil {
			return nil, fmt.Errorf("example %d: %w", i+1, err)
		}
		ids, _ := chat.Encode(enc, segs)
		// The closing end-of-text is the target of the last scored position, never
		// an input.
		if n := len(ids); n > 1 && segs[len(segs)-1].EOT {
			ids = ids[:n-1]
		}
		if len(ids) == 0 || len(ids) > m.Config.MaxSeqLen {
			return nil, fmt.Errorf("%w: example %d is %d tokens; the model reads 1 to %d", ErrBadSpec, i+1, len(ids), m.Config.MaxSeqLen)
		}
		in := make([]int32, len(ids))
		for j, id := range ids {
			in[j] = int32(id)
		}
		r, err := m.ForwardReward(in, []int{len(in) - 1}, 1, len(in))
		if err != nil {
			return nil, fmt.Errorf("example %d: %w", i+1, err)
		}
		out[i] = r[0]
	}
	return out, nil
}
