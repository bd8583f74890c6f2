// The im2col path of the dense conv kernels (see conv2d_im2col.h), with pruning of the kernel
// taps that only read zero padding.
//
// Columns. For each output pixel im2col lays out the input values its kernel taps read, in the
// (ky, kx, ci) order of an OHWI weight row, so that a GEMM of the columns with the weights is the
// conv. Taps that land in the padding contribute nothing but still cost their share of the GEMM.
// On small feature maps that share is large: ResNet-18 on 32x32 images has 1x1 maps in layer4,
// where a 3x3 pad-1 kernel only ever uses its centre tap (8/9 of the work multiplies zeros), and
// 2x2 maps in layer3, where every output pixel uses 4 of the 9 taps.
//
// Blocks. Whether a tap is valid for an output pixel depends on the pixel's row only through ky
// and on its column only through kx. Along each axis the output positions split into a few runs
// (the first positions next to the padding, the interior, the last positions) with equal ranges
// of valid taps. A block is a rectangle of output pixels (the same in every image) with one
// rectangle of taps. The plans:
//   plain    one block: every pixel, every tap (classic im2col)
//   global   one block: every pixel, the smallest tap rectangle holding every valid tap
//   classes  one block per (row run, column run): exactly the valid taps of its pixels
// Each block runs its own GEMMs with K restricted to its taps. When its tap columns are not whole
// kernel rows its weight columns are not contiguous in K; instead of gathering them it runs one
// GEMM per kernel row ky with the weights' leading dimension (OpenBLAS packs B anyway).
//
// Views instead of columns. When every tap of a block is valid for all its pixels, a pixel's taps
// read one contiguous run of the input (a single tap, or whole input rows with all channels) and
// the block's rows are evenly spaced in the input, the columns are a strided view of x and no
// im2col runs at all: a 3x3 conv on a 1x1 map becomes a 1x1 conv with the centre tap, and on a
// 2x2 map each pixel's block reads the whole image.
//
// Output rows of a block are evenly spaced in y when the block covers whole images or one pixel
// per image; otherwise its GEMM writes into a scratch area scattered into y afterwards (and its
// dy rows are gathered into the scratch area in the backward directions).
#include "ops/conv2d_im2col.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "ops/gemm.h"
#include "runtime/status.h"

namespace edgetrain {

namespace {

std::atomic<TapPruning> forced_pruning{TapPruning::kAuto};

// im2col works on a chunk of images at once so every GEMM has at least this many rows: at the
// late layers of a CNN on small inputs an image has 1-4 output pixels, and one GEMM per image
// degenerates to a matrix-vector product (measured: ResNet-18 layer4 at 32x32 ran at ~1 GFLOP/s).
constexpr int64_t kMinGemmRows = 256;
// Classes are used when they do at most this share (percent) of the global plan's work: below
// that, several smaller GEMMs beat one larger GEMM with some zero taps.
constexpr int64_t kClassesMaxPercent = 90;
// Runs per axis and blocks per plan are bounded so that a plan lives on the stack. Runs are at
// most 2 * kernel + 1; larger kernels fall back to the global plan.
constexpr int kMaxRuns = 16;
constexpr int kMaxBlocks = 64;
// The classes plan uses larger chunks (its corner blocks have one pixel per image); its workspace
// may grow to this many floats or to the plain plan's size, whichever is larger.
constexpr int64_t kClassesWorkspaceFloats = int64_t{1} << 20;

// Smallest chunk worth handing to another thread: about 16K floats of work.
int64_t min_chunk_for(int64_t floats_per_item) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, floats_per_item));
}

inline void add_to(float* __restrict acc, const float* __restrict a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += a[i];
}

// Range [k0, k1) of kernel taps along one axis that land inside the input for output position o.
inline void valid_taps(int64_t o, int64_t stride, int64_t pad, int64_t kernel, int64_t size,
                       int64_t* k0, int64_t* k1) {
  const int64_t start = o * stride - pad;
  *k0 = std::clamp<int64_t>(-start, 0, kernel);
  *k1 = std::clamp<int64_t>(size - start, *k0, kernel);
}

