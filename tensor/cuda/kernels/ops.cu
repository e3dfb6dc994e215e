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

// dwte rows += dout per token; one thread per channel walks the positions in order.
extern "C" __global__ void encoder_backward_wte(float* dwte, const float* dout, const int* inp, int N, int C) {
	i64 c = GID;
	if (c >= C) return;
	for (int n = 0; n < N; n++) dwte[(i64)inp[n] * C + c] += dout[(i64)n * C + c];
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

// dw, db (C) += LayerNorm's parameter gradients; one thread per channel over the rows in order.
extern "C" __global__ void layernorm_backward_dwdb(float* dw, float* db, const float* dout, const float* inp, const float* mean, const float* rstd, int N, int C) {
	i64 c = GID;
	if (c >= C) return;
	float sw = 0.f, sb = 0.f;
	for (int n = 0; n < N; n++) {
		float d = dout[(i64)n * C + c];
		sw += d * (inp[(i64)n * C + c] - mean[n]) * rstd[n];
		sb += d;
	}
	dw[c] += sw;
	db[c] += sb;
}

// out (N,OC) += bias; one thread per element.
extern "C" __global__ void add_bias(float* out, const float* bias, int N, int OC) {
	i64 i = GID;
	if (i >= (i64)N * OC) return;
	out[i] += bias[i % OC];
}

// dbias (OC) += column sums of dout (N,OC); one thread per column over the rows in order.
extern "C" __global__ void bias_backward(float* dbias, const float* dout, int N, int OC) {
	i64 o = GID;
	if (o >= OC) return;
	float s = 0.f;
	for (int n = 0; n < N; n++) s += dout[(i64)n * OC + o];
	dbias[o] += s;
}

// Attention's kernels are instantiated twice: for GPT-2's head size (HS = 64), where the
// loops over a head unroll and each thread's rows live in registers, and for any other
// head size up to MAXHS (HS = 0: read at run time, the rows in local memory). Both do the
// same float operations in the same order, so they give the same bits.
#define UNROLL _Pragma("unroll")
#define ROW(HS) ((HS) > 0 ? (HS) : MAXHS)

// Attention forward: one thread per query row (b, h, t), two passes over its keys.
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
	const float* qp = qkv + (b * T + t) * 3 * C + h * hs;
	float q[ROW(HS)];
	UNROLL for (int j = 0; j < hs; j++) q[j] = qp[j];
	int nk = causal ? t + 1 : T;
	int k0 = start ? start[b * T + t] : 0;
	float mx = -3.0e38f;
	for (int s = k0; s < nk; s++) {
		const float* k = qkv + (b * T + s) * 3 * C + C + h * hs;
		float d = 0.f;
		UNROLL for (int j = 0; j < hs; j++) d += q[j] * k[j];
		d *= scale;
		if (d > mx) mx = d;
	}
	float acc[ROW(HS)];
	UNROLL for (int j = 0; j < hs; j++) acc[j] = 0.f;
	float sum = 0.f;
	for (int s = k0; s < nk; s++) {
		const float* k = qkv + (b * T + s) * 3 * C + C + h * hs;
		const float* v = k + C;
		float d = 0.f;
		UNROLL for (int j = 0; j < hs; j++) d += q[j] * k[j];
		float p = EXPF(d * scale - mx);
		sum += p;
		UNROLL for (int j = 0; j < hs; j++) acc[j] += p * v[j];
	}
	float* o = out + (b * T + t) * C + h * hs;
	UNROLL for (int j = 0; j < hs; j++) o[j] = acc[j] / sum;
	lse[i] = mx + LOGF(sum);
}

extern "C" __global__ void attention_forward(float* out, float* lse, const float* qkv, const int* start, int B, int T, int C, int H, int causal) {
	if (C == 64 * H) attention_forward_t<64>(out, lse, qkv, start, B, T, C, H, causal);
	else attention_forward_t<0>(out, lse, qkv, start, B, T, C, H, causal);
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
	const float* qp = qkv + (b * T + t) * 3 * C + h * hs;
	const float* dp_ = dout + (b * T + t) * C + h * hs;
	float q[ROW(HS)], d[ROW(HS)], acc[ROW(HS)];
	UNROLL for (int j = 0; j < hs; j++) { q[j] = qp[j]; d[j] = dp_[j]; acc[j] = 0.f; }
	float li = lse[i], Di = D[i];
	int nk = causal ? t + 1 : T;
	for (int s = start ? start[b * T + t] : 0; s < nk; s++) {
		const float* k = qkv + (b * T + s) * 3 * C + C + h * hs;
		const float* v = k + C;
		float qk = 0.f, dp = 0.f;
		UNROLL for (int j = 0; j < hs; j++) { qk += q[j] * k[j]; dp += d[j] * v[j]; }
		float p = EXPF(qk * scale - li);
		float ds = p * (dp - Di) * scale;
		UNROLL for (int j = 0; j < hs; j++) acc[j] += ds * k[j];
	}
	float* dq = dqkv + (b * T + t) * 3 * C + h * hs;
	UNROLL for (int j = 0; j < hs; j++) dq[j] += acc[j];
}

