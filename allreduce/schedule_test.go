package allreduce

import (
	"slices"
	"testing"
)

// scheduleCases yields every (world, n, segElems) the exhaustive tests cover.
func scheduleCases(f func(world, n, segElems int)) {
	for world := 1; world <= 16; world++ {
		ns := []int{}
		for n := 0; n <= 3*world+5; n++ {
			ns = append(ns, n)
		}
		ns = append(ns, 97, 1000, 4099)
		for _, n := range ns {
			for _, seg := range []int{1, 2, 3, 7, 64, 1 << 18} {
				f(world, n, seg)
			}
		}
	}
}

func TestScheduleSegmentsPartition(t *testing.T) {
	scheduleCases(func(world, n, seg int) {
		s := newSchedule(world, 0, n, seg)
		if s.segs < 1 {
			t.Fatalf("w=%d n=%d seg=%d: %d segments", world, n, seg, s.segs)
		}
		// Blocks, segment k of chunk c being block k*world+c, tile [0, n)
		// in order, each within the segment size, lengths within one.
		next, shortest, longest := 0, n, 0
		for k := range s.segs {
			for c := range world {
				lo, hi := s.segment(c, k)
				if lo != next || hi < lo || hi-lo > seg {
					t.Fatalf("w=%d n=%d seg=%d: chunk %d segment %d is [%d,%d), want it to start at %d", world, n, seg, c, k, lo, hi, next)
				}
				for i := lo; i < hi; i++ {
					if s.chunkOf(i) != c {
						t.Fatalf("w=%d n=%d seg=%d: chunkOf(%d) = %d, want %d", world, n, seg, i, s.chunkOf(i), c)
					}
				}
				shortest, longest = min(shortest, hi-lo), max(longest, hi-lo)
				next = hi
			}
		}
		if next != n || longest-shortest > 1 {
			t.Fatalf("w=%d n=%d seg=%d: blocks end at %d, lengths %d..%d", world, n, seg, next, shortest, longest)
		}
		if want := max(1, (n+world*seg-1)/(world*seg)); s.segs != want {
			t.Fatalf("w=%d n=%d seg=%d: %d segments per chunk, want %d", world, n, seg, s.segs, want)
		}
	})
}

// TestScheduleSimulated runs the schedule on symbolic values: each element of
// each rank is the list of ranks summed into it, in order. Every rank must end
// with every chunk summed from every rank in the chunk's reduce order, what a
// rank expects must be what its left neighbour sends, and every reduce-scatter
// message must add into a value no other rank has touched yet.
func TestScheduleSimulated(t *testing.T) {
	for world := 1; world <= 16; world++ {
		scheds := make([]schedule, world)
		state := make([][][]int, world) // state[rank][chunk] = contributors in order
		for r := range world {
			scheds[r] = newSchedule(world, r, 5*world, 1)
			state[r] = make([][]int, world)
			for c := range world {
				state[r][c] = []int{r}
			}
		}
		if got := scheds[0].steps(); got != 2*(world-1) {
			t.Fatalf("w=%d: %d steps", world, got)
		}
		for step := range scheds[0].steps() {
			sent := make([][]int, world)
			for r := range world {
				sent[r] = slices.Clone(state[r][scheds[r].sendChunk(step)])
			}
			for r := range world {
				right := (r + 1) % world
				c := scheds[right].recvChunk(step)
				if c != scheds[r].sendChunk(step) {
					t.Fatalf("w=%d step %d: rank %d sends chunk %d, rank %d expects chunk %d", world, step, r, scheds[r].sendChunk(step), right, c)
				}
				if step+1 < scheds[r].steps() && scheds[right].recvChunk(step) != scheds[right].sendChunk(step+1) {
					t.Fatalf("w=%d: rank %d receives chunk %d at step %d but sends chunk %d next", world, right, c, step, scheds[right].sendChunk(step+1))
				}
				if scheds[right].reduces(step) {
					if len(state[right][c]) != 1 {
						t.Fatalf("w=%d step %d: rank %d adds into chunk %d already holding %v", world, step, right, c, state[right][c])
					}
					state[right][c] = append(sent[r], right)
				} else {
					state[right][c] = sent[r]
				}
			}
			if step == world-2 {
				for c := range world {
					o := scheds[0].owner(c)
					if !slices.Equal(state[o][c], scheds[0].reduceOrder(c)) {
						t.Fatalf("w=%d: after reduce-scatter owner %d of chunk %d holds %v, want %v", world, o, c, state[o][c], scheds[0].reduceOrder(c))
					}
				}
			}
		}
		for r := range world {
			for c := range world {
				if !slices.Equal(state[r][c], scheds[r].reduceOrder(c)) {
					t.Fatalf("w=%d: rank %d chunk %d holds %v, want %v", world, r, c, state[r][c], scheds[r].reduceOrder(c))
				}
			}
		}
	}
}