// --- plans ---------------------------------------------------------------------------------------

// Output positions [o0, o1) along one axis all have the valid taps [k0, k1).
struct Run {
  int64_t o0, o1, k0, k1;
};

struct AxisRuns {
  int n = 0;
  bool overflow = false;  // more than kMaxRuns runs: only the union below is known
  int64_t u0 = 0, u1 = 0;  // smallest range holding every position's valid taps (empty if none)
  Run run[kMaxRuns];
};

AxisRuns axis_runs(int64_t outs, int64_t stride, int64_t pad, int64_t kernel, int64_t size) {
  AxisRuns a;
  a.u0 = kernel;
  for (int64_t o = 0; o < outs; ++o) {
    int64_t k0, k1;
    valid_taps(o, stride, pad, kernel, size, &k0, &k1);
    if (k0 < k1) a.u0 = std::min(a.u0, k0), a.u1 = std::max(a.u1, k1);
    if (a.n > 0 && a.run[a.n - 1].k0 == k0 && a.run[a.n - 1].k1 == k1) {
      a.run[a.n - 1].o1 = o + 1;
    } else if (a.n < kMaxRuns) {
      a.run[a.n++] = Run{o, o + 1, k0, k1};
    } else {
      a.overflow = true;
    }
  }
  if (a.u1 == 0) a.u0 = 0;
  return a;
}

struct Block {
  int64_t oy0, oy1, ox0, ox1;  // output pixels [oy0, oy1) x [ox0, ox1) of every image
  int64_t ky0, ky1, kx0, kx1;  // kernel taps [ky0, ky1) x [kx0, kx1)
  bool all_valid;             // every tap of the block is inside the input for all its pixels

  int64_t rows() const { return oy1 - oy0; }
  int64_t cols() const { return ox1 - ox0; }
  int64_t pixels() const { return rows() * cols(); }
  int64_t taps() const { return (ky1 - ky0) * (kx1 - kx0); }
};

struct Plan {
  int n = 0;
  Block block[kMaxBlocks];
  int64_t chunk = 1;           // images per chunk
  int64_t cols_floats = 0;     // columns of the largest block, one chunk
  int64_t scratch_floats = 0;  // y / dy rows of the largest block whose rows are unevenly spaced
};

// Whether a block's rows can be unevenly spaced in y (see even_stride): anything but one pixel
// per image or whole images.
bool may_need_scratch(const ConvGeometry& g, const Block& b) {
  return b.pixels() != 1 && b.pixels() != g.out_h * g.out_w;
}

