package tensor

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// Gemm computes C = alpha * op(A) · op(B) + beta * C for row-major matrices, where op(X)
// is X or Xᵀ. op(A) is (m,k), op(B) is (k,n), C is (m,n); lda, ldb and ldc are row strides
// (at least the stored row length). With beta == 0, C is not read.
//
// It is safe to call concurrently on disjoint outputs, and it allocates nothing once the
// package's pack buffers and helper goroutines exist (after the first calls).
//
// Determinism: every element of C is Σ_p op(A)(i,p)·op(B)(p,j) summed over p in blocks
// whose bounds depend on k alone (kBlock), each block in order of p with fused
// multiply-adds from zero, then added into C block after block. Which goroutine computes
// which tile never changes the arithmetic, so the result depends on the shapes and the
// inputs only, never on the number of threads or on the tile layout. The AVX-512 and the
// AVX2 kernels give the same bits.
//
// Structure (the BLIS loop nest, with op(B) as the packed operand): C is cut into tasks
// of (mb,nb) elements, claimed by the calling goroutine and up to GOMAXPROCS-1 helpers.
// A task packs the (k,nb) column panel of op(B) into slivers of nr columns (once per
// goroutine and panel: later tasks of the same panel reuse it), then for each block of
// k walks its rows mr at a time: the (mr,kc) sliver of op(A) stays in L1 while the
// micro-kernel runs over the B slivers from L2. op(A) is read in place, where its layout
// lets the kernel stream it, and packed otherwise (bottom edge, rows 4 KiB apart); a
// non-transposed B is read in place too when C has too few rows to amortise packing.
func Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemm(true, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, nil, c, ldc)
}

// GemmBias computes C = alpha * op(A) · op(B) + bias, the bias row (n) added to every
// row of C, with the multiply-add of the bias fused into the first write of C (C is
// not read). bias may be nil. Otherwise it is Gemm with beta 0.
func GemmBias(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, bias, c []float32, ldc int) {
	if bias != nil && len(bias) < n {
		panic(fmt.Sprintf("tensor: GemmBias bias has %d elements, need %d", len(bias), n))
	}
	gemm(true, transA, transB, m, n, k, alpha, a, lda, b, ldb, 0, bias, c, ldc)
}

// gemmSerial is Gemm on the calling goroutine alone, for kernels that already run one
// goroutine per independent piece (attention: one per (batch, head) pair). Its results
// are those of Gemm, bit for bit.
func gemmSerial(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemm(false, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, nil, c, ldc)
}

// gemm is Gemm (bias == nil) and GemmBias (beta == 0), on helpers too if parallel.
func gemm(parallel, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, bias, c []float32, ldc int) {
	checkGemm(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || alpha == 0 {
		scaleMatrix(c, m, n, ldc, beta)
		if bias != nil {
			for i := range m {
				copy(c[i*ldc:i*ldc+n], bias)
			}
		}
		return
	}
	g := gemmJobs.get()
	g.init(activeKernel, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	g.bias = bias
	helpersWanted := 0
	if parallel {
		helpersWanted = g.threads() - 1
	}
	runJob(g, &g.pieces, helpersWanted, func() bool { return g.work(true) })
}

// checkGemm panics with a message naming the argument when the shapes or slices of a
// Gemm call are inconsistent: these are programming errors, as in BLAS.
func checkGemm(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("tensor: Gemm with negative size m=%d n=%d k=%d", m, n, k))
	}
	check := func(name string, s []float32, rows, cols, ld int) {
		if ld < max(1, cols) {
			panic(fmt.Sprintf("tensor: Gemm %s stride %d < row length %d", name, ld, cols))
		}
		if rows > 0 && cols > 0 && len(s) < (rows-1)*ld+cols {
			panic(fmt.Sprintf("tensor: Gemm %s has %d elements, need %d for (%d,%d) with stride %d", name, len(s), (rows-1)*ld+cols, rows, cols, ld))
		}
	}
	if transA {
		check("A", a, k, m, lda)
	} else {
		check("A", a, m, k, lda)
	}
	if transB {
		check("B", b, n, k, ldb)
	} else {
		check("B", b, k, n, ldb)
	}
	check("C", c, m, n, ldc)
}