// TestScheduleDependencies checks that the waits a rank's sender and receiver
// do order every pair of messages that touch the same elements, where one of
// them writes: the receiver writes, the sender reads.
func TestScheduleDependencies(t *testing.T) {
	for world := 2; world <= 9; world++ {
		for _, n := range []int{0, 1, world - 1, world, 3*world + 1, 40} {
			for _, seg := range []int{1, 2, 5, 1 << 10} {
				for r := range world {
					checkScheduleDependencies(t, newSchedule(world, r, n, seg))
				}
			}
		}
	}
}

func checkScheduleDependencies(t *testing.T, s schedule) {
	t.Helper()
	type region struct{ lo, hi int }
	sendReg := func(i int) region {
		step, k := s.item(i)
		lo, hi := s.segment(s.sendChunk(step), k)
		return region{lo, hi}
	}
	recvReg := func(j int) region {
		step, k := s.item(j)
		lo, hi := s.segment(s.recvChunk(step), k)
		return region{lo, hi}
	}
	// Dependencies grow with the message index (the pipeline takes tokens in
	// order) and point to earlier messages of the shared order.
	for _, dep := range []func(int) int{s.sendAfterRecv, s.recvAfterSend} {
		last := -1
		for i := range s.items() {
			if d := dep(i); d >= 0 {
				if d <= last || d >= i {
					t.Fatalf("%+v: message %d depends on %d after a dependency on %d", s, i, d, last)
				}
				last = d
			}
		}
	}
	// The order visits every (step, segment) once, and index inverts item.
	seen := map[[2]int]bool{}
	for i := range s.items() {
		step, seg := s.item(i)
		if seen[[2]int{step, seg}] || s.index(step, seg) != i {
			t.Fatalf("%+v: message %d is step %d segment %d, indexed %d", s, i, step, seg, s.index(step, seg))
		}
		seen[[2]int{step, seg}] = true
	}
	for i := range s.items() {
		if d := s.sendAfterRecv(i); d >= 0 && sendReg(i) != recvReg(d) {
			t.Fatalf("%+v: send %d waits for receive %d of another region", s, i, d)
		}
	}
	for i := range s.items() {
		a := sendReg(i)
		for j := range s.items() {
			b := recvReg(j)
			if a.hi <= b.lo || b.hi <= a.lo {
				continue
			}
			recvFirst := s.sendAfterRecv(i) >= j
			sendFirst := s.recvAfterSend(j) >= i
			if !recvFirst && !sendFirst {
				t.Fatalf("%+v: send %d %v and receive %d %v overlap unordered", s, i, a, j, b)
			}
		}
	}
}

func TestChunkLo(t *testing.T) {
	for n := range 50 {
		for parts := 1; parts <= 17; parts++ {
			if chunkLo(n, parts, 0) != 0 || chunkLo(n, parts, parts) != n {
				t.Fatalf("chunkLo(%d, %d) does not span [0, n)", n, parts)
			}
		}
	}
}

// TestScheduleNoDeadlock runs whole rings of schedules as an event system
// with links that hold only cap messages, each rank sending and receiving in
// the shared order and waiting on its dependencies, and checks that every
// rank finishes: nothing waits in a cycle.
func TestScheduleNoDeadlock(t *testing.T) {
	for world := 2; world <= 7; world++ {
		for _, n := range []int{1, world, 5 * world, 17*world + 3} {
			for _, seg := range []int{1, 2, 3} {
				for _, cap := range []int{1, 2} {
					simulateRing(t, world, n, seg, cap)
				}
			}
		}
	}
}

func simulateRing(t *testing.T, world, n, seg, cap int) {
	t.Helper()
	scheds := make([]schedule, world)
	sent := make([]int, world) // messages each rank has sent
	recvd := make([]int, world)
	inLink := make([]int, world) // messages in link r -> r+1
	for r := range world {
		scheds[r] = newSchedule(world, r, n, seg)
	}
	total := scheds[0].items()
	for progress := true; progress; {
		progress = false
		for r := range world {
			s := scheds[r]
			if i := sent[r]; i < total && inLink[r] < cap && s.sendAfterRecv(i) < recvd[r] {
				sent[r]++
				inLink[r]++
				progress = true
			}
			left := (r + world - 1) % world
			if j := recvd[r]; j < total && inLink[left] > 0 && s.recvAfterSend(j) < sent[r] {
				recvd[r]++
				inLink[left]--
				progress = true
			}
		}
	}
	for r := range world {
		if sent[r] != total || recvd[r] != total {
			t.Fatalf("w=%d n=%d seg=%d cap=%d: rank %d stuck after sending %d and receiving %d of %d",
				world, n, seg, cap, r, sent[r], recvd[r], total)
		}
	}
}
