// growrnn's fused recurrent layer: ONE native library for every genome.
//
// A genome's time step is lowered (growrnn/cells/program.py) to a compact op list ("bytecode")
// over (B, H) buffers: element-wise ops, diag scales, copies, and one matrix product per step
// group. This file runs the whole time loop of one layer natively -- the per-step products
// through ATen (MKL/oneDNN), the element-wise ops as plain loops -- forward, and backward
// through time with the step groups' weight gradients as one GEMM over all T*B rows.
// The whole-sequence part (input GEMMs, x-only nodes) stays in torch, outside this file.
//
// Compiled once per machine and torch version, cached on disk (growrnn/cells/fused.py).

#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

namespace {

enum Kind { K_SLOT = 0, K_GROUP = 1, K_REG = 2, K_STATE = 3, K_CONST = 4 };
enum Op { O_SIGMOID = 0, O_TANH = 1, O_RELU = 2, O_IDENTITY = 3, O_ADD = 4, O_SUB = 5, O_MUL = 6,
          O_DIAG = 7, O_COPY = 8, O_MM = 9 };
enum Mode { M_NONE = 0, M_BIAS = 1, M_SLOT = 2 };

struct Prog {
  int ns, nst, ng, nr, nv, ni, nd;
  std::vector<int64_t> sw, gw, gmode;  // slot / group widths in units of H
  std::vector<int64_t> val;             // 3 per value: kind, a, b
  std::vector<int64_t> ins;             // 6 per instruction
  std::vector<int64_t> sout;            // value of each state's output

  explicit Prog(c10::IntArrayRef p) {
    int64_t k = 0;
    auto next = [&]() { TORCH_CHECK(k < (int64_t)p.size(), "growrnn fused: truncated program"); return p[k++]; };
    ns = next(); nst = next(); ng = next(); nr = next(); nv = next(); ni = next(); nd = next();
    for (int i = 0; i < ns; ++i) sw.push_back(next());
    for (int i = 0; i < ng; ++i) gw.push_back(next());
    for (int i = 0; i < 3 * nv; ++i) val.push_back(next());
    for (int i = 0; i < 6 * ni; ++i) ins.push_back(next());
    for (int i = 0; i < nst; ++i) sout.push_back(next());
  }
};

// ------------------------------------------------------------------ activations
// float: a Cephes-style exp that the compiler vectorizes (about 1 ulp); double: libm.
inline float fexp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const int32_t ni = (int32_t)(x * 1.44269504088896341f + 256.5f) - 256;  // floor; the sum is > 0
  const float n = (float)ni;
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float r2 = r * r;
  float y = ((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r +
              4.1665795894e-2f) * r + 1.6666665459e-1f) * r + 5.0000001201e-1f;
  y = y * r2 + r + 1.0f;
  int32_t e = (ni + 127) << 23;
  float s;
  std::memcpy(&s, &e, sizeof s);
  return y * s;
}
inline float sigmoid_f(float x) { return 1.0f / (1.0f + fexp(-x)); }
inline float tanh_f(float x) {
  x = x < -9.0f ? -9.0f : (x > 9.0f ? 9.0f : x);
  float e = fexp(2.0f * x);
  return (e - 1.0f) / (e + 1.0f);
}
inline double sigmoid_f(double x) { return 1.0 / (1.0 + std::exp(-x)); }
inline double tanh_f(double x) { return std::tanh(x); }

template <typename T>
struct Loc {
  T* p;
  int64_t ld;
  bool is_const;
  T c;
  char* fresh = nullptr;  // a register gradient: whether it was written in this step (else garbage)
};

// Whether an accumulation into ``d`` is its first in this step (then it stores instead of adding,
// which saves zeroing the registers' gradients every step); marks it written.
template <typename T>
inline bool first_write(const Loc<T>& d) {
  if (d.fresh == nullptr) return false;
  const bool first = !*d.fresh;
  *d.fresh = 1;
  return first;
}

