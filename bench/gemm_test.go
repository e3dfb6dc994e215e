package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestGemmShapes(t *testing.T) {
	for set, n := range map[string]int{"tiny": 15, "nanogpt": 15, "square": 4} {
		shapes, err := GemmShapes(set)
		if err != nil || len(shapes) != n {
			t.Errorf("%s: %d shapes (%v), want %d", set, len(shapes), err, n)
		}
		for _, s := range shapes {
			if !strings.HasPrefix(s.Name, set+".") || len(s.Op) != 2 || s.M < 1 || s.N < 1 || s.K < 1 {
				t.Errorf("%s: shape %+v", set, s)
			}
		}
	}
	if _, err := GemmShapes("huge"); err == nil {
		t.Error("no error for an unknown set")
	}
}

// TestGemm times two tiny-set shapes against gonum, briefly.
func TestGemm(t *testing.T) {
	shapes, err := GemmShapes("tiny")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := Gemm(context.Background(), GemmOptions{Shapes: shapes[:2], Threads: 2, Reps: 1, Time: time.Millisecond}, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out.String())
	if res.Peak <= 0 || len(res.Impls) != 2 || res.Impls[1] != "gonum" || len(res.Best) != 2 {
		t.Fatalf("result %+v", res)
	}
	for i, b := range res.Best {
		if b[0] <= 0 || b[1] <= 0 {
			t.Errorf("shape %s: GFLOP/s %v", shapes[i].Name, b)
		}
	}
	for _, want := range []string{"peak (micro-kernel", "tiny.qkv.fwd", "tiny.qkv.dinp", "x gonum", "geometric mean of ringtrain/gonum: tiny"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}