Plan make_plan(const ConvGeometry& g) {
  const AxisRuns ry = axis_runs(g.out_h, g.sh, g.ph, g.kh, g.h);
  const AxisRuns rx = axis_runs(g.out_w, g.sw, g.pw, g.kw, g.w);
  const int64_t pixels = g.out_h * g.out_w;
  const int64_t global_work = pixels * (ry.u1 - ry.u0) * (rx.u1 - rx.u0);
  const bool classes_possible = !ry.overflow && !rx.overflow && ry.n * rx.n <= kMaxBlocks;
  int64_t class_work = 0;
  if (classes_possible)
    for (int i = 0; i < ry.n; ++i)
      for (int j = 0; j < rx.n; ++j) {
        const Run& r = ry.run[i];
        const Run& c = rx.run[j];
        class_work += (r.o1 - r.o0) * (c.o1 - c.o0) * (r.k1 - r.k0) * (c.k1 - c.k0);
      }

  TapPruning mode = forced_pruning.load(std::memory_order_relaxed);
  if (mode == TapPruning::kClasses && !classes_possible) mode = TapPruning::kGlobal;
  if (mode == TapPruning::kAuto)
    mode = classes_possible && class_work * 100 <= global_work * kClassesMaxPercent
               ? TapPruning::kClasses
               : TapPruning::kGlobal;

  Plan p;
  if (mode == TapPruning::kClasses) {
    for (int i = 0; i < ry.n; ++i)
      for (int j = 0; j < rx.n; ++j) {
        const Run& r = ry.run[i];
        const Run& c = rx.run[j];
        p.block[p.n++] = Block{r.o0, r.o1, c.o0, c.o1, r.k0, r.k1, c.k0, c.k1, true};
      }
  } else {
    Block b{0, g.out_h, 0, g.out_w, 0, g.kh, 0, g.kw, false};
    if (mode == TapPruning::kGlobal) b.ky0 = ry.u0, b.ky1 = ry.u1, b.kx0 = rx.u0, b.kx1 = rx.u1;
    bool valid = !ry.overflow && !rx.overflow;  // without the runs, assume some taps are not
    for (int i = 0; valid && i < ry.n; ++i)
      valid = ry.run[i].k0 <= b.ky0 && ry.run[i].k1 >= b.ky1;
    for (int j = 0; valid && j < rx.n; ++j)
      valid = rx.run[j].k0 <= b.kx0 && rx.run[j].k1 >= b.kx1;
    b.all_valid = valid;
    p.block[p.n++] = b;
  }

  const int64_t cg = g.c_per_group(), opg = g.out_c_per_group();
  const int64_t plain_chunk =
      std::clamp<int64_t>((kMinGemmRows + pixels - 1) / pixels, 1, std::max<int64_t>(1, g.n));
  int64_t cols_per_image = 0, scratch_per_image = 0, min_pixels = pixels;
  for (int i = 0; i < p.n; ++i) {
    const Block& b = p.block[i];
    if (b.taps() == 0) continue;
    cols_per_image = std::max(cols_per_image, b.pixels() * b.taps() * cg);
    if (may_need_scratch(g, b)) scratch_per_image = std::max(scratch_per_image, b.pixels() * opg);
    min_pixels = std::min(min_pixels, b.pixels());
  }
  p.chunk = plain_chunk;
  if (p.n > 1) {
    const int64_t want =
        std::clamp<int64_t>((kMinGemmRows + min_pixels - 1) / min_pixels, 1, std::max<int64_t>(1, g.n));
    const int64_t budget =
        std::max(kClassesWorkspaceFloats, plain_chunk * pixels * g.kh * g.kw * cg);
    const int64_t per_image = std::max<int64_t>(1, cols_per_image + scratch_per_image);
    p.chunk = std::max(plain_chunk, std::min(want, budget / per_image));
  }
  p.cols_floats = p.chunk * cols_per_image;
  p.scratch_floats = p.chunk * scratch_per_image;
  return p;
}

// Whether offsets (in pixels) of rows enumerated as (outer, mid, inner) with counts n_* and
// strides s_* are evenly spaced: base + r * stride. Sets *stride (for a single row, s_outer).
bool even_stride(int64_t n_inner, int64_t s_inner, int64_t n_mid, int64_t s_mid, int64_t n_outer,
                 int64_t s_outer, int64_t* stride) {
  int64_t st = 0, span = 1;
  const int64_t n[3] = {n_inner, n_mid, n_outer}, s[3] = {s_inner, s_mid, s_outer};
  for (int l = 0; l < 3; ++l) {
    if (n[l] == 1) continue;
    if (st == 0) {
      st = s[l], span = n[l];
    } else {
      if (s[l] != st * span) return false;
      span *= n[l];
    }
  }
  *stride = st == 0 ? s_outer : st;
  return true;
}

// Pixel offset in y of a block's row r, counted from the chunk's first pixel; rows run image by
// image, then output row, then output column.
inline int64_t out_pixel(const ConvGeometry& g, const Block& b, int64_t r) {
  const int64_t ox = b.ox0 + r % b.cols(), t = r / b.cols();
  const int64_t oy = b.oy0 + t % b.rows(), i = t / b.rows();
  return (i * g.out_h + oy) * g.out_w + ox;
}