// ------------------------------------------------------------------ products
// The BLAS torch links (MKL on x86 wheels) exports the Fortran gemm; called directly it costs no
// tensor or dispatcher work per step. Weak: where it is absent, ATen's mm runs instead.
extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*,
            const float*, const int*, const float*, float*, const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*,
            const int*, const double*, const int*, const double*, double*, const int*) __attribute__((weak));

// MKL's threading of the per-step products: a step's product is small, and waking a thread team
// for it costs more than it saves (on a loaded machine, 10x more). Single-threaded inside the loop.
int MKL_Set_Num_Threads_Local(int) __attribute__((weak));  // the C interface (by value)
}

struct OneBlasThread {
  int prev = 0;
  OneBlasThread() { if (MKL_Set_Num_Threads_Local) prev = MKL_Set_Num_Threads_Local(1); }
  ~OneBlasThread() { if (MKL_Set_Num_Threads_Local) MKL_Set_Num_Threads_Local(prev); }
};

inline void blas(const char* ta, const int* m, const int* n, const int* k, const float* al, const float* a,
                 const int* lda, const float* b, const int* ldb, const float* be, float* c, const int* ldc) {
  sgemm_(ta, "N", m, n, k, al, a, lda, b, ldb, be, c, ldc);
}
inline void blas(const char* ta, const int* m, const int* n, const int* k, const double* al, const double* a,
                 const int* lda, const double* b, const int* ldb, const double* be, double* c, const int* ldc) {
  dgemm_(ta, "N", m, n, k, al, a, lda, b, ldb, be, c, ldc);
}
template <typename T> bool have_blas();
template <> bool have_blas<float>() { return sgemm_ != nullptr; }
template <> bool have_blas<double>() { return dgemm_ != nullptr; }

// Row-major C (M x N, ldc) = beta * C + A (M x K, lda) . X, with X = Bm^T for Bm (N x K, ldb)
// when b_trans, else X = Bm (K x N, ldb).
template <typename T>
void gemm_rm(bool b_trans, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* Bm, int64_t ldb,
             T beta, T* C, int64_t ldc) {
  if (have_blas<T>()) {
    const int m = (int)N, n = (int)M, k = (int)K, la = (int)ldb, lb = (int)lda, lc = (int)ldc;
    const T one = T(1);
    blas(b_trans ? "T" : "N", &m, &n, &k, &one, Bm, &la, A, &lb, &beta, C, &lc);
    return;
  }
  auto opt = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  at::Tensor c = at::from_blob(C, {M, N}, {ldc, 1}, opt);
  at::Tensor a = at::from_blob(const_cast<T*>(A), {M, K}, {lda, 1}, opt);
  at::Tensor b = b_trans ? at::from_blob(const_cast<T*>(Bm), {N, K}, {ldb, 1}, opt).t()
                         : at::from_blob(const_cast<T*>(Bm), {K, N}, {ldb, 1}, opt);
  if (beta == T(0)) at::mm_out(c, a, b);
  else c.addmm_(a, b);
}

template <typename T>
struct Layer {
  const Prog& P;
  int64_t Tn, B, H;
  std::vector<T*> slot, init, g;
  std::vector<int64_t> sld, gld;
  T* reg;
  std::vector<double> consts;

  Loc<T> loc(int64_t v, int64_t t) const {
    while (true) {
      const int64_t* d = &P.val[3 * v];
      switch (d[0]) {
        case K_SLOT: return {slot[d[1]] + t * B * sld[d[1]] + d[2] * H, sld[d[1]], false, T(0)};
        case K_GROUP: return {g[d[1]] + t * B * gld[d[1]] + d[2] * H, gld[d[1]], false, T(0)};
        case K_REG: return {reg + (d[1] * Tn + t) * B * H, H, false, T(0)};
        case K_STATE:
          if (t == 0) return {init[d[1]], H, false, T(0)};
          v = P.sout[d[1]];
          t -= 1;
          continue;
        default: return {nullptr, 0, true, T(consts[d[1]])};
      }
    }
  }
};

