package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

func newPlotCmd(*globals) *cobra.Command {
	var (
		out           string
		width, height float64
		lr            bool
	)
	cmd := &cobra.Command{
		Use:   "plot METRICS.jsonl|RUN_DIR...",
		Short: "Draw the loss curves of one or more runs' metrics.jsonl",
		Long: `Draw the training loss (and the validation loss where the run evaluated) against the
step from the metrics.jsonl a run writes in its run directory, and below it, in a
panel of its own, the learning rate. Give several files (or run directories) to
overlay their runs; the legend names each by its run directory. A resumed run
appends records for steps it had already recorded: the last record of each step
is drawn, so a curve never runs backwards. The image format follows the extension
of -o: .png, .svg, .pdf, .jpg, ...`,
		Example: `  ringtrain plot run/metrics.jsonl -o loss.png
  ringtrain plot runs/lr-1e-3 runs/lr-3e-4 -o compare.svg`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h := height
			if lr && !cmd.Flags().Changed("height") {
				h = 1.5 * height // room for the learning-rate panel
			}
			if err := plotRuns(args, out, vg.Length(width)*vg.Centimeter, vg.Length(h)*vg.Centimeter, lr); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "loss.png", "output image; its extension picks the format")
	cmd.Flags().Float64Var(&width, "width", 16, "image width in centimetres")
	cmd.Flags().Float64Var(&height, "height", 10, "image height in centimetres (1.5 times that with the learning-rate panel, unless given)")
	cmd.Flags().BoolVar(&lr, "lr", true, "draw the learning rate in a panel below the loss (--lr=false: the loss alone)")
	return cmd
}

// runSeries is one run's curves read from its metrics.jsonl: one point per step,
// from the last record of that step, in step order.
type runSeries struct {
	name           string // legend name: the run directory (see runNames)
	path           string // the metrics.jsonl read
	train, val, lr plotter.XYs
}

// metricsPath is the metrics.jsonl of arg: arg itself, or the file in it when arg is
// a run directory.
func metricsPath(arg string) string {
	if fi, err := os.Stat(arg); err == nil && fi.IsDir() {
		return filepath.Join(arg, "metrics.jsonl")
	}
	return arg
}

// readRun reads the metrics file path.
func readRun(path string) (*runSeries, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseRun(path, f)
}

