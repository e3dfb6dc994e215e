package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/trainer"
)

func newEvalCmd(_ *globals) *cobra.Command {
	var (
		ckpt, split string
		o           trainer.EvalOptions
		objective   string
	)
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Report a checkpoint's loss on a dataset's validation split",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if split != "val" {
				return fmt.Errorf("--split %q: only the validation split (val) is evaluated", split)
			}
			o.Objective = trainer.Objective(objective)
			loss, n, err := trainer.EvaluateCheckpoint(cmd.Context(), ckpt, o)
			if err != nil {
				return err
			}
			seq := fmt.Sprint(o.SeqLen)
			if o.SeqLen == 0 {
				seq = "the model's context" // resolved inside EvaluateCheckpoint
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s on %s (%s, %d batches of %d x %s): loss %.4f\n", ckpt, o.Data, split, n, o.MicroBatch, seq, loss)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&ckpt, "checkpoint", "", "checkpoint directory (ringtrain's or a Hugging Face GPT-2 export)")
	fl.StringVar(&o.Data, "data", "", "prepared dataset directory")
	fl.StringVar(&split, "split", "val", "split to evaluate (val)")
	fl.IntVar(&o.SeqLen, "seq", 0, "sequence length (0: the model's context)")
	fl.IntVar(&o.MicroBatch, "batch", 8, "sequences per batch")
	fl.IntVar(&o.Batches, "batches", 0, "batches to evaluate (0: the whole split)")
	fl.StringVar(&objective, "objective", "causal", "causal or masked")
	fl.Uint64Var(&o.Seed, "seed", 1337, "masking seed of the masked objective")
	requireFlags(cmd, "checkpoint", "data")
	return cmd
}