// Where a block's rows live in y (or dy) for a chunk of `count` images.
struct OutRows {
  bool even;
  int64_t base, stride;  // in pixels from the chunk's first pixel
};

OutRows out_rows(const ConvGeometry& g, const Block& b, int64_t count) {
  OutRows o;
  o.base = b.oy0 * g.out_w + b.ox0;
  o.even = even_stride(b.cols(), 1, b.rows(), g.out_w, count, g.out_h * g.out_w, &o.stride);
  return o;
}

// Whether the block's columns for a chunk are a strided view of the input: row r's taps are
// x_chunk[(base + r * stride) * C + c0 + (0 .. K)). For backward data (writing through the view)
// the rows must not overlap either.
bool input_view(const ConvGeometry& g, const Block& b, int64_t cg, int64_t count, bool disjoint,
                int64_t* base, int64_t* stride) {
  if (!b.all_valid || b.taps() == 0) return false;
  const int64_t nky = b.ky1 - b.ky0, nkx = b.kx1 - b.kx0;
  const bool contiguous = b.taps() == 1 || (cg == g.c && (nky == 1 || nkx == g.w));
  if (!contiguous) return false;
  if (!even_stride(b.cols(), g.sw, b.rows(), g.sh * g.w, count, g.h * g.w, stride)) return false;
  if (disjoint && b.taps() * cg > *stride * g.c) return false;
  *base = (b.oy0 * g.sh - g.ph + b.ky0) * g.w + (b.ox0 * g.sw - g.pw + b.kx0);
  return true;
}

// --- columns ---------------------------------------------------------------------------------

// cols[r][(ky - ky0) * nkx + (kx - kx0)][ci] = x[pixel of row r, shifted by the tap][c0 + ci],
// zero where the tap is in the padding, for a chunk of `count` images starting at x_chunk.
void im2col(const Parallel& par, const ConvGeometry& g, const Block& b, const float* x_chunk,
            int64_t count, int64_t c0, int64_t cg, float* cols) {
  const int64_t nkx = b.kx1 - b.kx0, k = b.taps() * cg;
  const bool contiguous_taps = cg == g.c;  // adjacent taps of a kernel row read adjacent memory
  par.for_each(count * b.rows(), min_chunk_for(b.cols() * k), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {  // t = image * rows + (oy - oy0)
      const int64_t i = t / b.rows(), oy = b.oy0 + t % b.rows();
      const float* x_img = x_chunk + i * g.h * g.w * g.c;
      for (int64_t ox = b.ox0; ox < b.ox1; ++ox) {
        float* col = cols + (t * b.cols() + (ox - b.ox0)) * k;
        const int64_t ix_start = ox * g.sw - g.pw;
        const int64_t vx0 = std::clamp<int64_t>(-ix_start, b.kx0, b.kx1);
        const int64_t vx1 = std::clamp<int64_t>(g.w - ix_start, vx0, b.kx1);
        for (int64_t ky = b.ky0; ky < b.ky1; ++ky) {
          float* dst = col + (ky - b.ky0) * nkx * cg;
          const int64_t iy = oy * g.sh - g.ph + ky;
          if (iy < 0 || iy >= g.h || vx0 == vx1) {
            std::memset(dst, 0, sizeof(float) * nkx * cg);
            continue;
          }
          std::memset(dst, 0, sizeof(float) * (vx0 - b.kx0) * cg);
          std::memset(dst + (vx1 - b.kx0) * cg, 0, sizeof(float) * (b.kx1 - vx1) * cg);
          const float* src = x_img + (iy * g.w + ix_start + vx0) * g.c + c0;  // tap vx0
          float* d = dst + (vx0 - b.kx0) * cg;
          if (contiguous_taps) {
            std::memcpy(d, src, sizeof(float) * (vx1 - vx0) * cg);
          } else {
            for (int64_t kx = vx0; kx < vx1; ++kx)
              std::memcpy(d + (kx - vx0) * cg, src + (kx - vx0) * g.c, sizeof(float) * cg);
          }
        }
      }
    }
  });
}