template <typename T>
inline T at_(const Loc<T>& l, int64_t b, int64_t c) { return l.is_const ? l.c : l.p[b * l.ld + c]; }

template <typename T>
void act_fwd(int op, const Loc<T>& a, T* __restrict o, int64_t B, int64_t H) {
  for (int64_t b = 0; b < B; ++b) {
    T* __restrict ob = o + b * H;
    if (a.is_const) {
      for (int64_t c = 0; c < H; ++c) ob[c] = a.c;
      switch (op) {
        case O_SIGMOID: for (int64_t c = 0; c < H; ++c) ob[c] = sigmoid_f(ob[c]); break;
        case O_TANH: for (int64_t c = 0; c < H; ++c) ob[c] = tanh_f(ob[c]); break;
        case O_RELU: for (int64_t c = 0; c < H; ++c) ob[c] = ob[c] > T(0) ? ob[c] : T(0); break;
        default: break;
      }
      continue;
    }
    const T* __restrict ab = a.p + b * a.ld;
    switch (op) {
      case O_SIGMOID: for (int64_t c = 0; c < H; ++c) ob[c] = sigmoid_f(ab[c]); break;
      case O_TANH: for (int64_t c = 0; c < H; ++c) ob[c] = tanh_f(ab[c]); break;
      case O_RELU: for (int64_t c = 0; c < H; ++c) ob[c] = ab[c] > T(0) ? ab[c] : T(0); break;
      default: for (int64_t c = 0; c < H; ++c) ob[c] = ab[c]; break;
    }
  }
}

template <typename T>
void bin_fwd(int op, const Loc<T>& a, const Loc<T>& b_, T* __restrict o, int64_t B, int64_t H) {
  for (int64_t b = 0; b < B; ++b) {
    T* __restrict ob = o + b * H;
    if (!a.is_const && !b_.is_const) {
      const T* __restrict x = a.p + b * a.ld;
      const T* __restrict y = b_.p + b * b_.ld;
      if (op == O_ADD) for (int64_t c = 0; c < H; ++c) ob[c] = x[c] + y[c];
      else if (op == O_SUB) for (int64_t c = 0; c < H; ++c) ob[c] = x[c] - y[c];
      else for (int64_t c = 0; c < H; ++c) ob[c] = x[c] * y[c];
    } else {
      for (int64_t c = 0; c < H; ++c) {
        T x = at_(a, b, c), y = at_(b_, b, c);
        ob[c] = op == O_ADD ? x + y : (op == O_SUB ? x - y : x * y);
      }
    }
  }
}

// grad[b, c] += scale * g[b, c] * (f ? f[b, c] : 1), grad given by a location
template <typename T>
void accum(const Loc<T>& dst, const T* g, int64_t gld, const Loc<T>* f, T scale, int64_t B, int64_t H) {
  if (dst.is_const || dst.p == nullptr) return;
  const bool st = first_write(dst);
  for (int64_t b = 0; b < B; ++b) {
    T* d = dst.p + b * dst.ld;
    const T* gb = g + b * gld;
    if (f == nullptr || f->is_const) {
      const T k = f == nullptr ? scale : scale * f->c;
      if (st) for (int64_t c = 0; c < H; ++c) d[c] = k * gb[c];
      else for (int64_t c = 0; c < H; ++c) d[c] += k * gb[c];
    } else {
      const T* fb = f->p + b * f->ld;
      if (st) for (int64_t c = 0; c < H; ++c) d[c] = scale * gb[c] * fb[c];
      else for (int64_t c = 0; c < H; ++c) d[c] += scale * gb[c] * fb[c];
    }
  }
}

