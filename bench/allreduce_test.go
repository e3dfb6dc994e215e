package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/netlab"
)

// TestAllReduce runs the all-reduce benchmark between two helper processes at two
// small sizes, with the raw TCP measurement, and checks the report's numbers and
// both of its forms.
func TestAllReduce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := AllReduceOptions{World: 2, Sizes: []int{4096, 256 << 10}, Iters: 2, Warmup: 1, Segment: 64 << 10, Compression: "none"}
	rep, err := AllReduce(ctx, o, WireOptions{Seconds: 0.05}, testSpawner{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != len(o.Sizes) {
		t.Fatalf("%d rows, want %d", len(rep.Rows), len(o.Sizes))
	}
	for i, r := range rep.Rows {
		if r.Bytes != o.Sizes[i] || r.Count != o.Sizes[i]/4 || r.TimeUS <= 0 || r.AlgBWGBps <= 0 || r.BusBWGBps != r.AlgBWGBps {
			t.Errorf("row %d: %+v (at W=2 busbw is algbw)", i, r)
		}
	}
	if !rep.Wire || rep.OneWayGBps <= 0 || rep.DuplexGBps <= 0 {
		t.Errorf("wire: %v, one way %v GB/s, duplex %v GB/s", rep.Wire, rep.OneWayGBps, rep.DuplexGBps)
	}

	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
	lines := strings.Split(strings.TrimSuffix(table.String(), "\n"), "\n")
	if len(lines) != 2+len(o.Sizes)+1 || !strings.HasPrefix(lines[0], "# ringtrain all-reduce: 2 ranks") ||
		!strings.Contains(lines[0], "segment 65536 bytes, compression none") || !strings.HasPrefix(lines[len(lines)-1], "# wire ceiling") {
		t.Errorf("table:\n%s", table.String())
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var got struct {
		World   int            `json:"world"`
		Results []AllReduceRow `json:"results"`
		OneWay  float64        `json:"tcp_one_way_gbps"`
	}
	if err := json.Unmarshal(js.Bytes(), &got); err != nil || got.World != 2 || len(got.Results) != 2 || got.OneWay != rep.OneWayGBps {
		t.Errorf("json %s: %v", js.String(), err)
	}
}

// TestAllReduceWithoutWire: a compressed run of one rank with no raw TCP
// measurement prints no wire line.
func TestAllReduceWithoutWire(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := AllReduceOptions{World: 1, Sizes: []int{1024}, Iters: 1, Warmup: 1, Compression: "bf16"}
	rep, err := AllReduce(ctx, o, WireOptions{Skip: true}, testSpawner{})
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if rep.Wire || strings.Contains(table.String(), "wire ceiling") {
		t.Errorf("wire measured with Skip:\n%s", table.String())
	}
}

func TestAllReduceOptionsValidate(t *testing.T) {
	ok := AllReduceOptions{World: 2, Sizes: []int{4096}, Iters: 1, Warmup: 1, Compression: "none"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*AllReduceOptions){
		"world 0":       func(o *AllReduceOptions) { o.World = 0 },
		"world 65":      func(o *AllReduceOptions) { o.World = 65 },
		"no sizes":      func(o *AllReduceOptions) { o.Sizes = nil },
		"odd size":      func(o *AllReduceOptions) { o.Sizes = []int{6} },
		"no iters":      func(o *AllReduceOptions) { o.Iters = 0 },
		"no warmup":     func(o *AllReduceOptions) { o.Warmup = 0 },
		"unknown codec": func(o *AllReduceOptions) { o.Compression = "zstd" },
	} {
		o := ok
		o.Sizes = append([]int(nil), ok.Sizes...)
		edit(&o)
		if err := o.Validate(); !errors.Is(err, ErrBadOptions) {
			t.Errorf("%s: %v, want ErrBadOptions", name, err)
		}
	}
}

// TestAllReduceExact: with Exact every size has a float row and an int64 row of
// as many elements and twice the bytes, both measured.
func TestAllReduceExact(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := AllReduceOptions{World: 3, Sizes: []int{4096, 64 << 10}, Iters: 2, Warmup: 1, Segment: 16 << 10, Compression: "none", Exact: true}
	rep, err := AllReduce(ctx, o, WireOptions{Skip: true}, testSpawner{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 2*len(o.Sizes) {
		t.Fatalf("%d rows, want %d", len(rep.Rows), 2*len(o.Sizes))
	}
	for i, size := range o.Sizes {
		f, n := rep.Rows[2*i], rep.Rows[2*i+1]
		if f.Type != "float" || f.Bytes != size || n.Type != "int64" || n.Bytes != 2*size || n.Count != f.Count || f.TimeUS <= 0 || n.TimeUS <= 0 {
			t.Errorf("size %d: rows %+v and %+v", size, f, n)
		}
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
}

// TestAllReduceInLab runs three ranks in a network lab whose links carry 100
// Mbit/s and checks that the ring is bound by the links: its bus bandwidth is at
// most the link rate, and (the CPU not being the limit at this rate) at least half
// of it.
func TestAllReduceInLab(t *testing.T) {
	if err := netlab.Available(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	link := netlab.Link{Rate: 100e6}
	lab, err := NewLab(ctx, 3, LabOptions{Link: link})
	if errors.Is(err, netlab.ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	}()
	o := AllReduceOptions{World: 3, Sizes: []int{3 << 20}, Iters: 2, Warmup: 1, Compression: "none"}
	rep, err := AllReduce(ctx, o, WireOptions{Seconds: 0.3}, LabSpawner{Inner: testSpawner{}, Hosts: lab.Hosts()})
	if err != nil {
		t.Fatal(err)
	}
	rep.Network, rep.LinkGBps = "processes in lab namespaces", link.GBps()
	var table bytes.Buffer
	rep.WriteTable(&table)
	t.Logf("\n%s", table.String())
	if bus := rep.Rows[0].BusBWGBps; bus > link.GBps()*1.05 || bus < link.GBps()/2 {
		t.Errorf("busbw %.4f GB/s over %.4f GB/s links: want at most the link and at least half of it", bus, link.GBps())
	}
	if rep.OneWayGBps > link.GBps()*1.05 {
		t.Errorf("raw TCP %.4f GB/s over a %.4f GB/s link", rep.OneWayGBps, link.GBps())
	}
	if !strings.Contains(table.String(), "busbw/link") {
		t.Errorf("table without the link column:\n%s", table.String())
	}
}
