// ringtrain's CUDA kernels: every op of tensor.Backend but the matrix products (cuBLAS).
//
// Written without CUDA headers so that Debian's clang can compile it to PTX
// (scripts/gpu/gen_ptx.sh); nvcc compiles it too. Every kernel is deterministic:
// reductions run in a fixed order inside one thread or as a fixed tree inside one
// block, never with atomics, so the same inputs give the same bits on every run.
// Shapes follow tensor/backend.go; all indices of large tensors are 64-bit.

#if defined(__clang__) && !defined(__NVCC__)
#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __shared__ __attribute__((shared))
#define TID ((int)__nvvm_read_ptx_sreg_tid_x())
#define BID ((long long)__nvvm_read_ptx_sreg_ctaid_x())
#define BDIM ((int)__nvvm_read_ptx_sreg_ntid_x())
#define SYNC() __syncthreads()
#define EXPF(x) __nvvm_ex2_approx_f((x) * 1.4426950408889634f)
#define LOGF(x) (__nvvm_lg2_approx_f(x) * 0.6931471805599453f)
#define SQRTF(x) __nvvm_sqrt_rn_f(x)
#else
#define TID ((int)threadIdx.x)
#define BID ((long long)blockIdx.x)
#define BDIM ((int)blockDim.x)
#define SYNC() __syncthreads()
#define EXPF(x) __expf(x)
#define LOGF(x) __logf(x)
#define SQRTF(x) __fsqrt_rn(x)
#endif

typedef long long i64;

