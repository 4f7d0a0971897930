// pair_kernel.cpp's iteration (same Args, schedule and optimisers) for nets too wide for SIMD lanes of
// seeds: one seed at a time, its products on MKL's sgemm and the rest written out. A seed's two nets
// and its activations (256 points x 128 units: 128 KB) stay in L2 through its whole iteration, where
// torch ops on the [S, N, h] stack stream every intermediate through memory, a pass per op.
#include "kernel.h"

// MKL's Fortran BLAS, as exported by libtorch_cpu (torch's own bmm lands there too).
extern "C" void sgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k, const float* alpha,
                       const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
                       const int* ldc);

// Row-major C [M, N] = beta C + op(A) op(B), op(A) [M, K]: column-major C^T = op(B)^T op(A)^T.
static void gemm(bool ta, bool tb, int M, int N, int K, const float* A, const float* B, float beta, float* C) {
  const char cta = ta ? 'T' : 'N', ctb = tb ? 'T' : 'N';
  const int lda = ta ? M : K, ldb = tb ? K : N;
  const float one = 1.f;
  sgemm_(&ctb, &cta, &N, &M, &K, &one, B, &ldb, A, &lda, &beta, C, &N);
}

constexpr int SKINNY = 4;  // a side this short (the 2-D input, D's logit, G's output): loops, not sgemm

static inline V load(const float* p, int n) { return n >= LANES ? V::loadu(p) : V::loadu(p, n); }
static inline void store(V v, float* p, int n) { if (n >= LANES) v.store(p); else v.store(p, n); }
static inline float dot(const float* a, const float* b, int n) {
  V s(0.f);
  for (int i = 0; i < n; i += LANES) s = at::vec::fmadd(load(a + i, n - i), load(b + i, n - i), s);
  alignas(64) float t[LANES];
  s.store(t);
  float r = 0.f;
  for (float v : t) r += v;
  return r;
}

// Y [n, O] = X [n, I] W [I, O] (+ b).
static void linear(const float* X, int n, int I, int O, const float* W, const float* b, float* Y, float* tmp) {
  if (I <= SKINNY) {
    for (int r = 0; r < n; ++r)
      for (int j = 0; j < O; j += LANES) {
        V s = b ? load(b + j, O - j) : V(0.f);
        for (int i = 0; i < I; ++i) s = at::vec::fmadd(V(X[r * I + i]), load(W + i * O + j, O - j), s);
        store(s, Y + r * O + j, O - j);
      }
  } else if (O <= SKINNY) {
    for (int i = 0; i < I; ++i) for (int o = 0; o < O; ++o) tmp[o * I + i] = W[i * O + o];  // W^T: rows to dot
    for (int r = 0; r < n; ++r)
      for (int o = 0; o < O; ++o) Y[r * O + o] = dot(X + r * I, tmp + o * I, I) + (b ? b[o] : 0.f);
  } else {
    if (b) for (int r = 0; r < n; ++r) std::copy_n(b, O, Y + r * O);
    gemm(false, false, n, O, I, X, W, b ? 1.f : 0.f, Y);
  }
}

// From dA [n, O], the gradient at Y: gW [I, O] and gb [O] (when gW), and dX [n, I] (when dX).
static void linear_backward(const float* X, const float* dA, int n, int I, int O, const float* W,
                            float* gW, float* gb, float* dX, float* tmp) {
  if (gW && I <= SKINNY) {
    for (int i = 0; i < I; ++i)
      for (int j = 0; j < O; j += LANES) {
        V s(0.f);
        for (int r = 0; r < n; ++r) s = at::vec::fmadd(V(X[r * I + i]), load(dA + r * O + j, O - j), s);
        store(s, gW + i * O + j, O - j);
      }
  } else if (gW && O <= SKINNY) {
    for (int o = 0; o < O; ++o)
      for (int i = 0; i < I; i += LANES) {
        V s(0.f);
        for (int r = 0; r < n; ++r) s = at::vec::fmadd(load(X + r * I + i, I - i), V(dA[r * O + o]), s);
        store(s, tmp, I - i);
        for (int q = i; q < std::min(I, i + LANES); ++q) gW[q * O + o] = tmp[q - i];
      }
  } else if (gW) {
    gemm(true, false, I, O, n, X, dA, 0.f, gW);
  }
  if (gW && gb)
    for (int j = 0; j < O; j += LANES) {
      V s(0.f);
      for (int r = 0; r < n; ++r) s = s + load(dA + r * O + j, O - j);
      store(s, gb + j, O - j);
    }
  if (!dX) return;
  if (O <= SKINNY) {
    for (int i = 0; i < I; ++i) for (int o = 0; o < O; ++o) tmp[o * I + i] = W[i * O + o];
    for (int r = 0; r < n; ++r)
      for (int i = 0; i < I; i += LANES) {
        V s(0.f);
        for (int o = 0; o < O; ++o) s = at::vec::fmadd(V(dA[r * O + o]), load(tmp + o * I + i, I - i), s);
        store(s, dX + r * I + i, I - i);
      }
  } else if (I <= SKINNY) {
    for (int r = 0; r < n; ++r) for (int i = 0; i < I; ++i) dX[r * I + i] = dot(dA + r * O, W + i * O, O);
  } else {
    gemm(false, true, n, I, O, dA, W, 0.f, dX);
  }
}