// dx_chunk[...][c0 + ci] += every column entry that im2col would have copied from there. Gathers
// per input row (rather than scattering per output row) so that threads never write the same
// element.
void col2im_add(const Parallel& par, const ConvGeometry& g, const Block& b, const float* cols,
                int64_t count, int64_t c0, int64_t cg, float* dx_chunk) {
  const int64_t nkx = b.kx1 - b.kx0, k = b.taps() * cg;
  // Input rows the block's taps can reach.
  const int64_t iy_lo = std::max<int64_t>(0, b.oy0 * g.sh - g.ph + b.ky0);
  const int64_t iy_hi = std::min<int64_t>(g.h, (b.oy1 - 1) * g.sh - g.ph + b.ky1);
  const int64_t span = iy_hi - iy_lo;
  if (span <= 0) return;
  par.for_each(count * span, min_chunk_for(g.w * cg * (b.ky1 - b.ky0)), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t i = t / span, iy = iy_lo + t % span;
      float* dx_row = dx_chunk + (i * g.h + iy) * g.w * g.c + c0;
      for (int64_t ky = b.ky0; ky < b.ky1; ++ky) {
        const int64_t u = iy + g.ph - ky;
        if (u < 0 || u % g.sh != 0) continue;
        const int64_t oy = u / g.sh;
        if (oy < b.oy0 || oy >= b.oy1) continue;
        const float* col_row = cols + ((i * b.rows() + (oy - b.oy0)) * b.cols()) * k + (ky - b.ky0) * nkx * cg;
        for (int64_t ox = b.ox0; ox < b.ox1; ++ox) {
          const float* col = col_row + (ox - b.ox0) * k;
          const int64_t ix_start = ox * g.sw - g.pw;
          const int64_t vx0 = std::clamp<int64_t>(-ix_start, b.kx0, b.kx1);
          const int64_t vx1 = std::clamp<int64_t>(g.w - ix_start, vx0, b.kx1);
          for (int64_t kx = vx0; kx < vx1; ++kx)
            add_to(dx_row + (ix_start + kx) * g.c, col + (kx - b.kx0) * cg, cg);
        }
      }
    }
  });
}

// --- GEMMs of one block -------------------------------------------------------------------------
// w_g points at the group's first weight row (kg = kh * kw * cg floats per output channel). The
// block's taps of one kernel row ky are weight columns [(ky * kw + kx0) * cg, + nkx * cg); with
// whole kernel rows (nkx == kw) all its taps are one contiguous range and one GEMM does.

// c[rows][opg] = beta * c + a[rows][taps * cg] * W_block^T
void block_forward_gemm(const Parallel& par, const ConvGeometry& g, const Block& b, int64_t rows,
                        const float* a, int64_t lda, const float* w_g, float beta, float* c,
                        int64_t ldc) {
  const int64_t cg = g.c_per_group(), opg = g.out_c_per_group(), kg = g.kh * g.kw * cg;
  const int64_t nky = b.ky1 - b.ky0, nkx = b.kx1 - b.kx0;
  if (nkx == g.kw) {
    gemm(par, false, true, rows, opg, nky * nkx * cg, 1.0f, a, lda, w_g + b.ky0 * g.kw * cg, kg,
         beta, c, ldc);
    return;
  }
  for (int64_t ky = b.ky0; ky < b.ky1; ++ky)
    gemm(par, false, true, rows, opg, nkx * cg, 1.0f, a + (ky - b.ky0) * nkx * cg, lda,
         w_g + (ky * g.kw + b.kx0) * cg, kg, ky == b.ky0 ? beta : 1.0f, c, ldc);
}