// FMUL, FADD, FSUB and FDIV are single IEEE float32 operations (round to nearest, no
// flush to zero) that are never fused into multiply-adds: PTX with an explicit rounding
// mode, written as inline assembly so that no compiler pass turns it back into a plain
// multiply it may contract. The kernels that must give the CPU's bits (AdamW) use them.
#define PTX_BINARY(name, op) \
	__device__ static float name(float a, float b) { \
		float r; \
		asm(op " %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b)); \
		return r; \
	}
PTX_BINARY(FMUL, "mul.rn.f32")
PTX_BINARY(FADD, "add.rn.f32")
PTX_BINARY(FSUB, "sub.rn.f32")
PTX_BINARY(FDIV, "div.rn.f32")

// pairSwap returns v of the other thread of a pair of lanes (lane ^ 1); mask holds the
// pair, which must run it together.
__device__ static float pairSwap(float v, unsigned mask) {
	float r;
	asm volatile("shfl.sync.bfly.b32 %0, %1, 1, 0x1f, %2;" : "=f"(r) : "f"(v), "r"(mask));
	return r;
}

#define GID (BID * BDIM + TID)

// The block size every block-per-row kernel is launched with.
#define ROWBLOCK 256
// The largest head size attention supports (GPT-2's is 64).
#define MAXHS 128

__device__ static float tanh_f(float x) {
	// tanh(x) = 1 - 2/(exp(2x)+1), saturated to avoid inf/inf.
	if (x > 15.f) return 1.f;
	if (x < -15.f) return -1.f;
	return 1.f - 2.f / (EXPF(2.f * x) + 1.f);
}

// blockSum returns the sum of v over the block (ROWBLOCK threads) in a fixed tree order.
__device__ static float blockSum(float v, float* sh) {
	int t = TID;
	sh[t] = v;
	SYNC();
	for (int s = ROWBLOCK / 2; s > 0; s >>= 1) {
		if (t < s) sh[t] += sh[t + s];
		SYNC();
	}
	float r = sh[0];
	SYNC();
	return r;
}

__device__ static float blockMax(float v, float* sh) {
	int t = TID;
	sh[t] = v;
	SYNC();
	for (int s = ROWBLOCK / 2; s > 0; s >>= 1) {
		if (t < s && sh[t + s] > sh[t]) sh[t] = sh[t + s];
		SYNC();
	}
	float r = sh[0];
	SYNC();
	return r;
}

// out (N,C) = wte[inp] + wpe[t]; one thread per element.
extern "C" __global__ void encoder_forward(float* out, const int* inp, const float* wte, const float* wpe, int B, int T, int C) {
	i64 i = GID;
	if (i >= (i64)B * T * C) return;
	i64 n = i / C;
	int c = (int)(i % C), t = (int)(n % T);
	out[i] = wte[(i64)inp[n] * C + c] + wpe[(i64)t * C + c];
}

// dwte rows += dout per token. The vocabulary is cut into nranges ranges of ids; one
// thread per (range, channel) walks all positions in order and adds those whose token is
// in its range, so each row gets its additions in position order (the CPU's), and the
// threads of a warp (one range, consecutive channels) take the same branches.
extern "C" __global__ void encoder_backward_wte(float* dwte, const float* dout, const int* inp, int N, int C, int V, int nranges) {
	i64 i = GID;
	if (i >= (i64)nranges * C) return;
	int c = (int)(i % C), r = (int)(i / C);
	int per = (V + nranges - 1) / nranges;
	int v0 = r * per, v1 = v0 + per;
	for (int n = 0; n < N; n++) {
		int id = inp[n];
		if (id >= v0 && id < v1) dwte[(i64)id * C + c] += dout[(i64)n * C + c];
	}
}

// dwpe (T,C) += sum over b of dout; one thread per (t, c).
extern "C" __global__ void encoder_backward_wpe(float* dwpe, const float* dout, int B, int T, int C) {
	i64 i = GID;
	if (i >= (i64)T * C) return;
	float s = 0.f;
	for (int b = 0; b < B; b++) s += dout[(i64)b * T * C + i];
	dwpe[i] += s;
}

// LayerNorm over rows of C; one block per row.
extern "C" __global__ void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b, int N, int C) {
	__shared__ float sh[ROWBLOCK];
	i64 n = BID;
	const float* x = inp + n * C;
	float s = 0.f;
	for (int c = TID; c < C; c += ROWBLOCK) s += x[c];
	float m = blockSum(s, sh) / C;
	float v = 0.f;
	for (int c = TID; c < C; c += ROWBLOCK) { float d = x[c] - m; v += d * d; }
	float r = 1.f / SQRTF(blockSum(v, sh) / C + 1e-5f);
	for (int c = TID; c < C; c += ROWBLOCK) out[n * C + c] = (x[c] - m) * r * w[c] + b[c];
	if (TID == 0) { mean[n] = m; rstd[n] = r; }
}

// dinp += LayerNorm's input gradient; one block per row.
extern "C" __global__ void layernorm_backward_dinp(float* dinp, const float* dout, const float* inp, const float* w, const float* mean, const float* rstd, int N, int C) {
	__shared__ float sh[ROWBLOCK];
	i64 n = BID;
	float m = mean[n], r = rstd[n];
	const float* x = inp + n * C;
	const float* d = dout + n * C;
	float s1 = 0.f, s2 = 0.f;
	for (int c = TID; c < C; c += ROWBLOCK) {
		float dn = d[c] * w[c];
		s1 += dn;
		s2 += dn * (x[c] - m) * r;
	}
	float m1 = blockSum(s1, sh) / C, m2 = blockSum(s2, sh) / C;
	for (int c = TID; c < C; c += ROWBLOCK) {
		float norm = (x[c] - m) * r;
		dinp[n * C + c] += (d[c] * w[c] - m1 - norm * m2) * r;
	}
}

// Column sums of (N, C) matrices run in two fixed-order stages: one thread per (chunk of
// ROWCHUNK rows, column) sums its rows in order into partial[chunk*C + c]; then one thread
// per column adds its chunks' sums in order (column_sums). No atomics: the same bits on
// every run, with N/ROWCHUNK times the threads of one thread per column.
#define ROWCHUNK 64

// dst (C) += Σ_r partial[r*C + c] over nchunks, in order; one thread per column.
extern "C" __global__ void column_sums(float* dst, const float* partial, int nchunks, int C) {
	i64 c = GID;
	if (c >= C) return;
	float s = 0.f;
	for (int r = 0; r < nchunks; r++) s += partial[(i64)r * C + c];
	dst[c] += s;
}

// LayerNorm's parameter gradients, first stage: partial (2, nchunks, C) holds each chunk's
// Σ dout·norm (dw) then Σ dout (db); one thread per (chunk, channel).
extern "C" __global__ void layernorm_backward_dwdb(float* partial, const float* dout, const float* inp, const float* mean, const float* rstd, int N, int C) {
	int nchunks = (N + ROWCHUNK - 1) / ROWCHUNK;
	i64 i = GID;
	if (i >= (i64)nchunks * C) return;
	int c = (int)(i % C), r = (int)(i / C);
	int hi = r * ROWCHUNK + ROWCHUNK < N ? r * ROWCHUNK + ROWCHUNK : N;
	float sw = 0.f, sb = 0.f;
	for (int n = r * ROWCHUNK; n < hi; n++) {
		float d = dout[(i64)n * C + c];
		sw += d * (inp[(i64)n * C + c] - mean[n]) * rstd[n];
		sb += d;
	}
	partial[i] = sw;
	partial[(i64)nchunks * C + i] = sb;
}

// out (N,OC) += bias; one thread per element.
extern "C" __global__ void add_bias(float* out, const float* bias, int N, int OC) {
	i64 i = GID;
	if (i >= (i64)N * OC) return;
	out[i] += bias[i % OC];
}

// The bias gradient's first stage: partial (nchunks, OC) holds each chunk's column sums
// of dout (N,OC); one thread per (chunk, column).
extern "C" __global__ void bias_backward(float* partial, const float* dout, int N, int OC) {
	int nchunks = (N + ROWCHUNK - 1) / ROWCHUNK;
	i64 i = GID;
	if (i >= (i64)nchunks * OC) return;
	int o = (int)(i % OC), r = (int)(i / OC);
	int hi = r * ROWCHUNK + ROWCHUNK < N ? r * ROWCHUNK + ROWCHUNK : N;
	float s = 0.f;
	for (int n = r * ROWCHUNK; n < hi; n++) s += dout[(i64)n * OC + o];
	partial[i] = s;
}

// Attention's kernels are instantiated twice: for GPT-2's head size (HS = 64), where the
// loops over a head unroll, each thread's rows live in registers, rows are read 16 bytes
// at a time and dot products keep four running sums; and for any other head size up to
// MAXHS (HS = 0: read at run time, rows in local memory, one running sum). The HS = 64
// kernels need 16-byte aligned buffers (aligned16); the dispatch falls back to HS = 0.
#define UNROLL _Pragma("unroll")
#define ROW(HS) ((HS) > 0 ? (HS) : MAXHS)

// ld4 loads four floats from 16-byte aligned global memory with one vector load: inline
// assembly, because the optimiser splits a vector load whose lanes are used one by one
// back into four.
__device__ static void ld4(const float* p, float* r) {
	asm("ld.global.v4.f32 {%0, %1, %2, %3}, [%4];" : "=f"(r[0]), "=f"(r[1]), "=f"(r[2]), "=f"(r[3]) : "l"(p));
}

__device__ static bool aligned16(const void* a, const void* b) {
	return (((unsigned long long)a | (unsigned long long)b) & 15) == 0;
}

// loadRow copies a head's row at p into r.
template <int HS>
__device__ static void loadRow(float* r, const float* p, int hs) {
	if (HS > 0) {
		UNROLL for (int j = 0; j < HS / 4; j++) ld4(p + 4 * j, r + 4 * j);
	} else {
		for (int j = 0; j < hs; j++) r[j] = p[j];
	}
}

// dotRow returns r · p over a head.
template <int HS>
__device__ static float dotRow(const float* r, const float* p, int hs) {
	if (HS > 0) {
		float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
		UNROLL for (int j = 0; j < HS / 4; j++) {
			float x[4];
			ld4(p + 4 * j, x);
			s0 += r[4 * j] * x[0]; s1 += r[4 * j + 1] * x[1]; s2 += r[4 * j + 2] * x[2]; s3 += r[4 * j + 3] * x[3];
		}
		return (s0 + s1) + (s2 + s3);
	}
	float s = 0.f;
	for (int j = 0; j < hs; j++) s += r[j] * p[j];
	return s;
}

// axpyRow adds a·p to acc over a head.
template <int HS>
__device__ static void axpyRow(float* acc, float a, const float* p, int hs) {
	if (HS > 0) {
		UNROLL for (int j = 0; j < HS / 4; j++) {
			float x[4];
			ld4(p + 4 * j, x);
			acc[4 * j] += a * x[0]; acc[4 * j + 1] += a * x[1]; acc[4 * j + 2] += a * x[2]; acc[4 * j + 3] += a * x[3];
		}
	} else {
		for (int j = 0; j < hs; j++) acc[j] += a * p[j];
	}
}

// Attention forward: one thread per query row (b, h, t), one pass over its keys (HS = 64)
// or two (the maximum first).
// With start (B,T) not null (causal only), query t sees the keys [start[b*T+t], t]: the
// packed rows of SFT, where each segment attends only within itself.
template <int HS>
__device__ static void attention_forward_t(float* out, float* lse, const float* qkv, const int* start, int B, int T, int C, int H, int causal) {
	i64 i = GID;
	if (i >= (i64)B * H * T) return;
	int t = (int)(i % T), h = (int)((i / T) % H);
	i64 b = i / ((i64)T * H);
	const int hs = HS > 0 ? HS : C / H;
	float scale = 1.f / SQRTF((float)hs);
	float q[ROW(HS)], acc[ROW(HS)];
	loadRow<HS>(q, qkv + (b * T + t) * 3 * C + h * hs, hs);
	int nk = causal ? t + 1 : T;
	int k0 = start ? start[b * T + t] : 0;
	float mx = -3.0e38f, sum = 0.f;
	UNROLL for (int j = 0; j < hs; j++) acc[j] = 0.f;
	if (HS > 0) {
		// One pass, the softmax online: when a key's score raises the maximum, the sums
		// so far are rescaled to it (the first key's rescale multiplies zeros by zero).
		for (int s = k0; s < nk; s++) {
			const float* k = qkv + (b * T + s) * 3 * C + C + h * hs;
			float d = dotRow<HS>(q, k, hs) * scale;
			if (d > mx) {
				float c = EXPF(mx - d);
				sum *= c;
				UNROLL for (int j = 0; j < hs; j++) acc[j] *= c;
				mx = d;
			}
			float p = EXPF(d - mx);
			sum += p;
			axpyRow<HS>(acc, p, k + C, hs);
		}
	} else {
		// Two passes: the maximum, then the sums.
		for (int s = k0; s < nk; s++) {
			float d = dotRow<HS>(q, qkv + (b * T + s) * 3 * C + C + h * hs, hs) * scale;
			if (d > mx) mx = d;
		}
		for (int s = k0; s < nk; s++) {
			const float* k = qkv + (b * T + s) * 3 * C + C + h * hs;
			float p = EXPF(dotRow<HS>(q, k, hs) * scale - mx);
			sum += p;
			axpyRow<HS>(acc, p, k + C, hs);
		}
	}
	float* o = out + (b * T + t) * C + h * hs;
	UNROLL for (int j = 0; j < hs; j++) o[j] = acc[j] / sum;
	lse[i] = mx + LOGF(sum);
}

extern "C" __global__ void attention_forward(float* out, float* lse, const float* qkv, const int* start, int B, int T, int C, int H, int causal) {
	if (C == 64 * H && aligned16(qkv, qkv)) attention_forward_t<64>(out, lse, qkv, start, B, T, C, H, causal);
	else attention_forward_t<0>(out, lse, qkv, start, B, T, C, H, causal);
}

// Attention forward for 64-wide heads with two threads per query row, each holding half
// of the head (twice the threads of attention_forward, a third of its registers): the two
// halves of a dot product are added across the pair (a + b on one thread, b + a on the
// other: the same float), so both threads take the same branches. Its buffers must be
// 16-byte aligned; the backend launches it only then.
extern "C" __global__ void attention_forward_64(float* out, float* lse, const float* qkv, const int* start, int B, int T, int C, int H, int causal) {
	i64 g = GID;
	i64 i = g >> 1;
	if (i >= (i64)B * H * T) return; // both threads of a pair, or neither
	int half = (int)(g & 1), lane = TID & 31;
	unsigned pair = 3u << (lane & ~1);
	int t = (int)(i % T), h = (int)((i / T) % H);
	i64 b = i / ((i64)T * H);
	float scale = 1.f / SQRTF(64.f);
	float q[32], acc[32];
	loadRow<32>(q, qkv + (b * T + t) * 3 * C + h * 64 + half * 32, 32);
	int nk = causal ? t + 1 : T;
	int k0 = start ? start[b * T + t] : 0;
	float mx = -3.0e38f, sum = 0.f;
	UNROLL for (int j = 0; j < 32; j++) acc[j] = 0.f;
	for (int s = k0; s < nk; s++) {
		const float* k = qkv + (b * T + s) * 3 * C + C + h * 64 + half * 32;
		float mine = dotRow<32>(q, k, 32);
		float d = (mine + pairSwap(mine, pair)) * scale;
		if (d > mx) {
			float c = EXPF(mx - d);
			sum *= c;
			UNROLL for (int j = 0; j < 32; j++) acc[j] *= c;
			mx = d;
		}
		float p = EXPF(d - mx);
		sum += p;
		axpyRow<32>(acc, p, k + C, 32);
	}
	float* o = out + (b * T + t) * C + h * 64 + half * 32;
	UNROLL for (int j = 0; j < 32; j++) o[j] = acc[j] / sum;
	if (half == 0) lse[i] = mx + LOGF(sum);
}

// D (B,H,T) = rowsum(dout ⊙ out) per head; one thread per query row.
extern "C" __global__ void attention_backward_d(float* D, const float* dout, const float* out, int B, int T, int C, int H) {
	i64 i = GID;
	if (i >= (i64)B * H * T) return;
	int t = (int)(i % T), h = (int)((i / T) % H);
	i64 b = i / ((i64)T * H);
	int hs = C / H;
	const float* d = dout + (b * T + t) * C + h * hs;
	const float* o = out + (b * T + t) * C + h * hs;
	float s = 0.f;
	for (int j = 0; j < hs; j++) s += d[j] * o[j];
	D[i] = s;
}

// dq += Σ_s p(dp - D) k / √hs; one thread per query row.
template <int HS>
__device__ static void attention_backward_dq_t(float* dqkv, const float* dout, const float* qkv, const float* lse, const float* D, const int* start, int B, int T, int C, int H, int causal) {
	i64 i = GID;
	if (i >= (i64)B * H * T) return;
	int t = (int)(i % T), h = (int)((i / T) % H);
	i64 b = i / ((i64)T * H);
	const int hs = HS > 0 ? HS : C / H;
	float scale = 1.f / SQRTF((float)hs);
	float q[ROW(HS)], d[ROW(HS)], acc[ROW(HS)];
	loadRow<HS>(q, qkv + (b * T + t) * 3 * C + h * hs, hs);
	loadRow<HS>(d, dout + (b * T + t) * C + h * hs, hs);
	UNROLL for (int j = 0; j < hs; j++) acc[j] = 0.f;
	float li = lse[i], Di = D[i];
	int nk = causal ? t + 1 : T;
	for (int s = start ? start[b * T + t] : 0; s < nk; s++) {
		const float* k = qkv + (b * T + s) * 3 * C + C + h * hs;
		float p = EXPF(dotRow<HS>(q, k, hs) * scale - li);
		float ds = p * (dotRow<HS>(d, k + C, hs) - Di) * scale;
		axpyRow<HS>(acc, ds, k, hs);
	}
	float* dq = dqkv + (b * T + t) * 3 * C + h * hs;
	UNROLL for (int j = 0; j < hs; j++) dq[j] += acc[j];
}

extern "C" __global__ void attention_backward_dq(float* dqkv, const float* dout, const float* qkv, const float* lse, const float* D, const int* start, int B, int T, int C, int H, int causal) {
	if (C == 64 * H && aligned16(qkv, dout)) attention_backward_dq_t<64>(dqkv, dout, qkv, lse, D, start, B, T, C, H, causal);
	else attention_backward_dq_t<0>(dqkv, dout, qkv, lse, D, start, B, T, C, H, causal);
}

// dv of key s: Σ p·dout over the queries that see it (with start: those whose range
// begins at or before s); one thread per key row.
template <int HS>
__device__ static void attention_backward_dv_t(float* dqkv, const float* dout, const float* qkv, const float* lse, const int* start, int B, int T, int C, int H, int causal) {
	i64 i = GID;
	if (i >= (i64)B * H * T) return;
	int s = (int)(i % T), h = (int)((i / T) % H);
	i64 b = i / ((i64)T * H);
	const int hs = HS > 0 ? HS : C / H;
	float scale = 1.f / SQRTF((float)hs);
	float k[ROW(HS)], dv[ROW(HS)];
	loadRow<HS>(k, qkv + (b * T + s) * 3 * C + C + h * hs, hs);
	UNROLL for (int j = 0; j < hs; j++) dv[j] = 0.f;
	i64 row0 = (b * H + h) * T;
	// The threads of a warp walk the queries in step, from the first key of their group of
	// 32, so that they read the same query's row at once (one broadcast, not 32 rows).
	for (int t = causal ? s - s % 32 : 0; t < T; t++) {
		if ((causal && t < s) || (start && start[b * T + t] > s)) continue;
		float p = EXPF(dotRow<HS>(k, qkv + (b * T + t) * 3 * C + h * hs, hs) * scale - lse[row0 + t]);
		axpyRow<HS>(dv, p, dout + (b * T + t) * C + h * hs, hs);
	}
	float* dvp = dqkv + (b * T + s) * 3 * C + 2 * C + h * hs;
	UNROLL for (int j = 0; j < hs; j++) dvp[j] += dv[j];
}

extern "C" __global__ void attention_backward_dv(float* dqkv, const float* dout, const float* qkv, const float* lse, const int* start, int B, int T, int C, int H, int causal) {
	if (C == 64 * H && aligned16(qkv, dout)) attention_backward_dv_t<64>(dqkv, dout, qkv, lse, start, B, T, C, H, causal);
	else attention_backward_dv_t<0>(dqkv, dout, qkv, lse, start, B, T, C, H, causal);
}

// dk of key s: Σ p(dp - D) q / √hs over the queries that see it; one thread per key row.
template <int HS>
__device__ static void attention_backward_dk_t(float* dqkv, const float* dout, const float* qkv, const float* lse, const float* D, const int* start, int B, int T, int C, int H, int causal) {
	i64 i = GID;
	if (i >= (i64)B * H * T) return;
	int s = (int)(i % T), h = (int)((i / T) % H);
	i64 b = i / ((i64)T * H);
	const int hs = HS > 0 ? HS : C / H;
	float scale = 1.f / SQRTF((float)hs);
	float k[ROW(HS)], v[ROW(HS)], dk[ROW(HS)];
	loadRow<HS>(k, qkv + (b * T + s) * 3 * C + C + h * hs, hs);
	loadRow<HS>(v, qkv + (b * T + s) * 3 * C + 2 * C + h * hs, hs);
	UNROLL for (int j = 0; j < hs; j++) dk[j] = 0.f;
	i64 row0 = (b * H + h) * T;
	// The threads of a warp walk the queries in step, from the first key of their group of
	// 32, so that they read the same query's row at once (one broadcast, not 32 rows).
	for (int t = causal ? s - s % 32 : 0; t < T; t++) {
		if ((causal && t < s) || (start && start[b * T + t] > s)) continue;
		const float* q = qkv + (b * T + t) * 3 * C + h * hs;
		float p = EXPF(dotRow<HS>(k, q, hs) * scale - lse[row0 + t]);
		float ds = p * (dotRow<HS>(v, dout + (b * T + t) * C + h * hs, hs) - D[row0 + t]) * scale;
		axpyRow<HS>(dk, ds, q, hs);
	}
	float* dkp = dqkv + (b * T + s) * 3 * C + C + h * hs;
	UNROLL for (int j = 0; j < hs; j++) dkp[j] += dk[j];
}

extern "C" __global__ void attention_backward_dk(float* dqkv, const float* dout, const float* qkv, const float* lse, const float* D, const int* start, int B, int T, int C, int H, int causal) {
	if (C == 64 * H && aligned16(qkv, dout)) attention_backward_dk_t<64>(dqkv, dout, qkv, lse, D, start, B, T, C, H, causal);
	else attention_backward_dk_t<0>(dqkv, dout, qkv, lse, D, start, B, T, C, H, causal);
}

// dv for 64-wide heads, like attention_forward_64: two threads per key row, each holding
// half of the head, the halves of each dot product added across the pair. The buffers
// must be 16-byte aligned; the backend launches it only then. (dq and dk split so ran
// slower on an H200 than with one thread per row: 127 ms against 65, 99 against 48, for
// GPT-2 124M at B=16, T=1024; dv, with one dot product a key where they have two, ran
// faster: 47 ms against 88.)

// pairDot returns r · p over a 64-wide head of which this thread holds one half (r, p
// already offset to it): the same float on both threads of the pair.
__device__ static float pairDot(const float* r, const float* p, unsigned pair) {
	float mine = dotRow<32>(r, p, 32);
	return mine + pairSwap(mine, pair);
}

// dv of key s: Σ p·dout over the queries that see it; two threads per key row.
extern "C" __global__ void attention_backward_dv_64(float* dqkv, const float* dout, const float* qkv, const float* lse, const int* start, int B, int T, int C, int H, int causal) {
	i64 g = GID;
	i64 i = g >> 1;
	if (i >= (i64)B * H * T) return;
	int half = (int)(g & 1), lane = TID & 31;
	unsigned pair = 3u << (lane & ~1);
	int s = (int)(i % T), h = (int)((i / T) % H);
	i64 b = i / ((i64)T * H);
	int o = h * 64 + half * 32;
	float scale = 1.f / SQRTF(64.f);
	float k[32], dv[32];
	loadRow<32>(k, qkv + (b * T + s) * 3 * C + C + o, 32);
	UNROLL for (int j = 0; j < 32; j++) dv[j] = 0.f;
	i64 row0 = (b * H + h) * T;
	for (int t = causal ? s - s % 16 : 0; t < T; t++) {
		if ((causal && t < s) || (start && start[b * T + t] > s)) continue;
		float p = EXPF(pairDot(k, qkv + (b * T + t) * 3 * C + o, pair) * scale - lse[row0 + t]);
		axpyRow<32>(dv, p, dout + (b * T + t) * C + o, 32);
	}
	float* dvp = dqkv + (b * T + s) * 3 * C + 2 * C + o;
	UNROLL for (int j = 0; j < 32; j++) dvp[j] += dv[j];
}

// Copies the keys and values of qkv (T,3C) into cache rows pos0.. (maxT,C); one thread per element.
extern "C" __global__ void kv_append(float* kcache, float* vcache, const float* qkv, int T, int pos0, int C) {
	i64 i = GID;
	if (i >= (i64)T * C) return;
	i64 t = i / C;
	int c = (int)(i % C);
	kcache[(pos0 + t) * C + c] = qkv[t * 3 * C + C + c];
	vcache[(pos0 + t) * C + c] = qkv[t * 3 * C + 2 * C + c];
}

// Decode attention over the cache; one thread per (t, h).
extern "C" __global__ void attention_decode(float* out, const float* kcache, const float* vcache, const float* qkv, int T, int pos0, int C, int H) {
	i64 i = GID;
	if (i >= (i64)T * H) return;
	int h = (int)(i % H);
	i64 t = i / H;
	int hs = C / H;
	float scale = 1.f / SQRTF((float)hs);
	const float* q = qkv + t * 3 * C + h * hs;
	int nk = pos0 + (int)t + 1;
	float mx = -3.0e38f;
	for (int s = 0; s < nk; s++) {
		const float* k = kcache + (i64)s * C + h * hs;
		float d = 0.f;
		for (int j = 0; j < hs; j++) d += q[j] * k[j];
		d *= scale;
		if (d > mx) mx = d;
	}
	float acc[MAXHS];
	for (int j = 0; j < hs; j++) acc[j] = 0.f;
	float sum = 0.f;
	for (int s = 0; s < nk; s++) {
		const float* k = kcache + (i64)s * C + h * hs;
		const float* v = vcache + (i64)s * C + h * hs;
		float d = 0.f;
		for (int j = 0; j < hs; j++) d += q[j] * k[j];
		float p = EXPF(d * scale - mx);
		sum += p;
		for (int j = 0; j < hs; j++) acc[j] += p * v[j];
	}
	float* o = out + t * C + h * hs;
	for (int j = 0; j < hs; j++) o[j] = acc[j] / sum;
}

#define GELU_SCALE 0.7978845608028654f

extern "C" __global__ void gelu_forward(float* out, const float* inp, i64 n) {
	i64 i = GID;
	if (i >= n) return;
	float x = inp[i];
	out[i] = 0.5f * x * (1.f + tanh_f(GELU_SCALE * (x + 0.044715f * x * x * x)));
}

extern "C" __global__ void gelu_backward(float* dinp, const float* inp, const float* dout, i64 n) {
	i64 i = GID;
	if (i >= n) return;
	float x = inp[i];
	float th = tanh_f(GELU_SCALE * (x + 0.044715f * x * x * x));
	float sech2 = 1.f - th * th;
	dinp[i] += (0.5f * (1.f + th) + 0.5f * x * sech2 * GELU_SCALE * (1.f + 3.f * 0.044715f * x * x)) * dout[i];
}

extern "C" __global__ void residual_forward(float* out, const float* a, const float* b, i64 n) {
	i64 i = GID;
	if (i < n) out[i] = a[i] + b[i];
}

extern "C" __global__ void accumulate(float* dst, const float* src, i64 n) {
	i64 i = GID;
	if (i < n) dst[i] += src[i];
}

extern "C" __global__ void scale(float* x, float c, i64 n) {
	i64 i = GID;
	if (i < n) x[i] *= c;
}

// Softmax in place and the loss of each row; one block per row.
extern "C" __global__ void softmax_xent_forward(float* losses, float* logits, const int* targets, int N, int V) {
	__shared__ float sh[ROWBLOCK];
	i64 n = BID;
	float* x = logits + n * V;
	float mx = -3.0e38f;
	for (int v = TID; v < V; v += ROWBLOCK) if (x[v] > mx) mx = x[v];
	mx = blockMax(mx, sh);
	float s = 0.f;
	for (int v = TID; v < V; v += ROWBLOCK) s += EXPF(x[v] - mx);
	s = blockSum(s, sh);
	float inv = 1.f / s;
	for (int v = TID; v < V; v += ROWBLOCK) x[v] = EXPF(x[v] - mx) * inv;
	SYNC();
	if (TID == 0) {
		int tg = targets[n];
		losses[n] = tg < 0 ? 0.f : -LOGF(x[tg]);
	}
}

// out[0] = Σ x (n) in float64: each thread sums a strided share in order, then a fixed tree.
extern "C" __global__ void sum_f64(double* out, const float* x, int n) {
	__shared__ double sh[ROWBLOCK];
	int t = TID;
	double s = 0.0;
	for (int i = t; i < n; i += ROWBLOCK) s += (double)x[i];
	sh[t] = s;
	SYNC();
	for (int k = ROWBLOCK / 2; k > 0; k >>= 1) {
		if (t < k) sh[t] += sh[t + k];
		SYNC();
	}
	if (t == 0) out[0] = sh[0];
}

// probs (N,V) become (p - onehot(target)) * scale, 0 where target < 0; one thread per element.
extern "C" __global__ void xent_backward(float* probs, const int* targets, float scale, int N, int V) {
	i64 i = GID;
	if (i >= (i64)N * V) return;
	i64 n = i / V;
	int v = (int)(i % V);
	int tg = targets[n];
	if (tg < 0) { probs[i] = 0.f; return; }
	probs[i] = (probs[i] - (v == tg ? 1.f : 0.f)) * scale;
}

// partial[c] = Σ x² over chunk c in float64, in the CPU's order (tensor's sumSq8): eight
// running sums s_j of the x[8i+j]², combined as ((s0+s4)+(s2+s6))+((s1+s5)+(s3+s7)), then
// the squares past the last multiple of 8 in order. Eight threads per chunk, one per s_j
// (a float32's square is exact in float64, so a fused multiply-add changes nothing). The
// host adds the partials in order, as tensor.SumSquares does.
extern "C" __global__ void sum_squares(double* partial, const float* x, i64 n, i64 chunk) {
	__shared__ double sh[ROWBLOCK];
	int t = TID, j = t & 7;
	i64 c = BID * (ROWBLOCK / 8) + (t >> 3);
	i64 lo = c * chunk;
	i64 hi = lo + chunk < n ? lo + chunk : n;
	i64 n8 = lo < n ? lo + ((hi - lo) & ~7LL) : lo;
	double s = 0.0;
	for (i64 i = lo + j; i < n8; i += 8) s += (double)x[i] * (double)x[i];
	sh[t] = s;
	SYNC();
	if (j == 0 && lo < n) {
		const double* q = sh + t;
		double tot = ((q[0] + q[4]) + (q[2] + q[6])) + ((q[1] + q[5]) + (q[3] + q[7]));
		for (i64 i = n8; i < hi; i++) tot += (double)x[i] * (double)x[i];
		partial[c] = tot;
	}
}

// One AdamW step, element-wise: tensor.AdamW's float32 operations in its order, none
// fused, so the same bits as the CPU.
extern "C" __global__ void adamw(float* p, const float* g, float* m, float* v, i64 n, float b1, float b2, float eps, float stepSize, float invSqrtBC2, float df) {
	i64 i = GID;
	if (i >= n) return;
	float gi = g[i];
	float mi = FADD(FMUL(b1, m[i]), FMUL(FSUB(1.f, b1), gi));
	float vi = FADD(FMUL(b2, v[i]), FMUL(FMUL(FSUB(1.f, b2), gi), gi));
	m[i] = mi;
	v[i] = vi;
	float denom = FADD(FMUL(SQRTF(vi), invSqrtBC2), eps);
	p[i] = FSUB(FMUL(p[i], df), FDIV(FMUL(stepSize, mi), denom));
}