// One seed's net: pointers into torch's [S, ...] tensors, and its activations (kept between calls:
// one allocation per thread, not one per seed and iteration).
template <const int* SZ, int ACT, bool LAST_BIAS>
struct SeedNet : Layout<SZ, LAST_BIAS> {
  using Lay = Layout<SZ, LAST_BIAS>;
  using Lay::L, Lay::has_bias, Lay::w_at, Lay::b_at, Lay::P, Lay::W, Lay::tensors, Lay::size, Lay::at;
  float *p[tensors], *buf[tensors], *buf2[tensors];  // this seed's slice of each tensor
  std::vector<float> grad = std::vector<float>(P), tmp = std::vector<float>(SKINNY * W + LANES);
  std::vector<float> h[L + 1], d[2];  // h[k]: layer k's output (h[0] unused: the input is X); d: gradients
  const float* X = nullptr;
  int n = 0;

  // Seed s's slices, with room for `points` points.
  void bind(float* const* params, float* const* bufs, float* const* bufs2, int s, int points) {
    for (int t = 0; t < tensors; ++t) {
      p[t] = params[t] + int64_t(s) * size(t); buf[t] = bufs[t] + int64_t(s) * size(t);
      buf2[t] = bufs2 ? bufs2[t] + int64_t(s) * size(t) : nullptr;
    }
    if (d[0].size() >= size_t(points) * W) return;
    for (int k = 1; k <= L; ++k) h[k].resize(int64_t(points) * SZ[k]);
    for (auto& v : d) v.resize(int64_t(points) * W);
  }
  const float* weight(int k) const { return p[k]; }
  const float* bias(int k) const { return has_bias(k) ? p[L + k] : nullptr; }
  const float* out() const { return h[L].data(); }

  void forward(const float* x, int points) {
    X = x; n = points;
    for (int k = 0; k < L; ++k) {
      float* y = h[k + 1].data();
      linear(k ? h[k].data() : X, n, SZ[k], SZ[k + 1], weight(k), bias(k), y, tmp.data());
      if (k < L - 1)
        for (int e = 0; e < n * SZ[k + 1]; e += LANES) store(act<ACT>(load(y + e, n * SZ[k + 1] - e)), y + e, n * SZ[k + 1] - e);
    }
  }
  // From dout [n, OUT], the gradient at the output of the latest forward: the parameters' gradient
  // into `grad` (params), and the input's gradient, returned (inputs; else null).
  const float* backward(const float* dout, bool params, bool inputs) {
    const float* g = dout;
    for (int k = L - 1; k >= 0; --k) {
      if (k < L - 1) {  // through the activation, from its output
        float* gk = const_cast<float*>(g);
        const float* y = h[k + 1].data();
        for (int e = 0; e < n * SZ[k + 1]; e += LANES) {
          const int c = n * SZ[k + 1] - e;
          store(load(gk + e, c) * act_grad<ACT>(load(y + e, c)), gk + e, c);
        }
      }
      float* dx = (k > 0 || inputs) ? d[k % 2].data() : nullptr;
      linear_backward(k ? h[k].data() : X, g, n, SZ[k], SZ[k + 1], weight(k),
                      params ? grad.data() + w_at(k) : nullptr,
                      params && has_bias(k) ? grad.data() + b_at(k) : nullptr, dx, tmp.data());
      g = dx;
    }
    return g;
  }
  void update(const Optim& o, int k) {
    const Update u(o, o.step + k + 1);
    for (int t = 0; t < tensors; ++t)
      for (int e = 0; e < size(t); e += LANES) {
        const int c = size(t) - e;
        V pv = load(p[t] + e, c), b = load(buf[t] + e, c), b2 = buf2[t] ? load(buf2[t] + e, c) : V(0.f);
        u(pv, b, b2, load(grad.data() + at(t) + e, c));
        store(pv, p[t] + e, c); store(b, buf[t] + e, c);
        if (buf2[t]) store(b2, buf2[t] + e, c);
      }
  }
  void renormalise_last() {  // F.normalize(w, dim=1) of the [in, 1] last weight (5gaussian.py's RS-GAN)
    float* w = p[L - 1];
    const int I = SZ[L - 1];
    const float norm = std::max(std::sqrt(dot(w, w, I)), 1e-12f);
    for (int i = 0; i < I; ++i) w[i] /= norm;
  }
};
using GNet = SeedNet<kG, G_ACT, true>;
using DNet = SeedNet<kD, D_ACT, D_LAST_BIAS>;

