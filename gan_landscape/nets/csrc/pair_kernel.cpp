// One iteration of the synthetic schedule for S stacked (G, D) MLP pairs: GAN2_2Cluster.py's on its
// full batch, 5gaussian.py's on a minibatch (one fake batch G(z), d_steps D steps on it, g_steps G
// steps), with torch.optim's SGD or Adam. SIMD lanes are seeds and no instruction mixes lanes, so a
// seed's result is the same in any stack.
#include "kernel.h"

#ifndef POINTS
#define POINTS 4  // points per pass over a net's weights
#endif

// One lane block of a StackedMLP: parameters, optimiser buffers (SGD: momentum; Adam: exp_avg and
// exp_avg_sq) and gradients.
template <const int* SZ, int ACT, bool LAST_BIAS>
struct Net : Layout<SZ, LAST_BIAS> {
  using Lay = Layout<SZ, LAST_BIAS>;
  using Lay::L, Lay::has_bias, Lay::w_at, Lay::b_at, Lay::P, Lay::IN, Lay::W;
  struct Acts { V h[L + 1][W]; };  // one point's input and layer outputs

  V p[P], buf[P], buf2[P], grad[P];

  // Torch's tensors are seeds-first: the weights [S, in, out], then the biases [S, 1, out].
  void transfer(float* const* tensors, V* lanes, int s0, int n, bool load) {
    alignas(64) float tmp[LANES] = {};
    for (int k = 0, t = 0, at = 0; k < 2 * L; ++k) {
      const int layer = k % L, per = k < L ? SZ[layer] * SZ[layer + 1] : SZ[layer + 1];
      if (k >= L && !has_bias(layer)) continue;
      float* base = tensors[t++];
      for (int e = 0; e < per; ++e, ++at) {
        if (load) { for (int l = 0; l < n; ++l) tmp[l] = base[int64_t(s0 + l) * per + e]; lanes[at] = V::loadu(tmp); }
        else { lanes[at].store(tmp); for (int l = 0; l < n; ++l) base[int64_t(s0 + l) * per + e] = tmp[l]; }
      }
    }
  }
  // M points at once, so that each weight is loaded once for all of them.
  template <int M> void forward(Acts* a) const {
#pragma GCC unroll 8
    for (int k = 0; k < L; ++k)
#pragma GCC unroll 64
      for (int j = 0; j < SZ[k + 1]; ++j) {
        V s[M];
        for (int m = 0; m < M; ++m) s[m] = has_bias(k) ? p[b_at(k) + j] : V(0.f);
#pragma GCC unroll 64
        for (int i = 0; i < SZ[k]; ++i) {
          const V w = p[w_at(k) + i * SZ[k + 1] + j];
          for (int m = 0; m < M; ++m) s[m] = at::vec::fmadd(a[m].h[k][i], w, s[m]);
        }
        for (int m = 0; m < M; ++m) a[m].h[k + 1][j] = k < L - 1 ? act<ACT>(s[m]) : s[m];
      }
  }
  // dout[m]: dL/d(output) of point m. ACC adds the parameter gradients into grad; din, when
  // given, receives dL/d(input), [M][IN].
  template <bool ACC, int M> void backward(const Acts* a, const V* dout, V* din) {
    V d[M][W], e[M][W];
    for (int m = 0; m < M; ++m) for (int j = 0; j < SZ[L]; ++j) d[m][j] = dout[m * SZ[L] + j];
#pragma GCC unroll 8
    for (int k = L - 1; k >= 0; --k) {
      const int I = SZ[k], O = SZ[k + 1];
      if (k < L - 1)
        for (int m = 0; m < M; ++m)
#pragma GCC unroll 64
          for (int j = 0; j < O; ++j) d[m][j] = d[m][j] * act_grad<ACT>(a[m].h[k + 1][j]);
      if constexpr (ACC)
#pragma GCC unroll 64
        for (int j = 0; j < O; ++j) {
          if (has_bias(k)) { V g = grad[b_at(k) + j]; for (int m = 0; m < M; ++m) g = g + d[m][j]; grad[b_at(k) + j] = g; }
#pragma GCC unroll 64
          for (int i = 0; i < I; ++i) {
            V g = grad[w_at(k) + i * O + j];
            for (int m = 0; m < M; ++m) g = at::vec::fmadd(a[m].h[k][i], d[m][j], g);
            grad[w_at(k) + i * O + j] = g;
          }
        }
      if (k == 0 && !din) break;
#pragma GCC unroll 64
      for (int i = 0; i < I; ++i) {
        V s[M];
        for (int m = 0; m < M; ++m) s[m] = V(0.f);
#pragma GCC unroll 64
        for (int j = 0; j < O; ++j) {
          const V w = p[w_at(k) + i * O + j];
          for (int m = 0; m < M; ++m) s[m] = at::vec::fmadd(d[m][j], w, s[m]);
        }
        for (int m = 0; m < M; ++m) e[m][i] = s[m];
      }
      for (int m = 0; m < M; ++m) std::copy_n(e[m], I, d[m]);
    }
    if (din) for (int m = 0; m < M; ++m) std::copy_n(d[m], IN, din + m * IN);
  }
  void zero_grad() { std::fill_n(grad, P, V(0.f)); }
  void update(const Optim& o, int k) {
    const Update u(o, o.step + k + 1);
    for (int t = 0; t < P; ++t) u(p[t], buf[t], buf2[t], grad[t]);
  }
  // F.normalize(w, dim=1) of the last layer's [in, 1] weight, after each D step for RS-GAN (5gaussian.py).
  void renormalise_last() {
    static_assert(SZ[L] == 1, "the renormalised layer has one output");
    V ss(0.f);
    for (int i = 0; i < SZ[L - 1]; ++i) ss = at::vec::fmadd(p[w_at(L - 1) + i], p[w_at(L - 1) + i], ss);
    const V norm = at::vec::maximum(ss.sqrt(), V(1e-12f));
    for (int i = 0; i < SZ[L - 1]; ++i) p[w_at(L - 1) + i] = p[w_at(L - 1) + i] / norm;
  }
};
using GNet = Net<kG, G_ACT, true>;
using DNet = Net<kD, D_ACT, D_LAST_BIAS>;

