// What both CPU kernels share (pair_kernel.cpp: seeds in SIMD lanes; gemm_kernel.cpp: a seed at a
// time on MKL's GEMMs): activations, losses' derivatives, optimisers, the net layout and Args.
#pragma once
#include <ATen/cpu/vec/vec.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

using V = at::vec::Vectorized<float>;
constexpr int LANES = V::size();
enum { TANH, SIGMOID, RELU, LEAKY_RELU };
enum { JSGAN, HINGE, LSGAN, RSGAN, RPHINGE, RPLSGAN, N_LOSSES };  // pair_kernel.KERNEL_LOSSES
// Layer sizes are compile-time constants (-D from pair_kernel.py).
constexpr int kG[] = {G_SIZES, 0}, kD[] = {D_SIZES, 0};  // 0 ends a list

static inline V sigmoid(V x) { return V(1.f) / (V(1.f) + x.neg().exp()); }  // as torch's CPU kernel
static inline V positive(V x) { return V::blendv(V(0.f), V(1.f), x > V(0.f)); }
// Cephes' tanhf, within 1.4 ulp (Sleef's, torch's, is within 1 but 2.5x slower; G is all tanh).
static inline V tanh_(V x) {
  const V z = x * x, ax = x.abs();
  V p = at::vec::fmadd(V(-5.70498872745e-3f), z, V(2.06390887954e-2f));
  p = at::vec::fmadd(at::vec::fmadd(p, z, V(-5.37397155531e-2f)), z, V(1.33314422036e-1f));
  p = at::vec::fmadd(p, z, V(-3.33332819422e-1f));
  const V big = V(1.f) - V(2.f) / ((ax + ax).exp() + V(1.f));
  return V::blendv(V::blendv(big, big.neg(), x < V(0.f)), at::vec::fmadd(x * z, p, x), ax < V(0.625f));
}
template <int A> static inline V act(V a) {
  if constexpr (A == TANH) return tanh_(a);
  else if constexpr (A == SIGMOID) return sigmoid(a);
  else if constexpr (A == RELU) return at::vec::maximum(a, V(0.f));
  else return V::blendv(a * V(0.2f), a, a > V(0.f));
}
template <int A> static inline V act_grad(V y) {  // from the output, as torch's *_backward
  if constexpr (A == TANH) return V(1.f) - y * y;
  else if constexpr (A == SIGMOID) return (V(1.f) - y) * y;
  else if constexpr (A == RELU) return positive(y);
  else return V::blendv(V(0.2f), V(1.f), y > V(0.f));
}

enum { SGD, ADAM };
struct Optim {  // pair_kernel._OptimArgs: torch.optim's hyper-parameters and Adam's step count so far
  int kind, step; float lr, momentum, beta1, beta2, eps;
};

// One optimiser step on a vector of elements. torch.optim.SGD (no dampening, Nesterov or weight
// decay): buf = m * buf + g; p -= lr * buf. torch.optim.Adam (no weight decay or amsgrad) as its
// fused CPU kernel writes it, at step count `step` (1 at the first step): bias corrections in
// double, the rest in float.
struct Update {
  const Optim& o; bool adam; V w, b2, c2, eps, step_size, bc2_sqrt;
  Update(const Optim& o, int step) : o(o), adam(o.kind == ADAM) {
    const double bc1 = 1.0 - std::pow(double(o.beta1), step), bc2 = 1.0 - std::pow(double(o.beta2), step);
    w = V(1.f - o.beta1); b2 = V(o.beta2); c2 = V(1.f - o.beta2); eps = V(o.eps);
    step_size = V(float(o.lr / bc1)); bc2_sqrt = V(float(std::sqrt(bc2)));
  }
  inline void operator()(V& p, V& buf, V& buf2, V g) const {
    if (!adam) { buf = buf * V(o.momentum) + g; p = p - V(o.lr) * buf; return; }
    // lerp(m, g, w), in torch's form for w >= 0.5 (exactly g when beta1 = 0)
    buf = 1.f - o.beta1 < 0.5f ? buf + w * (g - buf) : g - (g - buf) * V(o.beta1);
    buf2 = buf2 * b2 + c2 * g * g;
    p = p - step_size * buf / (buf2.sqrt() / bc2_sqrt + eps);
  }
};