// parseRun reads every record of a metrics.jsonl. A line that is not a JSON record
// with a step and a loss is an error naming the file and the line. When several
// records share a step (a run resumed from an earlier checkpoint appends the steps
// after it again), the last one wins: it is the one the run went on from.
func parseRun(path string, r io.Reader) (*runSeries, error) {
	type point struct {
		loss    float64
		val, lr *float64
	}
	last := map[float64]point{}
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
			LR      *float64 `json:"lr"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			return nil, fmt.Errorf("%s:%d: not a metrics record: %w", path, n, err)
		}
		if rec.Step == nil || rec.Loss == nil {
			return nil, fmt.Errorf("%s:%d: not a metrics record: want \"step\" and \"loss\"", path, n)
		}
		last[*rec.Step] = point{loss: *rec.Loss, val: rec.ValLoss, lr: rec.LR}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(last) == 0 {
		return nil, fmt.Errorf("%s: no metrics records", path)
	}
	steps := make([]float64, 0, len(last))
	for s := range last {
		steps = append(steps, s)
	}
	slices.Sort(steps)
	run := &runSeries{path: path}
	for _, s := range steps {
		p := last[s]
		run.train = append(run.train, plotter.XY{X: s, Y: p.loss})
		if p.val != nil {
			run.val = append(run.val, plotter.XY{X: s, Y: *p.val})
		}
		if p.lr != nil {
			run.lr = append(run.lr, plotter.XY{X: s, Y: *p.lr})
		}
	}
	return run, nil
}

// runNames returns a legend name for each metrics file: the name of its run
// directory, with as many of the directories above as it takes to tell the runs
// apart (run, run → a/run, b/run).
func runNames(paths []string) []string {
	parts := make([][]string, len(paths))
	for i, p := range paths {
		dir := filepath.Dir(filepath.Clean(p))
		if abs, err := filepath.Abs(dir); err == nil {
			dir = abs
		}
		parts[i] = strings.Split(filepath.ToSlash(dir), "/")
	}
	names := make([]string, len(paths))
	for depth := 1; ; depth++ {
		seen := map[string]int{}
		longest := 0
		for i, ps := range parts {
			k := max(len(ps)-depth, 0)
			names[i] = strings.Join(ps[k:], "/")
			seen[names[i]]++
			longest = max(longest, len(ps))
		}
		unique := true
		for _, n := range seen {
			unique = unique && n == 1
		}
		if unique || depth >= longest {
			return names
		}
	}
}

// The colours of a single run's curves.
var (
	trainColor = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	valColor   = color.RGBA{R: 214, G: 39, B: 40, A: 255}
)

// figure builds the panels of runs: the losses, and below them, when lrPanel is set
// and some run recorded its learning rate, the learning rate. One run keeps its
// colours (train blue, validation red); several runs get a colour each, their
// validation losses drawn as dots of it, and legend entries named by run. Both
// panels span the same steps and label their ticks with preciseTicks.
func figure(runs []*runSeries, lrPanel bool) ([]*plot.Plot, error) {
	loss := plot.New()
	loss.Y.Label.Text = "loss"
	loss.X.Label.Text = "step"
	loss.Add(plotter.NewGrid())
	if len(runs) == 1 {
		loss.Title.Text = "Loss: " + runs[0].name
	} else {
		loss.Title.Text = "Loss"
	}
	var lr *plot.Plot
	if lrPanel && slices.ContainsFunc(runs, func(r *runSeries) bool { return len(r.lr) > 0 }) {
		lr = plot.New()
		lr.Y.Label.Text = "learning rate"
		lr.X.Label.Text = "step"
		lr.Add(plotter.NewGrid())
		loss.X.Label.Text = ""
	}
	label := func(r *runSeries, what string) string {
		if len(runs) == 1 {
			return what
		}
		return r.name + " " + what
	}
	for i, r := range runs {
		tc, vc := color.Color(trainColor), color.Color(valColor)
		if len(runs) > 1 {
			tc = plotutil.Color(i)
			vc = tc
		}
		train, err := plotter.NewLine(r.train)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.path, err)
		}
		train.Color = tc
		loss.Add(train)
		loss.Legend.Add(label(r, "train"), train)
		if len(r.val) > 0 {
			val, err := plotter.NewScatter(r.val)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", r.path, err)
			}
			val.GlyphStyle.Color = vc
			val.GlyphStyle.Radius = vg.Points(3)
			val.GlyphStyle.Shape = draw.CircleGlyph{}
			loss.Add(val)
			loss.Legend.Add(label(r, "val"), val)
		}
		if lr != nil && len(r.lr) > 0 {
			l, err := plotter.NewLine(r.lr)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", r.path, err)
			}
			l.Color = tc
			lr.Add(l)
			if len(runs) > 1 {
				lr.Legend.Add(r.name, l)
			}
		}
	}
	loss.Legend.Top = true
	panels := []*plot.Plot{loss}
	if lr != nil {
		lr.Legend.Top = true
		panels = append(panels, lr)
	}
	// Every panel spans the steps of every run, and labels its ticks precisely.
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range runs {
		lo, hi = min(lo, r.train[0].X), max(hi, r.train[len(r.train)-1].X)
	}
	for _, p := range panels {
		p.X.Min, p.X.Max = lo, hi
		p.X.Tick.Marker = preciseTicks{}
		p.Y.Tick.Marker = preciseTicks{}
	}
	return panels, nil
}

// plotRuns draws the runs of the metrics files (or run directories) args into the
// image out, of the given size; with lrPanel, the learning rate below the losses.
// Nothing is written when a file cannot be read.
func plotRuns(args []string, out string, width, height vg.Length, lrPanel bool) error {
	if out == "" {
		return errors.New("-o: an output file is required")
	}
	format := strings.ToLower(strings.TrimPrefix(filepath.Ext(out), "."))
	if format == "" {
		return fmt.Errorf("-o %s: no extension to choose the image format by (.png, .svg, .pdf, ...)", out)
	}
	paths := make([]string, len(args))
	for i, a := range args {
		paths[i] = metricsPath(a)
	}
	names := runNames(paths)
	runs := make([]*runSeries, len(paths))
	for i, p := range paths {
		r, err := readRun(p)
		if err != nil {
			return err
		}
		r.name = names[i]
		runs[i] = r
	}
	panels, err := figure(runs, lrPanel)
	if err != nil {
		return err
	}
	c, err := draw.NewFormattedCanvas(width, height, format)
	if err != nil {
		return fmt.Errorf("-o %s: %w", out, err)
	}
	weights := []float64{2, 1} // the loss panel twice the learning rate's height
	stack(draw.New(c), panels, weights[:len(panels)])
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		os.Remove(out)
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(out)
		return fmt.Errorf("write %s: %w", out, err)
	}
	return nil
}

// stack draws panels from top to bottom in dc, panel i taking weights[i] of the
// height, with the left and right edges of their data areas aligned (the width of
// each panel's y axis differs with its tick labels), so that their step axes line up.
func stack(dc draw.Canvas, panels []*plot.Plot, weights []float64) {
	var total float64
	for _, w := range weights {
		total += w
	}
	height := dc.Max.Y - dc.Min.Y
	cs := make([]draw.Canvas, len(panels))
	var above vg.Length
	for i := range panels {
		h := vg.Length(weights[i]/total) * height
		cs[i] = draw.Crop(dc, 0, 0, height-above-h, -above)
		above += h
	}
	var left, right vg.Length
	for i, p := range panels {
		d := p.DataCanvas(cs[i])
		left = max(left, d.Min.X-cs[i].Min.X)
		right = max(right, cs[i].Max.X-d.Max.X)
	}
	for i, p := range panels {
		d := p.DataCanvas(cs[i])
		p.Draw(draw.Crop(cs[i], left-(d.Min.X-cs[i].Min.X), -(right - (cs[i].Max.X - d.Max.X)), 0, 0))
	}
}