static void gather(const float* src, V* dst, int count, int s0, int n) {  // [S, count] -> count
  alignas(64) float tmp[LANES] = {};
  for (int e = 0; e < count; ++e) { for (int l = 0; l < n; ++l) tmp[l] = src[int64_t(s0 + l) * count + e]; dst[e] = V::loadu(tmp); }
}
static void scatter(const V* src, float* dst, int count, int s0, int n) {
  alignas(64) float tmp[LANES];
  for (int e = 0; e < count; ++e) { src[e].store(tmp); for (int l = 0; l < n; ++l) dst[int64_t(s0 + l) * count + e] = tmp[l]; }
}

// Seeds s0 .. s0 + n - 1 through one iteration: one fake batch G(z), d_steps D steps on it, then
// g_steps G steps, each recomputing G(z). Both losses are means over the N (real, fake) pairs.
struct Block {
  const Args& a; const int N, XD = DNet::IN, ZD = GNet::IN;
  std::unique_ptr<GNet> G = std::make_unique<GNet>();
  std::unique_ptr<DNet> D = std::make_unique<DNet>();
  std::vector<V> x, z, fake, fr, ff;  // per point; fr, ff: D's logits on the reals and fakes
  typename GNet::Acts gh[POINTS];
  static constexpr int DM = POINTS / 2, GM = POINTS;  // points per pass over the weights (D: pairs)
  typename DNet::Acts dh[2 * POINTS];  // members, as locals they would be zero-filled (Vectorized()) per call

  Block(const Args& a) : a(a), N(a.N), x(N * XD), z(N * ZD), fake(N * XD), fr(N), ff(N) {}