// d[rows][taps * cg] = beta * d + dy[rows][opg] * W_block
void block_backward_data_gemm(const Parallel& par, const ConvGeometry& g, const Block& b,
                              int64_t rows, const float* dy, int64_t ld_dy, const float* w_g,
                              float beta, float* d, int64_t ldd) {
  const int64_t cg = g.c_per_group(), opg = g.out_c_per_group(), kg = g.kh * g.kw * cg;
  const int64_t nky = b.ky1 - b.ky0, nkx = b.kx1 - b.kx0;
  if (nkx == g.kw) {
    gemm(par, false, false, rows, nky * nkx * cg, opg, 1.0f, dy, ld_dy, w_g + b.ky0 * g.kw * cg,
         kg, beta, d, ldd);
    return;
  }
  for (int64_t ky = b.ky0; ky < b.ky1; ++ky)
    gemm(par, false, false, rows, nkx * cg, opg, 1.0f, dy, ld_dy, w_g + (ky * g.kw + b.kx0) * cg,
         kg, beta, d + (ky - b.ky0) * nkx * cg, ldd);
}

// dW_block = beta * dW_block + dy[rows][opg]^T * cols[rows][taps * cg]
void block_backward_weight_gemm(const Parallel& par, const ConvGeometry& g, const Block& b,
                                int64_t rows, const float* dy, int64_t ld_dy, const float* cols,
                                int64_t ld_cols, float beta, float* dw_g) {
  const int64_t cg = g.c_per_group(), opg = g.out_c_per_group(), kg = g.kh * g.kw * cg;
  const int64_t nky = b.ky1 - b.ky0, nkx = b.kx1 - b.kx0;
  if (nkx == g.kw) {
    gemm(par, true, false, opg, nky * nkx * cg, rows, 1.0f, dy, ld_dy, cols, ld_cols, beta,
         dw_g + b.ky0 * g.kw * cg, kg);
    return;
  }
  for (int64_t ky = b.ky0; ky < b.ky1; ++ky)
    gemm(par, true, false, opg, nkx * cg, rows, 1.0f, dy, ld_dy, cols + (ky - b.ky0) * nkx * cg,
         ld_cols, beta, dw_g + (ky * g.kw + b.kx0) * cg, kg);
}

// --- scratch rows ------------------------------------------------------------------------------

// y_chunk rows of the block (group columns [o0, o0 + opg)) = beta * y + scratch rows.
void scatter_rows(const Parallel& par, const ConvGeometry& g, const Block& b, int64_t rows,
                  const float* scratch, int64_t o0, float beta, float* y_chunk) {
  const int64_t opg = g.out_c_per_group();
  par.for_each(rows, min_chunk_for(opg), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* __restrict dst = y_chunk + out_pixel(g, b, r) * g.out_c + o0;
      const float* __restrict src = scratch + r * opg;
      if (beta == 0.0f) std::memcpy(dst, src, sizeof(float) * opg);
      else add_to(dst, src, opg);
    }
  });
}

// scratch rows = the block's dy rows (group columns [o0, o0 + opg)).
void gather_rows(const Parallel& par, const ConvGeometry& g, const Block& b, int64_t rows,
                 const float* dy_chunk, int64_t o0, float* scratch) {
  const int64_t opg = g.out_c_per_group();
  par.for_each(rows, min_chunk_for(opg), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      std::memcpy(scratch + r * opg, dy_chunk + out_pixel(g, b, r) * g.out_c + o0,
                  sizeof(float) * opg);
  });
}

