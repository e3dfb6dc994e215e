// Package bench measures ringtrain's building blocks: ring all-reduce bandwidth
// between processes on loopback beside the raw TCP ceiling (AllReduce), matrix
// multiplication speed on the model's shapes beside gonum and OpenBLAS (Gemm), and
// training-step speed with the model FLOP utilisation (Train).
//
// # Who calls it
//
// `ringtrain bench allreduce|gemm|train`, which parses the flags into these options
// and prints the reports, and whose hidden subcommands `bench allreduce-rank` and
// `bench tcp-rank` are the all-reduce benchmark's helper processes (AllReduceRank,
// TCPEnd). The package's own tests run each benchmark at a tiny size.
//
// # Usage
//
//	res, err := bench.Train(ctx, bench.TrainOptions{Model: model.Config{Layers: 4, Heads: 4,
//		Embd: 128, VocabSize: 67}, Seq: 64, Batch: 12, Warmup: 3, Steps: 10, Threads: 2,
//		PeakTime: time.Second, Seed: 1337}, os.Stdout) // writes the report as it goes
//
//	shapes, _ := bench.GemmShapes("tiny")
//	_, err = bench.Gemm(ctx, bench.GemmOptions{Shapes: shapes, Threads: 2, Reps: 3,
//		Time: 300 * time.Millisecond}, os.Stdout)
//
//	rep, err := bench.AllReduce(ctx, bench.AllReduceOptions{World: 2, Sizes: []int{64 << 20},
//		Iters: 20, Warmup: 3, Compression: "none"}, bench.WireOptions{Seconds: 1}, spawner)
//	rep.WriteTable(os.Stdout)
//
// # Why helper processes
//
// An all-reduce between goroutines of one process would share one scheduler and one
// allocator and would not cross the kernel's TCP stack as workers do. So each rank is
// a process of its own, made by a Spawner (the CLI re-executes itself), linked to the
// others over real gRPC and TCP lanes; the ranks and the benchmark speak JSON lines
// over the ranks' stdin and stdout, and a rank exits when its stdin closes, so a
// benchmark that dies takes its ranks with it. The raw TCP measurement uses two more
// such processes, for the wire's ceiling under the same conditions.
//
// # In a network lab
//
// On loopback every link is a memory copy. NewLab builds a network lab (package
// netlab) with a namespace per rank behind a shaped link, and LabSpawner wraps a
// Spawner so that rank r runs in host r and serves on its address, and the raw TCP
// measurement crosses the link between hosts 0 and 1:
//
//	lab, err := bench.NewLab(ctx, 4, bench.LabOptions{Link: netlab.Link{Rate: 1e9}})
//	defer lab.Close()
//	rep, err := bench.AllReduce(ctx, o, wire, bench.LabSpawner{Inner: spawner, Hosts: lab.Hosts()})
//
// The compute benchmarks set process-wide state while they run (GOMAXPROCS); the
// gemm micro-kernel is chosen beforehand with tensor.SetGemmKernel. They are meant to
// run alone in their process.
package bench