template <typename T>
Layer<T> make_layer(const Prog& P, const std::vector<at::Tensor>& slots, const std::vector<at::Tensor>& init,
                    std::vector<at::Tensor>& gt, at::Tensor& reg, c10::ArrayRef<double> consts, int64_t Tn,
                    int64_t B, int64_t H) {
  Layer<T> L{P, Tn, B, H, {}, {}, {}, {}, {}, reg.data_ptr<T>(), std::vector<double>(consts.begin(), consts.end())};
  for (int i = 0; i < P.ns; ++i) { L.slot.push_back(slots[i].data_ptr<T>()); L.sld.push_back(P.sw[i] * H); }
  for (int i = 0; i < P.nst; ++i) L.init.push_back(init[i].data_ptr<T>());
  for (int i = 0; i < P.ng; ++i) { L.g.push_back(gt[i].data_ptr<T>()); L.gld.push_back(P.gw[i] * H); }
  return L;
}

void check_inputs(const Prog& P, const std::vector<at::Tensor>& slots, const std::vector<at::Tensor>& init,
                  const std::vector<at::Tensor>& weights, int64_t Tn, int64_t H) {
  TORCH_CHECK((int)slots.size() == P.ns && (int)init.size() == P.nst && (int)weights.size() == P.ng,
              "growrnn fused: program and tensors disagree");
  TORCH_CHECK(P.nst > 0 && init[0].dim() == 2 && init[0].size(1) == H, "growrnn fused: bad initial state");
  for (int i = 0; i < P.ns; ++i)
    TORCH_CHECK(slots[i].is_contiguous() && slots[i].dim() == 3 && slots[i].size(0) == Tn &&
                slots[i].size(2) == P.sw[i] * H, "growrnn fused: bad slot ", i);
  for (int i = 0; i < P.nst; ++i) TORCH_CHECK(init[i].is_contiguous(), "growrnn fused: state not contiguous");
}

template <typename T>
std::vector<at::Tensor> forward_impl(const Prog& P, const std::vector<at::Tensor>& slots,
                                     const std::vector<at::Tensor>& init, const std::vector<at::Tensor>& weights,
                                     const std::vector<at::Tensor>& biases, const std::vector<at::Tensor>& diags,
                                     c10::ArrayRef<double> consts, int64_t Tn, int64_t H) {
  const int64_t B = init[0].size(0);
  auto opt = init[0].options();
  at::Tensor reg = at::empty({std::max(P.nr, 1), Tn, B, H}, opt);
  std::vector<at::Tensor> gt;
  for (int i = 0; i < P.ng; ++i) {
    gt.push_back(at::empty({Tn, B, P.gw[i] * H}, opt));
  }
  Layer<T> L = make_layer<T>(P, slots, init, gt, reg, consts, Tn, B, H);
  std::vector<const T*> pw;
  for (auto& w : weights) pw.push_back(w.data_ptr<T>());
  OneBlasThread one_thread;
  for (int64_t t = 0; t < Tn; ++t) {
    for (int k = 0; k < P.ni; ++k) {
      const int64_t* in = &P.ins[6 * k];
      const int op = (int)in[0];
      if (op == O_MM) {
        const int64_t sj = in[1], r = P.val[3 * in[2] + 1], w = P.gw[sj] * H;
        T* out = L.g[sj] + t * B * w;
        const T* arg = L.reg + (r * Tn + t) * B * H;
        T beta = T(0);
        if (in[3] == M_SLOT) {
          const int64_t ld = L.sld[in[4]];
          const T* src = L.slot[in[4]] + t * B * ld + in[5] * H;
          for (int64_t b = 0; b < B; ++b) std::memcpy(out + b * w, src + b * ld, w * sizeof(T));
          beta = T(1);
        } else if (in[3] == M_BIAS) {
          const T* bias = biases[sj].data_ptr<T>();
          for (int64_t b = 0; b < B; ++b) std::memcpy(out + b * w, bias, w * sizeof(T));
          beta = T(1);
        }
        gemm_rm<T>(true, B, w, H, arg, H, pw[sj], H, beta, out, w);
        continue;
      }
      T* o = L.loc(in[1], t).p;
      Loc<T> a = L.loc(in[2], t);
      if (op <= O_IDENTITY || op == O_COPY) {
        act_fwd<T>(op == O_COPY ? O_IDENTITY : op, a, o, B, H);
      } else if (op == O_DIAG) {
        const T* u = diags[in[3]].data_ptr<T>();
        for (int64_t b = 0; b < B; ++b)
          for (int64_t c = 0; c < H; ++c) o[b * H + c] = u[c] * at_(a, b, c);
      } else {
        bin_fwd<T>(op, a, L.loc(in[3], t), o, B, H);
      }
    }
  }
  at::Tensor out = at::empty({Tn, B, H}, opt);
  std::vector<at::Tensor> result{out};
  auto copy_to = [&](T* dst, int64_t v, int64_t t) {
    Loc<T> l = L.loc(v, t);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < H; ++c) dst[b * H + c] = at_(l, b, c);
  };
  T* po = out.data_ptr<T>();
  for (int64_t t = 0; t < Tn; ++t) copy_to(po + t * B * H, P.sout[0], t);
  for (int i = 0; i < P.nst; ++i) {
    at::Tensor f = at::empty({B, H}, opt);
    copy_to(f.data_ptr<T>(), P.sout[i], Tn - 1);
    result.push_back(f);
  }
  result.push_back(reg);
  for (auto& g : gt) result.push_back(g);
  return result;
}

