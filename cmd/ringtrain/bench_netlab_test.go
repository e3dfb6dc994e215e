package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestRingZones: the planner order groups interleaved zones and crosses each
// boundary once; the join order keeps them as listed.
func TestRingZones(t *testing.T) {
	joined := strings.Split("a,b,a,b,a,b,a,b", ",")
	got, err := ringZones(joined, "planner")
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Split("a,a,a,a,b,b,b,b", ","); !slices.Equal(got, want) {
		t.Fatalf("planner order %v, want %v", got, want)
	}
	if n := crossings(got); n != 2 {
		t.Fatalf("planner order crosses %d times, want 2", n)
	}
	got, err = ringZones(joined, "join")
	if err != nil || !slices.Equal(got, joined) || crossings(got) != 8 {
		t.Fatalf("join order %v (%d crossings), %v", got, crossings(got), err)
	}
	if _, err := ringZones(joined, "random"); err == nil || !strings.Contains(err.Error(), "--ring-order") {
		t.Fatalf("bad order: %v", err)
	}
	if n := crossings([]string{"a"}); n != 0 {
		t.Fatalf("one rank crosses %d times", n)
	}
}

// TestNetlabFlagErrors: bad lab flags are usage errors naming the flag, found before
// any lab is built.
func TestNetlabFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		f    netlabFlags
		want string
	}{
		{netlabFlags{link: "rate=fast"}, "--netlab"},
		{netlabFlags{trunk: "delay=soon"}, "--netlab-trunk"},
		{netlabFlags{ranks: []string{"9:rate=1gbit"}}, "--netlab-rank"},
		{netlabFlags{ranks: []string{"rate=1gbit"}}, "--netlab-rank"},
		{netlabFlags{ranks: []string{"1:mtu=9000"}}, "--netlab-rank"},
		{netlabFlags{zones: "a,b,c", order: "planner"}, "--netlab-zones"},
		{netlabFlags{zones: "a,b,a,b", order: "sorted"}, "--ring-order"},
	} {
		_, err := tc.f.build(context.Background(), 4)
		var ee *exitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitUsage || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want a usage error naming %s", tc.f, err, tc.want)
		}
	}
}