extern "C" __global__ void attention_backward_dq(float* dqkv, const float* dout, const float* qkv, const float* lse, const float* D, const int* start, int B, int T, int C, int H, int causal) {
	if (C == 64 * H) attention_backward_dq_t<64>(dqkv, dout, qkv, lse, D, start, B, T, C, H, causal);
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
	const float* kp = qkv + (b * T + s) * 3 * C + C + h * hs;
	float k[ROW(HS)], dv[ROW(HS)];
	UNROLL for (int j = 0; j < hs; j++) { k[j] = kp[j]; dv[j] = 0.f; }
	i64 row0 = (b * H + h) * T;
	for (int t = causal ? s : 0; t < T; t++) {
		if (start && start[b * T + t] > s) continue;
		const float* q = qkv + (b * T + t) * 3 * C + h * hs;
		const float* d = dout + (b * T + t) * C + h * hs;
		float qk = 0.f;
		UNROLL for (int j = 0; j < hs; j++) qk += q[j] * k[j];
		float p = EXPF(qk * scale - lse[row0 + t]);
		UNROLL for (int j = 0; j < hs; j++) dv[j] += p * d[j];
	}
	float* dvp = dqkv + (b * T + s) * 3 * C + 2 * C + h * hs;
	UNROLL for (int j = 0; j < hs; j++) dvp[j] += dv[j];
}

extern "C" __global__ void attention_backward_dv(float* dqkv, const float* dout, const float* qkv, const float* lse, const int* start, int B, int T, int C, int H, int causal) {
	if (C == 64 * H) attention_backward_dv_t<64>(dqkv, dout, qkv, lse, start, B, T, C, H, causal);
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
	const float* kp = qkv + (b * T + s) * 3 * C + C + h * hs;
	const float* vp = kp + C;
	float k[ROW(HS)], v[ROW(HS)], dk[ROW(HS)];
	UNROLL for (int j = 0; j < hs; j++) { k[j] = kp[j]; v[j] = vp[j]; dk[j] = 0.f; }
	i64 row0 = (b * H + h) * T;
	for (int t = causal ? s : 0; t < T; t++) {
		if (start && start[b * T + t] > s) continue;
		const float* q = qkv + (b * T + t) * 3 * C + h * hs;
		const float* d = dout + (b * T + t) * C + h * hs;
		float qk = 0.f, dp = 0.f;
		UNROLL for (int j = 0; j < hs; j++) { qk += q[j] * k[j]; dp += d[j] * v[j]; }
		float p = EXPF(qk * scale - lse[row0 + t]);
		float ds = p * (dp - D[row0 + t]) * scale;
		UNROLL for (int j = 0; j < hs; j++) dk[j] += ds * q[j];
	}
	float* dkp = dqkv + (b * T + s) * 3 * C + C + h * hs;
	UNROLL for (int j = 0; j < hs; j++) dkp[j] += dk[j];
}

extern "C" __global__ void attention_backward_dk(float* dqkv, const float* dout, const float* qkv, const float* lse, const float* D, const int* start, int B, int T, int C, int H, int causal) {
	if (C == 64 * H) attention_backward_dk_t<64>(dqkv, dout, qkv, lse, D, start, B, T, C, H, causal);
	else attention_backward_dk_t<0>(dqkv, dout, qkv, lse, D, start, B, T, C, H, causal);
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

// partial[c] = Σ x² over chunk c (float64, in order); one thread per chunk. The host adds
// the partials in order, as tensor.SumSquares does.
extern "C" __global__ void sum_squares(double* partial, const float* x, i64 n, i64 chunk) {
	i64 c = GID;
	i64 lo = c * chunk;
	if (lo >= n) return;
	i64 hi = lo + chunk < n ? lo + chunk : n;
	double s = 0.0;
	for (i64 i = lo; i < hi; i++) s += (double)x[i] * (double)x[i];
	partial[c] = s;
}

// One AdamW step, element-wise, in tensor.AdamW's order of float32 operations.
extern "C" __global__ void adamw(float* p, const float* g, float* m, float* v, i64 n, float b1, float b2, float eps, float stepSize, float invSqrtBC2, float df) {
	i64 i = GID;
	if (i >= n) return;
	float gi = g[i];
	float mi = b1 * m[i] + (1.f - b1) * gi;
	float vi = b2 * v[i] + (1.f - b2) * gi * gi;
	m[i] = mi;
	v[i] = vi;
	float denom = SQRTF(vi) * invSqrtBC2 + eps;
	p[i] = p[i] * df - stepSize * mi / denom;
}
