package main

import (
	"math"
	"strconv"

	"gonum.org/v1/plot"
)

// preciseTicks is a plot.Ticker that labels its ticks with the precision their
// spacing needs. Major ticks fall on multiples of a round step (1, 2 or 5 times a
// power of ten) chosen for about five of them over the range; each label shows the
// decimals of that step, so that no two labels read the same (a loss axis from 6.88
// to 6.97 reads 6.88, 6.90, ... rather than 6.9 twice). Values below 1e-3 in
// magnitude, such as learning rates, are labelled in scientific notation with the
// digits the step needs. Minor ticks, unlabelled, split each step in four or five.
type preciseTicks struct{}

// Ticks returns the ticks of [lo, hi].
func (preciseTicks) Ticks(lo, hi float64) []plot.Tick {
	if math.IsNaN(lo) || math.IsNaN(hi) || math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		return nil
	}
	if lo > hi {
		lo, hi = hi, lo
	}
	if lo == hi {
		return []plot.Tick{{Value: lo, Label: strconv.FormatFloat(lo, 'g', -1, 64)}}
	}
	step, mantissa := niceStep((hi - lo) / 5)
	minor := step / 5
	if mantissa == 2 {
		minor = step / 4
	}
	var ticks []plot.Tick
	for k := math.Ceil(lo/minor - 1e-9); k*minor <= hi+minor*1e-9; k++ {
		v := k * minor
		if v == 0 {
			v = 0 // no -0
		}
		ticks = append(ticks, plot.Tick{Value: v})
	}
	// Label the multiples of step, with decimals added until the labels differ.
	digits := stepDigits(step)
	sci := max(math.Abs(lo), math.Abs(hi)) < 1e-3
	for extra := 0; extra < 17; extra++ {
		seen := map[string]bool{}
		distinct := true
		for i := range ticks {
			ticks[i].Label = ""
			if k := math.Round(ticks[i].Value / step); math.Abs(ticks[i].Value-k*step) > step*1e-6 {
				continue
			}
			ticks[i].Label = tickLabel(ticks[i].Value, step, digits+extra, sci, max(math.Abs(lo), math.Abs(hi)))
			distinct = distinct && !seen[ticks[i].Label]
			seen[ticks[i].Label] = true
		}
		if distinct {
			break
		}
	}
	return ticks
}

// niceStep returns the smallest of 1, 2 and 5 times a power of ten that is at least
// raw (> 0), and that multiplier.
func niceStep(raw float64) (float64, int) {
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []int{1, 2, 5} {
		if s := float64(m) * p; s >= raw*(1-1e-9) {
			return s, m
		}
	}
	return 10 * p, 1
}

// stepDigits is the number of decimals that multiples of step need: 0 for a step
// of 1 or more, 2 for 0.05, 4 for 0.0002.
func stepDigits(step float64) int {
	return max(0, -int(math.Floor(math.Log10(step)+1e-9)))
}

// tickLabel formats v, a multiple of step on an axis whose values reach magnitude
// top: with decimals digits, or, when sci, in scientific notation with the digits
// the step needs below the axis' leading digit.
func tickLabel(v, step float64, decimals int, sci bool, top float64) string {
	if !sci {
		return strconv.FormatFloat(v, 'f', decimals, 64)
	}
	if v == 0 {
		return "0"
	}
	lead := int(math.Floor(math.Log10(top) + 1e-9))
	prec := max(0, lead-int(math.Floor(math.Log10(step)+1e-9))+decimals-stepDigits(step))
	return strconv.FormatFloat(v, 'e', prec, 64)
}