template <typename T>
std::vector<at::Tensor> backward_impl(const Prog& P, const std::vector<at::Tensor>& slots,
                                      const std::vector<at::Tensor>& init, const std::vector<at::Tensor>& weights,
                                      const std::vector<at::Tensor>& diags, at::Tensor reg, std::vector<at::Tensor> gt,
                                      const at::Tensor& dout, const std::vector<at::Tensor>& dfinal,
                                      c10::ArrayRef<double> consts, int64_t Tn, int64_t H) {
  const int64_t B = init[0].size(0);
  auto opt = init[0].options();
  Layer<T> L = make_layer<T>(P, slots, init, gt, reg, consts, Tn, B, H);
  std::vector<at::Tensor> dslots, dg;
  for (auto& x : slots) dslots.push_back(at::empty_like(x));  // each step zeroes its own rows
  for (auto& g : gt) dg.push_back(at::empty_like(g));
  const int64_t nst = P.nst;
  std::vector<T> dreg(std::max(P.nr, 1) * B * H), c0(nst * B * H), c1(nst * B * H);
  std::vector<char> wr(std::max(P.nr, 1));
  T* carry = c0.data();
  T* carry_next = c1.data();
  for (int i = 0; i < nst; ++i) {
    at::Tensor d = dfinal[i].to(opt.dtype()).contiguous();
    std::memcpy(carry + i * B * H, d.data_ptr<T>(), B * H * sizeof(T));
  }
  at::Tensor ddiag = at::zeros({std::max(P.nd, 1), H}, opt);
  T* pdreg = dreg.data();
  const T* pdout = dout.data_ptr<T>();
  T* pdd = ddiag.data_ptr<T>();
  std::vector<T*> pds, pdg;
  for (auto& d : dslots) pds.push_back(d.data_ptr<T>());
  for (auto& d : dg) pdg.push_back(d.data_ptr<T>());
  std::vector<const T*> pw;
  for (auto& w : weights) pw.push_back(w.data_ptr<T>());
  std::optional<OneBlasThread> one_thread(std::in_place);
  for (int64_t t = Tn - 1; t >= 0; --t) {
    std::fill(wr.begin(), wr.end(), char(0));
    std::fill(carry_next, carry_next + nst * B * H, T(0));
    for (int i = 0; i < P.ns; ++i) std::fill(pds[i] + t * B * L.sld[i], pds[i] + (t + 1) * B * L.sld[i], T(0));
    for (int i = 0; i < P.ng; ++i) std::fill(pdg[i] + t * B * L.gld[i], pdg[i] + (t + 1) * B * L.gld[i], T(0));
    T* pcn = carry_next;
    auto gloc = [&](int64_t v) -> Loc<T> {
      const int64_t* d = &P.val[3 * v];
      switch (d[0]) {
        case K_SLOT: return {pds[d[1]] + t * B * L.sld[d[1]] + d[2] * H, L.sld[d[1]], false, T(0)};
        case K_GROUP: return {pdg[d[1]] + t * B * L.gld[d[1]] + d[2] * H, L.gld[d[1]], false, T(0)};
        case K_REG: return {pdreg + d[1] * B * H, H, false, T(0), &wr[d[1]]};
        case K_STATE: return {pcn + d[1] * B * H, H, false, T(0)};
        default: return {nullptr, 0, true, T(0)};
      }
    };
    const T* pc = carry;
    for (int i = 0; i < nst; ++i) accum<T>(gloc(P.sout[i]), pc + i * B * H, H, nullptr, T(1), B, H);
    accum<T>(gloc(P.sout[0]), pdout + t * B * H, H, nullptr, T(1), B, H);
    for (int k = P.ni - 1; k >= 0; --k) {
      const int64_t* in = &P.ins[6 * k];
      const int op = (int)in[0];
      if (op == O_MM) {
        const int64_t sj = in[1], r = P.val[3 * in[2] + 1], w = P.gw[sj] * H;
        const T* dG = pdg[sj] + t * B * w;
        if (in[3] == M_SLOT) {
          Loc<T> dst{pds[in[4]] + t * B * L.sld[in[4]] + in[5] * H, L.sld[in[4]], false, T(0)};
          accum<T>(dst, dG, w, nullptr, T(1), B, w);
        }
        char* fr = &wr[r];
        gemm_rm<T>(false, B, H, w, dG, w, pw[sj], H, *fr ? T(1) : T(0), pdreg + r * B * H, H);
        *fr = 1;
        continue;
      }
      Loc<T> go = gloc(in[1]);
      if (go.fresh && !*go.fresh) continue;  // nothing read this value: its gradient is zero
      Loc<T> y = L.loc(in[1], t);
      Loc<T> a = L.loc(in[2], t), ga = gloc(in[2]);
      if (op == O_IDENTITY || op == O_COPY) {
        accum<T>(ga, go.p, H, nullptr, T(1), B, H);
      } else if (op <= O_RELU) {
        if (ga.is_const) continue;
        const bool st = first_write(ga);
        for (int64_t b = 0; b < B; ++b) {
          T* d = ga.p + b * ga.ld;
          const T* g = go.p + b * H;
          const T* yb = y.p + b * H;
          if (st) {
            if (op == O_SIGMOID) for (int64_t c = 0; c < H; ++c) d[c] = g[c] * yb[c] * (T(1) - yb[c]);
            else if (op == O_TANH) for (int64_t c = 0; c < H; ++c) d[c] = g[c] * (T(1) - yb[c] * yb[c]);
            else for (int64_t c = 0; c < H; ++c) d[c] = yb[c] > T(0) ? g[c] : T(0);
          } else {
            if (op == O_SIGMOID) for (int64_t c = 0; c < H; ++c) d[c] += g[c] * yb[c] * (T(1) - yb[c]);
            else if (op == O_TANH) for (int64_t c = 0; c < H; ++c) d[c] += g[c] * (T(1) - yb[c] * yb[c]);
            else for (int64_t c = 0; c < H; ++c) d[c] += yb[c] > T(0) ? g[c] : T(0);
          }
        }
      } else if (op == O_DIAG) {
        const T* u = diags[in[3]].data_ptr<T>();
        T* du = pdd + in[3] * H;
        const bool st = !ga.is_const && first_write(ga);
        for (int64_t b = 0; b < B; ++b) {
          const T* g = go.p + b * H;
          for (int64_t c = 0; c < H; ++c) du[c] += g[c] * at_(a, b, c);
          if (!ga.is_const) {
            T* d = ga.p + b * ga.ld;
            if (st) for (int64_t c = 0; c < H; ++c) d[c] = g[c] * u[c];
            else for (int64_t c = 0; c < H; ++c) d[c] += g[c] * u[c];
          }
        }
      } else {
        Loc<T> bb = L.loc(in[3], t), gb = gloc(in[3]);
        if (op == O_ADD || op == O_SUB) {
          accum<T>(ga, go.p, H, nullptr, T(1), B, H);
          accum<T>(gb, go.p, H, nullptr, op == O_ADD ? T(1) : T(-1), B, H);
        } else {
          accum<T>(ga, go.p, H, &bb, T(1), B, H);
          accum<T>(gb, go.p, H, &a, T(1), B, H);
        }
      }
    }
    std::swap(carry, carry_next);
  }
  one_thread.reset();  // the whole-sequence weight gradients below may use every thread
  std::vector<at::Tensor> result = dslots;
  for (int i = 0; i < nst; ++i) {
    at::Tensor d = at::empty({B, H}, opt);
    std::memcpy(d.data_ptr<T>(), carry + i * B * H, B * H * sizeof(T));
    result.push_back(d);
  }
  std::vector<at::Tensor> dbias;
  for (int sj = 0; sj < P.ng; ++sj) {
    const int64_t w = P.gw[sj] * H;
    at::Tensor g2 = dg[sj].view({Tn * B, w});
    int64_t r = -1;
    for (int k = 0; k < P.ni; ++k)
      if (P.ins[6 * k] == O_MM && P.ins[6 * k + 1] == sj) r = P.val[3 * P.ins[6 * k + 2] + 1];
    result.push_back(g2.t().mm(reg.select(0, r).view({Tn * B, H})));
    dbias.push_back(g2.sum(0));
  }
  for (auto& d : dbias) result.push_back(d);
  result.push_back(ddiag);
  return result;
}