// The block's dy rows as a GEMM operand: in place when evenly spaced, else gathered.
const float* dy_operand(const Parallel& par, const ConvGeometry& g, const Block& b, int64_t count,
                        const float* dy_chunk, int64_t o0, float* scratch, int64_t* ld) {
  const OutRows o = out_rows(g, b, count);
  if (o.even) {
    *ld = o.stride * g.out_c;
    return dy_chunk + o.base * g.out_c + o0;
  }
  gather_rows(par, g, b, count * b.pixels(), dy_chunk, o0, scratch);
  *ld = g.out_c_per_group();
  return scratch;
}

// The block's columns as a GEMM operand: a view of x when possible, else built by im2col.
const float* cols_operand(const Parallel& par, const ConvGeometry& g, const Block& b, int64_t count,
                          const float* x_chunk, int64_t c0, float* cols, int64_t* ld) {
  const int64_t cg = g.c_per_group();
  int64_t base, stride;
  if (input_view(g, b, cg, count, false, &base, &stride)) {
    *ld = stride * g.c;
    return x_chunk + base * g.c + c0;
  }
  im2col(par, g, b, x_chunk, count, c0, cg, cols);
  *ld = b.taps() * cg;
  return cols;
}

struct Workspace {
  float* cols;
  float* scratch;
};

Workspace split_workspace(const KernelCall& call, const Plan& p) {
  ET_CHECK(call.workspace_bytes >=
           static_cast<size_t>(p.cols_floats + p.scratch_floats) * sizeof(float));
  float* base = static_cast<float*>(call.workspace);
  return Workspace{base, base + p.cols_floats};
}

}  // namespace

void set_tap_pruning_for_testing(TapPruning mode) {
  forced_pruning.store(mode, std::memory_order_relaxed);
}

int64_t im2col_workspace_floats(const ConvGeometry& g) {
  const Plan p = make_plan(g);
  return p.cols_floats + p.scratch_floats;
}

void im2col_forward(const KernelCall& call, const ConvGeometry& g, const float* x, const float* w,
                    float beta, float* y) {
  const Plan p = make_plan(g);
  const Workspace ws = split_workspace(call, p);
  const int64_t cpg = g.c_per_group(), opg = g.out_c_per_group(), kg = g.kh * g.kw * cpg;
  const int64_t pixels = g.out_h * g.out_w;
  for (int64_t n0 = 0; n0 < g.n; n0 += p.chunk) {
    const int64_t count = std::min(p.chunk, g.n - n0);
    const float* x_chunk = x + n0 * g.h * g.w * g.c;
    float* y_chunk = y + n0 * pixels * g.out_c;  // the chunk's output rows are contiguous (NHWC)
    for (int64_t gi = 0; gi < g.groups; ++gi)
      for (int bi = 0; bi < p.n; ++bi) {
        const Block& b = p.block[bi];
        const int64_t rows = count * b.pixels();
        if (b.taps() == 0) {  // pixels that see only padding: y = bias (already there) or 0
          if (beta == 0.0f)
            for (int64_t r = 0; r < rows; ++r)
              std::memset(y_chunk + out_pixel(g, b, r) * g.out_c + gi * opg, 0, sizeof(float) * opg);
          continue;
        }
        int64_t lda;
        const float* a = cols_operand(call.parallel, g, b, count, x_chunk, gi * cpg, ws.cols, &lda);
        const OutRows o = out_rows(g, b, count);
        if (o.even) {
          block_forward_gemm(call.parallel, g, b, rows, a, lda, w + gi * opg * kg, beta,
                             y_chunk + o.base * g.out_c + gi * opg, o.stride * g.out_c);
        } else {
          block_forward_gemm(call.parallel, g, b, rows, a, lda, w + gi * opg * kg, 0.0f,
                             ws.scratch, opg);
          scatter_rows(call.parallel, g, b, rows, ws.scratch, gi * opg, beta, y_chunk);
        }
      }
  }
}

