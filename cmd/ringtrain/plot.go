package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

func newPlotCmd(*globals) *cobra.Command {
	var (
		out           string
		width, height float64
	)
	cmd := &cobra.Command{
		Use:   "plot METRICS.jsonl",
		Short: "Draw the loss curve of a run's metrics.jsonl",
		Long: `Draw the training loss (and the validation loss where the run evaluated) against the
step from the metrics.jsonl a run writes in its run directory. The image format
follows the extension of -o: .png, .svg, .pdf, .jpg, ...`,
		Example: `  ringtrain plot run/metrics.jsonl -o loss.png`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := plotLoss(args[0], out, vg.Length(width)*vg.Centimeter, vg.Length(height)*vg.Centimeter); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "loss.png", "output image; its extension picks the format")
	cmd.Flags().Float64Var(&width, "width", 16, "image width in centimetres")
	cmd.Flags().Float64Var(&height, "height", 10, "image height in centimetres")
	return cmd
}

// lossPoints is a run's losses read from metrics.jsonl.
type lossPoints struct {
	train, val plotter.XYs
}

// readLosses reads every record of a metrics.jsonl. A line that is not a JSON
// record with a step and a loss is an error naming the file and the line.
func readLosses(path string) (*lossPoints, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseLosses(path, f)
}

func parseLosses(path string, r io.Reader) (*lossPoints, error) {
	pts := &lossPoints{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var rec struct {
			Step    *float64 `json:"step"`
			Loss    *float64 `json:"loss"`
			ValLoss *float64 `json:"val_loss"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			return nil, fmt.Errorf("%s:%d: not a metrics record: %w", path, n, err)
		}
		if rec.Step == nil || rec.Loss == nil {
			return nil, fmt.Errorf("%s:%d: not a metrics record: want \"step\" and \"loss\"", path, n)
		}
		pts.train = append(pts.train, plotter.XY{X: *rec.Step, Y: *rec.Loss})
		if rec.ValLoss != nil {
			pts.val = append(pts.val, plotter.XY{X: *rec.Step, Y: *rec.ValLoss})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(pts.train) == 0 {
		return nil, fmt.Errorf("%s: no metrics records", path)
	}
	return pts, nil
}

// plotLoss draws the losses of the metrics file in to the image out.
func plotLoss(in, out string, width, height vg.Length) error {
	if out == "" {
		return errors.New("-o: an output file is required")
	}
	pts, err := readLosses(in)
	if err != nil {
		return err
	}
	p := plot.New()
	p.Title.Text = "Loss: " + filepath.Base(filepath.Dir(in))
	p.X.Label.Text = "step"
	p.Y.Label.Text = "loss"
	p.Add(plotter.NewGrid())
	train, err := plotter.NewLine(pts.train)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	train.Color = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	p.Add(train)
	p.Legend.Add("train", train)
	if len(pts.val) > 0 {
		val, err := plotter.NewScatter(pts.val)
		if err != nil {
			return fmt.Errorf("%s: %w", in, err)
		}
		val.GlyphStyle.Color = color.RGBA{R: 214, G: 39, B: 40, A: 255}
		val.GlyphStyle.Radius = vg.Points(3)
		val.GlyphStyle.Shape = draw.CircleGlyph{}
		p.Add(val)
		p.Legend.Add("val", val)
	}
	p.Legend.Top = true
	if err := p.Save(width, height, out); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return nil
}
