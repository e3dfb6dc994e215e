package main

import (
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/trainer"
)

func newEvalCmd(g *globals) *cobra.Command {
	var backend backendFlags
	var (
		ckpt, split string
		o           trainer.EvalOptions
		objective   string
		asJSON      bool
		em          exactMatchFlags
	)
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Report a checkpoint's loss and perplexity on a split of a dataset",
		Long: `Report a checkpoint's mean loss per target token and its perplexity (exp of the loss)
on the validation split of a prepared dataset, or on its train split with --split
train. The objective is the one the checkpoint was trained with (masked or causal,
from its trainer state; causal for a Hugging Face directory) unless --objective
says otherwise, and the masked objective masks with the run's seed unless --seed
is given. --json prints the result as one JSON object. An SFT dataset is scored
on its trained (answer) tokens, with its row length, and reports token accuracy.

--exact-match FILE answers the prompts of instruction rows (JSONL, the shapes of
'prepare --format sft') with greedy decoding, rendered with the template the
checkpoint was tuned with (--template for a model that records none), and reports
the share of answers equal to the rows' answers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if em.file != "" {
				em.asJSON = asJSON
				return em.run(cmd, ckpt)
			}
			if o.Data == "" {
				return usageErrorf("--data is required (or --exact-match)")
			}
			if split != "val" && split != "train" {
				return usageErrorf("--split %q: want val or train", split)
			}
			o.Split = split
			switch trainer.Objective(objective) {
			case "", trainer.CausalLM, trainer.MaskedLM, trainer.SFT, trainer.Reward, trainer.DPO:
				o.Objective = trainer.Objective(objective)
			default:
				return usageErrorf("--objective %q: want causal, masked, sft, reward or dpo", objective)
			}
			o.Notes = g.notes(cmd, slog.LevelInfo)
			be, err := backend.open()
			if err != nil {
				return err
			}
			o.Backend = be
			r, err := trainer.EvaluateCheckpointReport(cmd.Context(), ckpt, o)
			if err != nil {
				return err
			}
			if asJSON {
				return printEvalJSON(cmd, ckpt, o.Data, r)
			}
			if pe := r.Preference; pe != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "%s on %s (%s, %d pairs), %s objective: accuracy %.4f, mean margin %.4f, loss %.4f per pair\n",
					ckpt, o.Data, r.Split, pe.Pairs, r.Objective, pe.Accuracy, pe.MeanMargin, pe.Loss)
				fmt.Fprintf(cmd.OutOrStdout(), "rewards: chosen %.4f ± %.4f, rejected %.4f ± %.4f\n", pe.ChosenMean, pe.ChosenStd, pe.RejectedMean, pe.RejectedStd)
				if r.Objective == trainer.DPO {
					fmt.Fprintf(cmd.OutOrStdout(), "policy accuracy (chosen answer more likely, no reference): %.4f\n", pe.PolicyAccuracy)
				}
				return nil
			}
			seq := fmt.Sprint(o.SeqLen)
			switch {
			case o.SeqLen == 0 && r.Objective == trainer.SFT:
				seq = fmt.Sprint(r.SeqLen) // the SFT dataset's rows
			case o.SeqLen == 0:
				seq = "the model's context" // resolved inside EvaluateCheckpointReport
			}
			acc := ""
			if r.Objective == trainer.SFT {
				acc = fmt.Sprintf(", token accuracy %.4f", r.Accuracy)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s on %s (%s, %d batches of %d x %s), %s objective: perplexity %.2f, loss %.4f%s\n",
				ckpt, o.Data, split, r.Batches, r.MicroBatch, seq, r.Objective, r.Perplexity, r.Loss, acc)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&ckpt, "checkpoint", "", "checkpoint directory (ringtrain's or a Hugging Face GPT-2 export)")
	fl.StringVar(&o.Data, "data", "", "prepared dataset directory")
	fl.StringVar(&split, "split", "val", "split to evaluate: val or train")
	fl.IntVar(&o.SeqLen, "seq", 0, "sequence length (0: the model's context)")
	fl.IntVar(&o.MicroBatch, "batch", 8, "sequences per batch")
	fl.IntVar(&o.Batches, "batches", 0, "batches to evaluate (0: the whole split)")
	fl.StringVar(&objective, "objective", "", "causal, masked or sft (default: the objective the checkpoint was trained with)")
	fl.Uint64Var(&o.Seed, "seed", 0, "masking seed of the masked objective (0: the seed the checkpoint was trained with)")
	fl.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	fl.StringVar(&o.Tokenizer, "tokenizer", "", "tokenizer of a dataset without a tokenizer file (llm.c shards): gpt2 (the default there), byte, or a tokenizer file")
	em.register(cmd)
	backend.register(fl)
	requireFlags(cmd, "checkpoint")
	return cmd
}

// evalJSON is what `ringtrain eval --json` prints.
type evalJSON struct {
	Checkpoint string  `json:"checkpoint"`
	Data       string  `json:"data"`
	Split      string  `json:"split"`
	Objective  string  `json:"objective"`
	Loss       float64 `json:"loss"`
	Perplexity float64 `json:"perplexity"`
	Tokens     int64   `json:"tokens"` // target tokens scored
	// TokenAccuracy is the share of the targets ranked first (sft objective).
	TokenAccuracy *float64 `json:"token_accuracy,omitempty"`
	Batches       int      `json:"batches"`
	Batch         int      `json:"batch"`   // sequences per batch
	SeqLen        int      `json:"seq_len"` // tokens per sequence
	Seed          uint64   `json:"seed,omitempty"`
}

func printEvalJSON(cmd *cobra.Command, ckpt, data string, r *trainer.EvalReport) error {
	v := evalJSON{
		Checkpoint: ckpt, Data: data, Split: r.Split, Objective: string(r.Objective),
		Loss: r.Loss, Perplexity: r.Perplexity, Tokens: r.Tokens, Batches: r.Batches,
		Batch: r.MicroBatch, SeqLen: r.SeqLen,
	}
	if r.Objective == trainer.MaskedLM {
		v.Seed = r.Seed
	}
	if r.Objective == trainer.SFT {
		v.TokenAccuracy = &r.Accuracy
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("--json: %w", err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
	return nil
}