// A StackedMLP's parameters, one seed's, in net.parameters() order: the weights [in, out], then
// the biases [out] (the last layer's only with LAST_BIAS).
template <const int* SZ, bool LAST_BIAS>
struct Layout {
  static constexpr int L = [] { int n = 0; while (SZ[n + 1]) ++n; return n; }();
  static constexpr bool has_bias(int k) { return k < L - 1 || LAST_BIAS; }
  static constexpr int w_at(int k) { int o = 0; for (int q = 0; q < k; ++q) o += SZ[q] * SZ[q + 1]; return o; }
  static constexpr int b_at(int k) { int o = w_at(L); for (int q = 0; q < k; ++q) o += has_bias(q) ? SZ[q + 1] : 0; return o; }
  static constexpr int P = b_at(L), IN = SZ[0], OUT = SZ[L];
  static constexpr int W = [] { int w = 0; for (int k = 0; k <= L; ++k) w = std::max(w, SZ[k]); return w; }();
  static constexpr int tensors = [] { int t = 0; for (int k = 0; k < L; ++k) t += 1 + has_bias(k); return t; }();
  static constexpr int size(int t) { return t < L ? SZ[t] * SZ[t + 1] : SZ[t - L + 1]; }  // tensor t, one seed's
  static constexpr int at(int t) { return t < L ? w_at(t) : b_at(t - L); }  // ... and where it starts
};

// losses.py's terms differentiated: D's loss w.r.t. a pair (f(x), f(y)), G's w.r.t. f(y).
static inline void d_loss_grad(int loss, V r, V f, V& dr, V& df) {
  switch (loss) {
    case JSGAN: dr = sigmoid(r.neg()).neg(); df = sigmoid(f); break;
    case HINGE: dr = positive(V(1.f) - r).neg(); df = positive(V(1.f) + f); break;
    case LSGAN: dr = V(2.f) * (r - V(1.f)); df = V(2.f) * f; break;
    case RSGAN: df = sigmoid(f - r); dr = df.neg(); break;
    case RPHINGE: df = positive(V(1.f) + f - r); dr = df.neg(); break;
    case RPLSGAN: dr = V(2.f) * (r - f - V(1.f)); df = dr.neg(); break;
    default: dr = df = V(NAN); break;  // unreachable: `iteration` refuses an unknown loss
  }
}
static inline V g_loss_grad(int loss, V r, V f) {
  switch (loss) {
    case JSGAN: return sigmoid(f.neg()).neg();
    case HINGE: return V(-1.f);
    case LSGAN: return V(2.f) * (f - V(1.f));
    case RSGAN: return sigmoid(r - f).neg();
    case RPHINGE: return positive(V(1.f) + r - f).neg();
    case RPLSGAN: return V(2.f) * (f - r - V(1.f));
    default: return V(NAN);  // unreachable: `iteration` refuses an unknown loss
  }
}

struct Args {  // pair_kernel._KernelArgs
  int S, N; const float *x, *z;
  // per net: the parameters, then the optimiser's buffers (Adam's second one: bufs2, else null)
  float *const *g_params, *const *g_bufs, *const *g_bufs2, *const *d_params, *const *d_bufs, *const *d_bufs2;
  int d_steps, g_steps, loss, pairing, renorm;  // renorm: renormalise_last after each D step
  Optim d_opt, g_opt;
  float d_scale, g_scale;  // dL/d(logit) of one term: 1 / N for a mean
  float* logits;  // [4, S, N] out: D's f(x), f(y) at the last D step, then G's at the last G step
};

