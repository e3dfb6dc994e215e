// Package tensor holds ringtrain's compute kernels: matrix multiplication and the
// per-layer forward and backward operations of a GPT (embedding, LayerNorm, linear,
// attention, GELU, residual, softmax cross-entropy), written against the Backend
// interface so that model code does not depend on where the kernels run, plus the
// AdamW update as a kernel (AdamW).
//
// The model package is the only caller, for training and for generation; benchmarks
// and tests call the kernels directly.
//
// # Memory
//
// The op set is device-aware (memory.go): buffers are slices whose memory the backend
// owns, moved with Upload and Download and waited for with events, so that a model
// runs unchanged on a device. The CPU's buffers are host memory and those moves
// between a slice and itself are no-ops. Guarded (Linux) runs the CPU kernels over
// buffers that fault when host code touches them outside a call: the tests' way of
// proving that the model reaches backend memory only through the op set. Open picks a
// backend by name for --backend; tensor/cuda (build tag cuda) registers "cuda".
//
// # Determinism
//
// Every kernel gives the same bits whatever the number of threads. Work is split over
// goroutines only along dimensions whose outputs are independent (rows, heads, output
// columns, tiles of a matrix product); every reduction runs over a fixed range in a
// fixed order inside one goroutine. Replicas on different machines, resumed runs and
// recomputed steps depend on this.
//
// Results also do not depend on which vector instructions a CPU has, except for the
// portable matrix kernel: the AVX-512 and AVX2 gemm micro-kernels round every element
// identically (see Gemm), and the vector versions of the element-wise and row kernels
// (GELU, exp in softmax and cross-entropy, LayerNorm, AdamW) perform the scalar code's
// float32 operations in the scalar code's order, without fused multiply-adds. A CPU
// without AVX2 and FMA, or a build with the purego tag, uses the portable gemm kernel,
// whose products are rounded separately, so its bits differ in the last places.
//
// # Matrix multiplication
//
// Gemm is a packed, cache-blocked sgemm in the BLIS/GotoBLAS mould: C is cut into
// tasks (row blocks by column panels); a task packs its panel of op(B) into slivers of
// nr columns, once per goroutine, and walks its rows mr at a time, the (mr,kc) sliver of
// op(A) in L1 while a register-blocked micro-kernel streams the B slivers from L2.
// Operands whose layout the kernel can stream are read in place instead of packed. The
// micro-kernels are Go assembly: 14x32 with 28 zmm accumulators on AVX-512 (A elements
// broadcast from memory into the fused multiply-adds; a 14x8 variant takes a last column
// sliver of at most 8 columns, such as the LM head's odd vocabulary) and 6x16 on
// AVX2+FMA (with a 6x8 variant for such slivers); a 4x4 Go kernel serves other CPUs.
// The best kernel the CPU supports (golang.org/x/sys/cpu) is chosen at start-up;
// RINGTRAIN_GEMM_KERNEL=avx512|avx2|generic pins one (a mixed cluster that wants
// identical bits everywhere pins generic, or runs on vector CPUs only), and
// SetGemmKernel switches it for benchmarks and tests.
//
// The k dimension is summed in blocks whose bounds depend on k alone, each block in
// order with fused multiply-adds from zero, so the arithmetic of an element never
// depends on the tile layout, the kernel or the thread count. MeasurePeak times the
// active micro-kernel on cache-resident data: the peak that model FLOP utilisation is
// reported against.
//
// # Attention
//
// Attention never stores a (T,T) matrix. The forward walks each head's scores in tiles
// (attnBlock query rows by attnKeyBlock keys) with an online softmax and keeps only each
// query row's log-sum-exp, (B,H,T), for backward; the backward recomputes each tile of
// probabilities from q, k and that log-sum-exp, with D = rowsum(dout ⊙ out) for the
// softmax gradient. Under the causal mask, tiles wholly above the diagonal are skipped.
// A head's tiles run in a fixed order on one goroutine, heads in parallel.
//
// AttentionForwardRanges and AttentionBackwardRanges are the causal kernels with a
// per-position start of the causal range: query t of row b sees keys [start[b·T+t], t],
// which keeps several examples packed into one row apart. The same tile loops run
// with the keys before a row's start zeroed like the masked future ones, key tiles
// wholly before a query tile's smallest start skipped, and a row's online softmax
// beginning at the tile holding its start; a nil start is the causal path, bit for bit.
//
// Generation uses AttentionDecodeForward instead: a few new positions of one sequence
// append their keys and values to a per-layer cache and attend over every cached
// position. A query row is at most MaxSeqLen scores, so it is kept whole and softmaxed
// in two passes; the heads run in parallel once a call has enough work.
//
// # Threads and allocation
//
// Parallel kernels run on the calling goroutine and on helper goroutines started on
// first use (at most GOMAXPROCS-1, living for the life of the process; their function
// is (*helperPool).loop). Kernel arguments, gemm jobs, pack buffers and scratch come
// from free lists that are never emptied, so once a training step has run, the next
// allocates nothing in this package.
//
// # Reference kernels
//
// The naive versions of the optimised kernels (NaiveGemm, NaiveAttentionForward and
// NaiveAttentionBackward and their Ranges forms, NaiveAttentionDecodeForward, NaiveGeluForward and
// NaiveGeluBackward) stay in the package as the references the tests compare against.
//
// Usage:
//
//	var be tensor.Backend = tensor.NewCPU()
//	be.MatmulForward(out, inp, w, bias, N, C, OC) // out (N,OC) = inp (N,C) · wᵀ + bias
package tensor
