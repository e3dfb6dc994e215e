package main

import (
	"bytes"
	"strings"
	"testing"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

func TestPrintStragglers(t *testing.T) {
	var b bytes.Buffer
	printStragglers(&b, &pb.Progress{})
	if b.Len() != 0 {
		t.Errorf("no rank times printed %q", b.String())
	}
	printStragglers(&b, &pb.Progress{Ranks: []*pb.RankTime{{Rank: 0, WorkerId: "a", ComputeS: 0.01}}})
	if strings.Contains(b.String(), "slowest") || !strings.Contains(b.String(), "rank 0\ta\tcompute 10.0 ms\twait 0.0 ms") {
		t.Errorf("one rank: %q, want its times and no slowest line", b.String())
	}
	b.Reset()
	printStragglers(&b, &pb.Progress{Ranks: []*pb.RankTime{
		{Rank: 0, WorkerId: "a", ComputeS: 0.002, WaitS: 0.041},
		{Rank: 1, WorkerId: "b", ComputeS: 0.044, WaitS: 0.001},
		{Rank: 2, WorkerId: "c", ComputeS: 0.003, WaitS: 0.039},
	}})
	want := "slowest\trank 1 (b)\tcompute 44.0 ms/step\tthe others waited 40.0 ms/step for it\n"
	if !strings.HasPrefix(b.String(), want) || strings.Count(b.String(), "\n") != 4 {
		t.Errorf("three ranks:\n%s\nwant first %q and a line per rank", b.String(), want)
	}
}
