package main

import (
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/tokenizer"
	"github.com/ringtrain/ringtrain/trainer"
)

func newExportCmd(g *globals) *cobra.Command {
	var (
		ckpt, format, out string
		forceCausal       bool
	)
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Export a checkpoint as a Hugging Face GPT-2 directory",
		Long: `Export a checkpoint as a directory that transformers loads with
AutoModelForCausalLM (GPT2LMHeadModel) and AutoTokenizer: config.json,
generation_config.json, model.safetensors (Conv1D [in,out] layout, tied LM head), the
tokenizer as tokenizer.json (the tokenizers library's schema), vocab.json and
merges.txt (byte-level tokenizers), tokenizer_config.json and special_tokens_map.json,
and ringtrain's own ringtrain_tokenizer.json.

A model trained with the masked objective attends in both directions, which
GPT2LMHeadModel cannot express: export refuses it unless --force-causal.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "hf" {
				return usageErrorf("--format %q: only hf is supported", format)
			}
			ck, err := model.LoadCheckpoint(ckpt)
			if err != nil {
				return err
			}
			if objective := checkpointObjective(ck); objective == trainer.MaskedLM {
				if !forceCausal {
					return fmt.Errorf("checkpoint %s was trained with the %s objective (bidirectional attention); "+
						"GPT2LMHeadModel is causal and would compute other logits: pass --force-causal to export it anyway", ckpt, objective)
				}
				fmt.Fprintf(g.notes(cmd, slog.LevelWarn), "checkpoint %s was trained with the %s objective; exporting it as the causal GPT2LMHeadModel "+
					"as --force-causal asks: transformers will attend causally, so its logits differ from ringtrain's\n", ckpt, objective)
			}
			var opts []model.ExportOption
			switch {
			case len(ck.Tokenizer) > 0:
				tok, err := tokenizer.Unmarshal(ck.Tokenizer)
				if err != nil {
					return fmt.Errorf("checkpoint %s: tokenizer: %w", ckpt, err)
				}
				own, err := tokenizer.Marshal(tok)
				if err != nil {
					return err
				}
				opts = append(opts, model.WithEOT(tok.EOT()), model.WithTokenizerJSON(own))
				files, err := tokenizer.HFFiles(tok, ck.Config.MaxSeqLen)
				if err != nil {
					fmt.Fprintf(g.notes(cmd, slog.LevelWarn), "checkpoint %s: %v: the export carries ringtrain_tokenizer.json but no Hugging Face tokenizer files\n", ckpt, err)
				} else {
					opts = append(opts, model.WithHFTokenizer(files))
				}
			case ck.EOT != nil:
				opts = append(opts, model.WithEOT(*ck.EOT))
			}
			if err := model.ExportHF(out, ck.Config, ck.Params, opts...); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "exported %s to %s (%d parameters)\n", ckpt, out, ck.Config.NumParams())
			return nil
		},
	}
	cmd.Flags().StringVar(&ckpt, "checkpoint", "", "checkpoint directory")
	cmd.Flags().StringVar(&format, "format", "hf", "export format: hf")
	cmd.Flags().StringVar(&out, "out", "", "output directory (must not exist)")
	cmd.Flags().BoolVar(&forceCausal, "force-causal", false, "export a masked-objective model as the causal GPT2LMHeadModel (its logits will differ)")
	requireFlags(cmd, "checkpoint", "out")
	return cmd
}

// checkpointObjective returns the objective a ringtrain checkpoint was trained with,
// from the job recorded in trainer_state.json; causal for a checkpoint without one
// (a Hugging Face directory).
func checkpointObjective(ck *model.Checkpoint) trainer.Objective {
	var job struct {
		Objective trainer.Objective `json:"objective"`
	}
	if len(ck.Trainer.Job) == 0 || json.Unmarshal(ck.Trainer.Job, &job) != nil || job.Objective == "" {
		return trainer.CausalLM
	}
	return job.Objective
}