// scaleMatrix sets C = beta * C (C = 0 without reading it when beta == 0).
func scaleMatrix(c []float32, m, n, ldc int, beta float32) {
	if beta == 1 {
		return
	}
	for i := range m {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}

// Task sizing. A task should be large enough to amortise packing its B panel (one
// packed element per mb multiply-adds) and the job should have enough tasks for the
// goroutines to balance on a busy machine.
const (
	gemmTargetTasks = 8       // tasks a large job is cut into, at least
	gemmMinTaskRows = 64      // fewest rows of C per task, unless m is smaller
	gemmMinTaskCols = 128     // fewest columns of C per task when C is short
	gemmMinWork     = 1 << 16 // multiply-adds below which a job runs on one goroutine
	gemmWorkPerGo   = 1 << 16 // multiply-adds each extra goroutine must have, at least
	gemmPackBRows   = 1024    // rows of C from which a non-transposed B is packed
)

// gemmJob is one Gemm call being computed. It is reused through gemmJobs.
type gemmJob struct {
	kern           *gemmKernel
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a, b, c        []float32
	bias           []float32 // (n) added to every row of C, or nil (beta is 0 with a bias)
	lda, ldb, ldc  int
	kc             int  // length of the k blocks (kBlock)
	directA        bool // the kernel reads full A slivers in place
	directB        bool // the kernel reads full B slivers in place
	mb, nb         int  // rows and columns of C per task: multiples of kern.mr and kern.nr
	tasksM, tasksN int
	id             uint64 // unique per call: names the panels packed for it

	pieces // the tasks, claimed in order
}

// gemmCalls numbers Gemm calls (from 1).
var gemmCalls atomic.Uint64

var gemmJobs freeList[gemmJob]

func (g *gemmJob) init(kern *gemmKernel, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	g.kern = kern
	g.transA, g.transB = transA, transB
	g.m, g.n, g.k = m, n, k
	g.alpha, g.beta = alpha, beta
	g.a, g.b, g.c = a, b, c
	g.lda, g.ldb, g.ldc = lda, ldb, ldc
	g.kc = kBlock(k)
	// op(A) is read in place unless its rows are a multiple of 4 KiB apart: then the
	// rows of a sliver all map to one L1 set and evict each other, and packing wins.
	g.directA = transA || (lda*4)%4096 != 0
	// op(B) = B is read in place on the same condition when m is too small to amortise
	// packing (on large products the packed panel streams faster); Bᵀ is always packed.
	g.directB = !transB && (ldb*4)%4096 != 0 && m < gemmPackBRows
	g.id = gemmCalls.Add(1)

	// Columns: as few panels as fit, of balanced widths. Rows: enough tasks in all, but
	// not too few rows in each (each goroutine packs the B panels of its tasks). If C
	// is short, more, narrower column panels make up the number of tasks.
	g.tasksN, g.tasksM = ceilDiv(n, kern.nc), 1
	if m*n*k >= gemmMinWork {
		g.tasksM = min(ceilDiv(gemmTargetTasks, g.tasksN), max(1, m/gemmMinTaskRows))
		g.tasksN = max(g.tasksN, min(ceilDiv(gemmTargetTasks, g.tasksM), n/gemmMinTaskCols))
	}
	g.nb = roundUp(ceilDiv(n, g.tasksN), kern.nr)
	g.tasksN = ceilDiv(n, g.nb)
	g.mb = roundUp(ceilDiv(m, g.tasksM), kern.mr)
	g.tasksM = ceilDiv(m, g.mb)
	g.reset(g.tasksM * g.tasksN)
}

// threads returns how many goroutines should work on the job.
func (g *gemmJob) threads() int {
	w := min(runtime.GOMAXPROCS(0), g.tasksM*g.tasksN)
	return max(1, min(w, g.m*g.n*g.k/gemmWorkPerGo))
}

func (g *gemmJob) help() { g.work(false) }

// work claims and computes tasks until none is left; see pieces.finish for last.
func (g *gemmJob) work(caller bool) (last bool) {
	var buf *gemmBuf
	for {
		t := g.claim()
		if t < 0 {
			break
		}
		if buf == nil {
			buf = getGemmBuf()
		}
		// Tasks of one column panel are consecutive, so that a goroutine moving on to
		// the next task usually finds that panel of op(B) already packed.
		g.task(t%g.tasksM, t/g.tasksM, buf)
		last = g.finish(caller)
	}
	if buf != nil {
		putGemmBuf(buf)
	}
	return last
}

func (g *gemmJob) release() {
	if g.refs.Add(-1) == 0 {
		g.a, g.b, g.c, g.bias = nil, nil, nil, nil
		gemmJobs.put(g)
	}
}

// task computes the (mb,nb) block (tm,tn) of C.
func (g *gemmJob) task(tm, tn int, buf *gemmBuf) {
	kern := g.kern
	mr, nr := kern.mr, kern.nr
	i0, i1 := tm*g.mb, min((tm+1)*g.mb, g.m)
	j0, j1 := tn*g.nb, min((tn+1)*g.nb, g.n)
	width := roundUp(j1-j0, nr) // of the packed panel
	keep := !g.directB && g.k*width <= len(buf.b)
	if keep && (buf.job != g.id || buf.panel != tn) {
		// Pack the whole k range of this column panel once; later tasks of the panel
		// on this goroutine reuse it. Block p0 starts at p0*width.
		for p0 := 0; p0 < g.k; p0 += g.kc {
			g.packB(buf.b[p0*width:], p0, min(g.kc, g.k-p0), j0, j1, nr)
		}
		buf.job, buf.panel = g.id, tn
	}
	// With op(B) read in place, only a last sliver narrower than nr is packed.
	edge := j0 + (j1-j0)/nr*nr
	for p0 := 0; p0 < g.k; p0 += g.kc {
		kc := min(g.kc, g.k-p0)
		first := p0 == 0
		set := first && g.beta == 0 // the kernel writes C without reading it
		panel := buf.b
		switch {
		case keep:
			panel = buf.b[p0*width:]
		case g.directB:
			if edge < j1 {
				g.packB(panel, p0, kc, edge, j1, nr)
			}
			buf.job = 0
		default:
			g.packB(panel, p0, kc, j0, j1, nr)
			buf.job = 0
		}
		for i := i0; i < i1; i += mr {
			rows := min(mr, i1-i)
			var ap *float32
			var ars, aks int
			switch {
			case rows < mr || !g.directA:
				packA(buf.a, g.a, g.lda, g.transA, i, rows, mr, p0, kc)
				ap, ars, aks = &buf.a[0], 1, mr
			case g.transA:
				ap, ars, aks = &g.a[p0*g.lda+i], 1, g.lda
			default:
				ap, ars, aks = &g.a[i*g.lda+p0], g.lda, 1
			}
			for j := j0; j < j1; j += nr {
				cols := min(nr, j1-j)
				var bp *float32
				bks := nr
				switch {
				case !g.directB:
					bp = &panel[(j-j0)*kc]
				case j < edge:
					bp, bks = &g.b[p0*g.ldb+j], g.ldb
				default:
					bp = &panel[0]
				}
				if first && g.beta != 0 && g.beta != 1 {
					scaleMatrix(g.c[i*g.ldc+j:], rows, cols, g.ldc, g.beta)
				}
				var bias *float32 // nil: accumulate into C
				if set {
					switch {
					case g.bias == nil:
						bias = &zeroRow[0]
					case cols == nr:
						bias = &g.bias[j]
					default:
						clear(buf.bias[cols:nr])
						copy(buf.bias[:cols], g.bias[j:j1])
						bias = &buf.bias[0]
					}
				}
				if rows == mr && cols == nr {
					kern.fn(kc, ap, ars, aks, bp, bks, &g.c[i*g.ldc+j], g.ldc, g.alpha, bias)
					continue
				}
				fn := kern.fn
				if kern.tail != nil && cols <= kern.tail.nr {
					fn = kern.tail.fn
				}
				// Edge tile: run the same kernel on a full tile in the buffer, so that
				// the arithmetic is that of every other tile.
				tile := buf.tile[:mr*nr]
				if !set {
					for r := range rows {
						copy(tile[r*nr:r*nr+cols], g.c[(i+r)*g.ldc+j:])
					}
				}
				fn(kc, ap, ars, aks, bp, bks, &tile[0], nr, g.alpha, bias)
				for r := range rows {
					copy(g.c[(i+r)*g.ldc+j:(i+r)*g.ldc+j+cols], tile[r*nr:])
				}
			}
		}
	}
}

// zeroRow is the bias row of plain C = alpha·acc writes (longer than any kernel's nr).
var zeroRow [64]float32

// packB packs rows [p0,p0+kc) and columns [j0,j1) of op(B) into dst as slivers of nr
// columns, each (kc,nr) row-major, the columns past j1 zero: element (p, j0+s·nr+c)
// goes to dst[s·kc·nr + p·nr + c].
func (g *gemmJob) packB(dst []float32, p0, kc, j0, j1, nr int) {
	b, ldb := g.b, g.ldb
	for j := j0; j < j1; j += nr {
		cols := min(nr, j1-j)
		s := dst[(j-j0)*kc : (j-j0)*kc+kc*nr]
		if cols < nr {
			clear(s)
		}
		if g.transB {
			transposeInto(s, nr, b[j*ldb+p0:], ldb, cols, kc)
			continue
		}
		src := b[p0*ldb+j:]
		switch {
		case cols == 32 && nr == 32:
			for p := range kc {
				*(*[32]float32)(s[p*32:]) = *(*[32]float32)(src[p*ldb:])
			}
		case cols == 16 && nr == 16:
			for p := range kc {
				*(*[16]float32)(s[p*16:]) = *(*[16]float32)(src[p*ldb:])
			}
		default:
			for p := range kc {
				copy(s[p*nr:p*nr+cols], src[p*ldb:])
			}
		}
	}
}

// packA packs rows [i,i+rows) and columns [p0,p0+kc) of op(A) into dst as one (mr,kc)
// sliver, k-major, the rows past i+rows zero: element (i+r, p0+p) goes to dst[p·mr + r].
func packA(dst, a []float32, lda int, transA bool, i, rows, mr, p0, kc int) {
	s := dst[:kc*mr]
	if rows < mr {
		clear(s)
	}
	if transA {
		src := a[p0*lda+i:]
		switch {
		case rows == 14 && mr == 14:
			for p := range kc {
				*(*[14]float32)(s[p*14:]) = *(*[14]float32)(src[p*lda:])
			}
		case rows == 6 && mr == 6:
			for p := range kc {
				*(*[6]float32)(s[p*6:]) = *(*[6]float32)(src[p*lda:])
			}
		default:
			for p := range kc {
				copy(s[p*mr:p*mr+rows], src[p*lda:])
			}
		}
		return
	}
	transposeInto(s, mr, a[i*lda+p0:], lda, rows, kc)
}

// transposeInto sets dst[p·ld + r] = src[r·lds + p] for r < rows and p < cols: it
// writes the (rows,cols) matrix at src, stride lds, transposed into dst, stride ld. The
// vector code does whole 8x8 blocks; the rest goes four source rows at a time, so that
// each destination row is written in runs.
func transposeInto(dst []float32, ld int, src []float32, lds, rows, cols int) {
	vr, vc := transposeVec(dst, ld, src, lds, rows, cols)
	if vc < cols {
		transposeScalar(dst[vc*ld:], ld, src[vc:], lds, vr, cols-vc)
	}
	if vr < rows {
		transposeScalar(dst[vr:], ld, src[vr*lds:], lds, rows-vr, cols)
	}
}

func transposeScalar(dst []float32, ld int, src []float32, lds, rows, cols int) {
	r := 0
	for ; r+4 <= rows; r += 4 {
		s0 := src[r*lds : r*lds+cols]
		s1 := src[(r+1)*lds:][:len(s0)]
		s2 := src[(r+2)*lds:][:len(s0)]
		s3 := src[(r+3)*lds:][:len(s0)]
		d := dst[r:]
		for p, v := range s0 {
			o := (*[4]float32)(d[p*ld:])
			o[0], o[1], o[2], o[3] = v, s1[p], s2[p], s3[p]
		}
	}
	for ; r < rows; r++ {
		for p, v := range src[r*lds : r*lds+cols] {
			dst[p*ld+r] = v
		}
	}
}

// gemmPanelFloats is the size of a goroutine's B panel buffer: a column panel of op(B)
// packed over all of k when k·nb fits (k up to 2048 at nb 512), else one k block at a
// time.
const gemmPanelFloats = 1 << 20

// gemmBuf holds one goroutine's packed panels. Buffers are kept on a free list for the
// life of the process, so Gemm allocates nothing after the first calls.
type gemmBuf struct {
	a    []float32 // (gemmKC, mr) packed A sliver
	b    []float32 // (gemmPanelFloats) packed B panel
	tile []float32 // (mr, nr) edge tile
	bias []float32 // (nr) bias of a right-edge tile, zero-padded
	// b holds column panel `panel` of job `job` over all of k (job 0: nothing reusable)
	job   uint64
	panel int
}

var gemmBufs struct {
	sync.Mutex
	free []*gemmBuf
}

func getGemmBuf() *gemmBuf {
	gemmBufs.Lock()
	if n := len(gemmBufs.free); n > 0 {
		b := gemmBufs.free[n-1]
		gemmBufs.free = gemmBufs.free[:n-1]
		gemmBufs.Unlock()
		return b
	}
	gemmBufs.Unlock()
	var mr, nr, nc int
	for _, k := range gemmKernels {
		mr, nr, nc = max(mr, k.mr), max(nr, k.nr), max(nc, k.nc)
	}
	return &gemmBuf{a: make([]float32, gemmKC*mr), b: make([]float32, max(gemmPanelFloats, gemmKC*nc)),
		tile: make([]float32, mr*nr), bias: make([]float32, nr)}
}

func putGemmBuf(b *gemmBuf) {
	gemmBufs.Lock()
	gemmBufs.free = append(gemmBufs.free, b)
	gemmBufs.Unlock()
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func roundUp(a, b int) int { return ceilDiv(a, b) * b }

// NaiveGemm is the reference for Gemm: the textbook triple loop, accumulating in float64.
func NaiveGemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for l := 0; l < k; l++ {
				var av, bv float32
				if transA {
					av = a[l*lda+i]
				} else {
					av = a[i*lda+l]
				}
				if transB {
					bv = b[j*ldb+l]
				} else {
					bv = b[l*ldb+j]
				}
				s += float64(av) * float64(bv)
			}
			old := float32(0)
			if beta != 0 {
				old = beta * c[i*ldc+j]
			}
			c[i*ldc+j] = alpha*float32(s) + old
		}
	}
}
