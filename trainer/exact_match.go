package trainer

import (
	"context"
	"fmt"
	"strings"

	"github.com/ringtrain/ringtrain/chat"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/tokenizer"
)

// ExactMatchOptions configures ExactMatch.
type ExactMatchOptions struct {
	// Template renders the prompts; it should be the one the model was tuned with
	// (model.TrainerState.ChatTemplate).
	Template *chat.Template
	// MaxTokens bounds each answer (>= 1).
	MaxTokens int
	// Limit, when > 0, scores only the first Limit examples.
	Limit int
}

// ExactMatchResult is the outcome of ExactMatch.
type ExactMatchResult struct {
	Examples int // examples scored
	Correct  int // answers equal to the reference
	// Misses holds up to 5 wrong answers, for the report.
	Misses []ExactMatchMiss
}

// ExactMatchMiss is one wrong answer.
type ExactMatchMiss struct {
	Prompt, Want, Got string
}

// Rate returns Correct/Examples (0 for none).
func (r ExactMatchResult) Rate() float64 {
	if r.Examples == 0 {
		return 0
	}
	return float64(r.Correct) / float64(r.Examples)
}

// ExactMatch answers every example's prompt with greedy decoding (model.Generate at
// temperature 0, stopping at the end-of-text id or at one of the template's stop
// strings) and counts the answers that equal the example's reference answer
// (chat.Example.Answer) after trimming surrounding white space. Prompts are tokenized
// segment by segment, as training tokenized them (chat.Encode). It is deterministic.
func ExactMatch(ctx context.Context, m *model.GPT, tok tokenizer.Tokenizer, examples []chat.Example, o ExactMatchOptions) (ExactMatchResult, error) {
	var r ExactMatchResult
	if o.Template == nil || o.MaxTokens < 1 {
		return r, fmt.Errorf("%w: exact match needs a template and max_tokens >= 1 (got %d)", ErrBadSpec, o.MaxTokens)
	}
	stops := o.Template.Stops()
	for i, ex := range examples {
		if o.Limit > 0 && i >= o.Limit {
			break
		}
		segs, err := o.Template.Prompt(ex)
		if err != nil {
			return r, fmt.Errorf("example %d: %w", i, err)
		}
		ids, _ := chat.Encode(tok, segs)
		prompt := make([]int32, len(ids))
		for j, id := range ids {
			prompt[j] = int32(id)
		}
		var out []int
		_, err = m.Generate(ctx, prompt, model.GenerateOptions{
			MaxTokens: o.MaxTokens, StopAtEOT: true, EOT: int32(tok.EOT()),
			OnToken: func(t int32) error {
				out = append(out, int(t))
				text := tok.Decode(out)
				for _, s := range stops {
					if strings.Contains(text, s) {
						return model.ErrStopGeneration
					}
				}
				return nil
			},
		})
		if err != nil {
			return r, fmt.Errorf("example %d: %w", i, err)
		}
		got := tok.Decode(out)
		for _, s := range stops {
			if k := strings.Index(got, s); k >= 0 {
				got = got[:k]
			}
		}
		got, want := strings.TrimSpace(got), strings.TrimSpace(ex.Answer())
		r.Examples++
		if got == want {
			r.Correct++
		} else if len(r.Misses) < 5 {
			p, _ := o.Template.Prompt(ex)
			var ptext strings.Builder
			for _, s := range p {
				ptext.WriteString(s.Text)
			}
			r.Misses = append(r.Misses, ExactMatchMiss{Prompt: ptext.String(), Want: want, Got: got})
		}
	}
	return r, nil
}
