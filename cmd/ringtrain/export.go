package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/tokenizer"
)

func newExportCmd(_ *globals) *cobra.Command {
	var ckpt, format, out string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Export a checkpoint as a Hugging Face GPT-2 directory",
		Long: `Export a checkpoint as a directory that transformers' GPT2LMHeadModel.from_pretrained
loads: config.json and model.safetensors (Conv1D [in,out] layout, tied LM head).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "hf" {
				return usageErrorf("--format %q: only hf is supported", format)
			}
			ck, err := model.LoadCheckpoint(ckpt)
			if err != nil {
				return err
			}
			var opts []model.ExportOption
			if len(ck.Tokenizer) > 0 {
				tok, err := tokenizer.Unmarshal(ck.Tokenizer)
				if err != nil {
					return fmt.Errorf("checkpoint %s: tokenizer: %w", ckpt, err)
				}
				opts = append(opts, model.WithEOT(tok.EOT()), model.WithTokenizerJSON(ck.Tokenizer))
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
	requireFlags(cmd, "checkpoint", "out")
	return cmd
}