std::vector<at::Tensor> fused_forward(std::vector<at::Tensor> slots, std::vector<at::Tensor> init,
                                      std::vector<at::Tensor> weights, std::vector<at::Tensor> biases,
                                      std::vector<at::Tensor> diags, c10::IntArrayRef program,
                                      c10::ArrayRef<double> consts, int64_t T, int64_t H) {
  Prog P(program);
  check_inputs(P, slots, init, weights, T, H);
  at::NoGradGuard guard;
  std::vector<at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(init[0].scalar_type(), "growrnn_fused_forward", [&] {
    out = forward_impl<scalar_t>(P, slots, init, weights, biases, diags, consts, T, H);
  });
  return out;
}

std::vector<at::Tensor> fused_backward(std::vector<at::Tensor> slots, std::vector<at::Tensor> init,
                                       std::vector<at::Tensor> weights, std::vector<at::Tensor> diags,
                                       at::Tensor reg, std::vector<at::Tensor> gtapes, at::Tensor dout,
                                       std::vector<at::Tensor> dfinal, c10::IntArrayRef program,
                                       c10::ArrayRef<double> consts, int64_t T, int64_t H) {
  Prog P(program);
  check_inputs(P, slots, init, weights, T, H);
  TORCH_CHECK(dout.is_contiguous() && (int)dfinal.size() == P.nst, "growrnn fused: bad gradients");
  at::NoGradGuard guard;
  std::vector<at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(init[0].scalar_type(), "growrnn_fused_backward", [&] {
    out = backward_impl<scalar_t>(P, slots, init, weights, diags, reg, gtapes, dout, dfinal, consts, T, H);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(growrnn_fused, m) {
  m.def("forward(Tensor[] slots, Tensor[] init, Tensor[] weights, Tensor[] biases, Tensor[] diags, "
        "int[] program, float[] consts, int T, int H) -> Tensor[]");
  m.def("backward(Tensor[] slots, Tensor[] init, Tensor[] weights, Tensor[] diags, Tensor reg, "
        "Tensor[] gtapes, Tensor dout, Tensor[] dfinal, int[] program, float[] consts, int T, int H) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(growrnn_fused, CPU, m) {
  m.impl("forward", &fused_forward);
  m.impl("backward", &fused_backward);
}