  // Adds pairs i .. i + M - 1 to D's gradient; a pair's real and fake go through D together.
  template <int M> void d_points(int i) {
    typename DNet::Acts* h = dh; V d[2 * M];
    for (int m = 0; m < M; ++m) { std::copy_n(&x[(i + m) * XD], XD, h[2 * m].h[0]); std::copy_n(&fake[(i + m) * XD], XD, h[2 * m + 1].h[0]); }
    D->template forward<2 * M>(h);
    for (int m = 0; m < M; ++m) {
      fr[i + m] = h[2 * m].h[DNet::L][0]; ff[i + m] = h[2 * m + 1].h[DNet::L][0];
      d_loss_grad(a.loss, fr[i + m], ff[i + m], d[2 * m], d[2 * m + 1]);
    }
    for (V& v : d) v = v * V(a.d_scale);
    D->template backward<true, 2 * M>(h, d, nullptr);
  }
  // Adds points i .. i + M - 1 to G's gradient, through the fixed D.
  template <int M> void g_points(int i) {
    typename GNet::Acts* hg = gh; typename DNet::Acts* hd = dh; V d[M], dy[M * DNet::IN];
    for (int m = 0; m < M; ++m) std::copy_n(&z[(i + m) * ZD], ZD, hg[m].h[0]);
    G->template forward<M>(hg);
    for (int m = 0; m < M; ++m) std::copy_n(hg[m].h[GNet::L], XD, hd[m].h[0]);
    D->template forward<M>(hd);
    for (int m = 0; m < M; ++m) { ff[i + m] = hd[m].h[DNet::L][0]; d[m] = g_loss_grad(a.loss, fr[i + m], ff[i + m]) * V(a.g_scale); }
    D->template backward<false, M>(hd, d, dy);
    G->template backward<true, M>(hg, dy, nullptr);
  }
  // M points at a time, then one at a time; a gradient still sums the points in order
  template <int M, class FM, class F1> void over_points(FM&& block, F1&& one) {
    int i = 0; for (; i + M <= N; i += M) block(i); for (; i < N; ++i) one(i);
  }

  template <class Net> static void state(Net& net, float* const* params, float* const* bufs, float* const* bufs2,
                                         int s0, int n, bool load) {
    net.transfer(params, net.p, s0, n, load); net.transfer(bufs, net.buf, s0, n, load);
    if (bufs2) net.transfer(bufs2, net.buf2, s0, n, load);
  }
  void run(int s0, int n) {
    state(*G, a.g_params, a.g_bufs, a.g_bufs2, s0, n, true); state(*D, a.d_params, a.d_bufs, a.d_bufs2, s0, n, true);
    gather(a.x, x.data(), N * XD, s0, n); gather(a.z, z.data(), N * ZD, s0, n);
    for (int i = 0; i < N; ++i) {
      std::copy_n(&z[i * ZD], ZD, gh[0].h[0]);
      G->template forward<1>(gh); std::copy_n(gh[0].h[GNet::L], XD, &fake[i * XD]);
    }
    for (int t = 0; t < a.d_steps; ++t) {
      D->zero_grad();
      over_points<DM>([&](int i) { d_points<DM>(i); }, [&](int i) { d_points<1>(i); });
      D->update(a.d_opt, t);
      if (a.renorm) D->renormalise_last();
    }
    scatter(fr.data(), a.logits, N, s0, n); scatter(ff.data(), a.logits + int64_t(a.S) * N, N, s0, n);
    for (int i = 0; i < N; ++i) {  // D is fixed over the G steps, and so are its logits on the reals
      std::copy_n(&x[i * XD], XD, dh[0].h[0]);
      if (a.pairing) D->template forward<1>(dh);
      fr[i] = a.pairing ? dh[0].h[DNet::L][0] : V(0.f);
    }
    for (int t = 0; t < a.g_steps; ++t) {
      G->zero_grad();
      over_points<GM>([&](int i) { g_points<GM>(i); }, [&](int i) { g_points<1>(i); });
      G->update(a.g_opt, t);
    }
    scatter(fr.data(), a.logits + 2 * int64_t(a.S) * N, N, s0, n); scatter(ff.data(), a.logits + 3 * int64_t(a.S) * N, N, s0, n);
    state(*G, a.g_params, a.g_bufs, a.g_bufs2, s0, n, false); state(*D, a.d_params, a.d_bufs, a.d_bufs2, s0, n, false);
  }
};

extern "C" int lanes() { return LANES; }
extern "C" int num_losses() { return N_LOSSES; }
// 0, or -1 with nothing touched for a loss this kernel does not implement.
extern "C" int iteration(const Args* a, int threads) {
  if (a->loss < 0 || a->loss >= N_LOSSES) return -1;
  const int blocks = (a->S + LANES - 1) / LANES;
#pragma omp parallel for num_threads(threads) schedule(static, 1)
  for (int b = 0; b < blocks; ++b) Block(*a).run(b * LANES, std::min(LANES, a->S - b * LANES));
  return 0;
}
// The activations alone, for the tests: out = act(in), n a multiple of LANES.
extern "C" void activation(int which, const float* in, float* out, int n) {
  for (int i = 0; i < n; i += LANES) {
    const V v = V::loadu(in + i);
    (which == TANH ? act<TANH>(v) : which == SIGMOID ? act<SIGMOID>(v) : which == RELU ? act<RELU>(v) : act<LEAKY_RELU>(v)).store(out + i);
  }
}