// dlogits [n] = scale * the loss's derivative at each (real, fake) logit pair; D's: [2n], reals first.
static void d_grads(int loss, const float* fr, const float* ff, float scale, float* out, int n) {
  for (int i = 0; i < n; i += LANES) {
    V dr, df;
    d_loss_grad(loss, load(fr + i, n - i), load(ff + i, n - i), dr, df);
    store(dr * V(scale), out + i, n - i); store(df * V(scale), out + n + i, n - i);
  }
}
static void g_grads(int loss, const float* fr, const float* ff, float scale, float* out, int n) {
  for (int i = 0; i < n; i += LANES) store(g_loss_grad(loss, load(fr + i, n - i), load(ff + i, n - i)) * V(scale), out + i, n - i);
}

// Seed s through one iteration, as pair_kernel.cpp's Block::run.
static void run_seed(const Args& a, int s) {
  const int N = a.N, XD = kD[0], ZD = kG[0];
  static_assert(DNet::OUT == 1, "D has one logit");
  static thread_local GNet G;
  static thread_local DNet D;
  static thread_local std::vector<float> xy, fr, df;
  G.bind(a.g_params, a.g_bufs, a.g_bufs2, s, N);
  D.bind(a.d_params, a.d_bufs, a.d_bufs2, s, 2 * N);
  xy.resize(2 * N * XD); fr.assign(N, 0.f); df.resize(2 * N);
  const float *x = a.x + int64_t(s) * N * XD, *z = a.z + int64_t(s) * N * ZD;
  float* logits[4];
  for (int q = 0; q < 4; ++q) logits[q] = a.logits + (int64_t(q) * a.S + s) * N;
  std::copy_n(x, N * XD, xy.data());  // D's batch: the reals, then the fakes
  G.forward(z, N);
  std::copy_n(G.out(), N * XD, xy.data() + N * XD);
  for (int t = 0; t < a.d_steps; ++t) {
    D.forward(xy.data(), 2 * N);
    d_grads(a.loss, D.out(), D.out() + N, a.d_scale, df.data(), N);
    if (t == a.d_steps - 1) { std::copy_n(D.out(), N, logits[0]); std::copy_n(D.out() + N, N, logits[1]); }
    D.backward(df.data(), true, false);
    D.update(a.d_opt, t);
    if (a.renorm) D.renormalise_last();
  }
  if (a.pairing) { D.forward(x, N); std::copy_n(D.out(), N, fr.data()); }  // D is fixed over the G steps
  for (int t = 0; t < a.g_steps; ++t) {
    if (t) G.forward(z, N);  // G moved
    D.forward(G.out(), N);
    g_grads(a.loss, fr.data(), D.out(), a.g_scale, df.data(), N);
    if (t == a.g_steps - 1) { std::copy_n(fr.data(), N, logits[2]); std::copy_n(D.out(), N, logits[3]); }
    G.backward(D.backward(df.data(), false, true), true, false);
    G.update(a.g_opt, t);
  }
}

extern "C" int lanes() { return 1; }
extern "C" int num_losses() { return N_LOSSES; }
// 0, or -1 with nothing touched for a loss this kernel does not implement.
extern "C" int iteration(const Args* a, int threads) {
  if (a->loss < 0 || a->loss >= N_LOSSES) return -1;
#pragma omp parallel for num_threads(threads) schedule(static, 1)
  for (int s = 0; s < a->S; ++s) run_seed(*a, s);
  return 0;
}