void im2col_backward_data(const KernelCall& call, const ConvGeometry& g, const float* dy,
                          const float* w, float* dx, bool accumulate) {
  const Plan p = make_plan(g);
  const Workspace ws = split_workspace(call, p);
  const int64_t cpg = g.c_per_group(), opg = g.out_c_per_group(), kg = g.kh * g.kw * cpg;
  const int64_t pixels = g.out_h * g.out_w;
  // Every block adds its part into dX (through a view or col2im), so clear dX first unless the
  // caller asked to accumulate. Input pixels no tap reads keep their zero gradient.
  if (!accumulate) std::memset(dx, 0, sizeof(float) * g.n * g.h * g.w * g.c);
  for (int64_t n0 = 0; n0 < g.n; n0 += p.chunk) {
    const int64_t count = std::min(p.chunk, g.n - n0);
    const float* dy_chunk = dy + n0 * pixels * g.out_c;
    float* dx_chunk = dx + n0 * g.h * g.w * g.c;
    for (int64_t gi = 0; gi < g.groups; ++gi)
      for (int bi = 0; bi < p.n; ++bi) {
        const Block& b = p.block[bi];
        if (b.taps() == 0) continue;
        const int64_t rows = count * b.pixels();
        int64_t ld_dy;
        const float* a = dy_operand(call.parallel, g, b, count, dy_chunk, gi * opg, ws.scratch, &ld_dy);
        int64_t base, stride;
        if (input_view(g, b, cpg, count, true, &base, &stride)) {
          block_backward_data_gemm(call.parallel, g, b, rows, a, ld_dy, w + gi * opg * kg, 1.0f,
                                   dx_chunk + base * g.c + gi * cpg, stride * g.c);
        } else {
          block_backward_data_gemm(call.parallel, g, b, rows, a, ld_dy, w + gi * opg * kg, 0.0f,
                                   ws.cols, b.taps() * cpg);
          col2im_add(call.parallel, g, b, ws.cols, count, gi * cpg, cpg, dx_chunk);
        }
      }
  }
}

void im2col_backward_weight(const KernelCall& call, const ConvGeometry& g, const float* dy,
                            const float* x, float* dw, bool accumulate) {
  const Plan p = make_plan(g);
  const Workspace ws = split_workspace(call, p);
  const int64_t cpg = g.c_per_group(), opg = g.out_c_per_group(), kg = g.kh * g.kw * cpg;
  const int64_t pixels = g.out_h * g.out_w;
  // Taps no pixel reads have a zero gradient. With one block covering every tap the first chunk
  // overwrites dW through its GEMMs' beta instead (as OpenBLAS clears C in a separate pass for
  // beta = 0, that is no cheaper, only one pass fewer to read).
  float first_beta = accumulate ? 1.0f : 0.0f;
  if (!accumulate && !(p.n == 1 && p.block[0].taps() == g.kh * g.kw)) {
    std::memset(dw, 0, sizeof(float) * g.out_c * kg);
    first_beta = 1.0f;
  }
  for (int64_t n0 = 0; n0 < g.n; n0 += p.chunk) {
    const int64_t count = std::min(p.chunk, g.n - n0);
    const float* dy_chunk = dy + n0 * pixels * g.out_c;
    const float* x_chunk = x + n0 * g.h * g.w * g.c;
    const float beta = n0 == 0 ? first_beta : 1.0f;
    for (int64_t gi = 0; gi < g.groups; ++gi)
      for (int bi = 0; bi < p.n; ++bi) {
        const Block& b = p.block[bi];
        if (b.taps() == 0) continue;
        const int64_t rows = count * b.pixels();
        int64_t ld_dy, ld_cols;
        const float* a = dy_operand(call.parallel, g, b, count, dy_chunk, gi * opg, ws.scratch, &ld_dy);
        const float* c = cols_operand(call.parallel, g, b, count, x_chunk, gi * cpg, ws.cols, &ld_cols);
        block_backward_weight_gemm(call.parallel, g, b, rows, a, ld_dy, c, ld_cols, beta,
                                   dw + gi * opg * kg);
      }
  }
}

}  // namespace edgetrain
