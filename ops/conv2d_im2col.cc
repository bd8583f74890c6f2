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
//
// Threads. A chunk of images runs in at most three parallel regions, however many blocks it has:
// (1) im2col and dy gathering of every block, (2) the GEMMs, each thread running single-threaded
// GEMMs on its share of every block (output rows or columns; for the weight gradient, where
// blocks' taps overlap, its output channels), (3) for backward data, col2im of every block.
// One region per GEMM cost more than the GEMMs themselves on 2x2 maps on a busy 2-core machine.
#include "ops/conv2d_im2col.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
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
// Classes are used when they do at most this share (percent) of the global plan's work: their
// GEMMs are smaller (corner blocks have one row per image), split K by kernel rows and need
// larger chunks, which costs about as much as 15-25% fewer multiply-adds saves. Measured on
// ResNet-18 at 32x32, batch 32, one thread (bench_conv2d): against the plain plan, 2x2 maps
// (44% of the work) run 1.8-2.2x faster, 4x4 maps (69%) 1.1-1.35x faster, 8x8 maps (84%)
// 1.1-1.3x slower and the 7x7 stem (90%) 3x slower.
constexpr int64_t kClassesMaxPercent = 75;
// ... and when none of their GEMMs (for a full chunk of images) falls below OpenBLAS size:
// ops/gemm.cc runs GEMMs of up to 100^3 multiply-adds in plain loops, and with small batches
// (micro-batches) the one-pixel corner blocks do (batch 8: 4x4 maps 1.2-1.8x slower than plain).
constexpr int64_t kClassesMinGemm = 1000000;
// Runs per axis and blocks per plan are bounded so that a plan lives on the stack. Runs are at
// most 2 * kernel + 1; larger kernels fall back to the global plan.
constexpr int kMaxRuns = 16;
constexpr int kMaxBlocks = 64;
// The classes plan uses larger chunks (its corner blocks have one pixel per image); its workspace
// may grow to this many floats or to the plain plan's size, whichever is larger.
constexpr int64_t kClassesWorkspaceFloats = int64_t{1} << 20;

inline void add_to(float* __restrict acc, const float* __restrict a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += a[i];
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
  int64_t chunk = 1;  // images per chunk
  // Workspace for one chunk: every block's columns, then every block's scratch rows (y or dy
  // rows when they are unevenly spaced), each block's part at chunk * its per-image offset.
  int64_t cols_floats = 0, scratch_floats = 0;
  int64_t cols_at[kMaxBlocks], scratch_at[kMaxBlocks];
};

// Whether a block's rows can be unevenly spaced in y (see even_stride): anything but one pixel
// per image or whole images.
bool may_need_scratch(const ConvGeometry& g, const Block& b) {
  return b.pixels() != 1 && b.pixels() != g.out_h * g.out_w;
}

// The blocks of a plan (mode kNone, kGlobal or kClasses).
void fill_blocks(const ConvGeometry& g, const AxisRuns& ry, const AxisRuns& rx, TapPruning mode,
                 Plan* p) {
  p->n = 0;
  if (mode == TapPruning::kClasses) {
    for (int i = 0; i < ry.n; ++i)
      for (int j = 0; j < rx.n; ++j) {
        const Run& r = ry.run[i];
        const Run& c = rx.run[j];
        p->block[p->n++] = Block{r.o0, r.o1, c.o0, c.o1, r.k0, r.k1, c.k0, c.k1, true};
      }
    return;
  }
  Block b{0, g.out_h, 0, g.out_w, 0, g.kh, 0, g.kw, false};
  if (mode == TapPruning::kGlobal) b.ky0 = ry.u0, b.ky1 = ry.u1, b.kx0 = rx.u0, b.kx1 = rx.u1;
  bool valid = !ry.overflow && !rx.overflow;  // without the runs, assume some taps are not
  for (int i = 0; valid && i < ry.n; ++i) valid = ry.run[i].k0 <= b.ky0 && ry.run[i].k1 >= b.ky1;
  for (int j = 0; valid && j < rx.n; ++j) valid = rx.run[j].k0 <= b.kx0 && rx.run[j].k1 >= b.kx1;
  b.all_valid = valid;
  p->block[p->n++] = b;
}

// Chunk size and workspace layout of a plan.
void size_plan(const ConvGeometry& g, Plan* p) {
  const int64_t cg = g.c_per_group(), opg = g.out_c_per_group();
  const int64_t pixels = g.out_h * g.out_w;
  const int64_t plain_chunk =
      std::clamp<int64_t>((kMinGemmRows + pixels - 1) / pixels, 1, std::max<int64_t>(1, g.n));
  int64_t cols_per_image = 0, scratch_per_image = 0, min_pixels = pixels;
  for (int i = 0; i < p->n; ++i) {
    const Block& b = p->block[i];
    p->cols_at[i] = cols_per_image, p->scratch_at[i] = scratch_per_image;
    if (b.taps() == 0) continue;
    cols_per_image += b.pixels() * b.taps() * cg;
    if (may_need_scratch(g, b)) scratch_per_image += b.pixels() * opg;
    min_pixels = std::min(min_pixels, b.pixels());
  }
  p->chunk = plain_chunk;
  if (p->n > 1) {
    const int64_t want = std::clamp<int64_t>((kMinGemmRows + min_pixels - 1) / min_pixels, 1,
                                             std::max<int64_t>(1, g.n));
    const int64_t budget =
        std::max(kClassesWorkspaceFloats, plain_chunk * pixels * g.kh * g.kw * cg);
    const int64_t per_image = std::max<int64_t>(1, cols_per_image + scratch_per_image);
    p->chunk = std::max(plain_chunk, std::min(want, budget / per_image));
  }
  p->cols_floats = p->chunk * cols_per_image;
  p->scratch_floats = p->chunk * scratch_per_image;
}

// Multiply-adds of the smallest GEMM a plan runs on a full chunk (one kernel row of a block when
// its taps are not whole kernel rows); the same in every direction.
int64_t smallest_gemm(const ConvGeometry& g, const Plan& p) {
  int64_t smallest = INT64_MAX;
  for (int i = 0; i < p.n; ++i) {
    const Block& b = p.block[i];
    if (b.taps() == 0) continue;
    const int64_t k = (b.kx1 - b.kx0 == g.kw ? b.taps() : b.kx1 - b.kx0) * g.c_per_group();
    smallest = std::min(smallest, p.chunk * b.pixels() * g.out_c_per_group() * k);
  }
  return smallest;
}

Plan make_plan(const ConvGeometry& g) {
  const AxisRuns ry = axis_runs(g.out_h, g.sh, g.ph, g.kh, g.h);
  const AxisRuns rx = axis_runs(g.out_w, g.sw, g.pw, g.kw, g.w);
  const bool classes_possible = !ry.overflow && !rx.overflow && ry.n * rx.n <= kMaxBlocks;
  TapPruning mode = forced_pruning.load(std::memory_order_relaxed);
  if (mode == TapPruning::kClasses && !classes_possible) mode = TapPruning::kGlobal;
  Plan p;
  if (mode == TapPruning::kAuto) {
    mode = TapPruning::kGlobal;
    if (classes_possible) {
      const int64_t global_work = g.out_h * g.out_w * (ry.u1 - ry.u0) * (rx.u1 - rx.u0);
      int64_t class_work = 0;
      for (int i = 0; i < ry.n; ++i)
        for (int j = 0; j < rx.n; ++j) {
          const Run& r = ry.run[i];
          const Run& c = rx.run[j];
          class_work += (r.o1 - r.o0) * (c.o1 - c.o0) * (r.k1 - r.k0) * (c.k1 - c.k0);
        }
      if (class_work * 100 <= global_work * kClassesMaxPercent) {
        fill_blocks(g, ry, rx, TapPruning::kClasses, &p);
        size_plan(g, &p);
        if (smallest_gemm(g, p) >= kClassesMinGemm) return p;
      }
    }
  }
  fill_blocks(g, ry, rx, mode, &p);
  size_plan(g, &p);
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

// --- phase 1: columns and gathered dy rows --------------------------------------------------------

// Columns of the block's row t (t = image * rows + (oy - oy0)) of the chunk at x_chunk:
// cols[(t * cols + (ox - ox0)) * K + ((ky - ky0) * nkx + (kx - kx0)) * cg + ci] = the input value
// the tap reads (channel c0 + ci), zero where it is padding. K = taps * cg.
void im2col_row(const ConvGeometry& g, const Block& b, const float* x_chunk, int64_t t, int64_t c0,
                float* cols) {
  const int64_t cg = g.c_per_group(), nkx = b.kx1 - b.kx0, k = b.taps() * cg;
  const bool contiguous_taps = cg == g.c;  // adjacent taps of a kernel row read adjacent memory
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

// scratch rows of the block's row t = the matching dy rows (group columns from o0).
void gather_row(const ConvGeometry& g, const Block& b, const float* dy_chunk, int64_t t, int64_t o0,
                float* scratch) {
  const int64_t opg = g.out_c_per_group();
  const int64_t i = t / b.rows(), oy = b.oy0 + t % b.rows();
  for (int64_t ox = b.ox0; ox < b.ox1; ++ox)
    std::memcpy(scratch + (t * b.cols() + (ox - b.ox0)) * opg,
                dy_chunk + ((i * g.out_h + oy) * g.out_w + ox) * g.out_c + o0, sizeof(float) * opg);
}

// What phase 1 builds for one block: its columns (at cols) and/or its gathered dy rows (at
// scratch).
struct Prep {
  bool cols = false, gather = false;
  float* cols_at = nullptr;
  float* scratch_at = nullptr;
};

// Phase 1 of a chunk and group: every block's im2col and dy gathering in one parallel region
// over (block, image, output row).
void prepare(const Parallel& par, const ConvGeometry& g, const Plan& p, const Prep* prep,
             int64_t count, const float* x_chunk, const float* dy_chunk, int64_t c0, int64_t o0) {
  int64_t start[kMaxBlocks + 1];
  start[0] = 0;
  int64_t floats = 0;
  for (int bi = 0; bi < p.n; ++bi) {
    const Block& b = p.block[bi];
    const int64_t rows = count * b.rows();
    start[bi + 1] = start[bi] + (prep[bi].cols ? rows : 0) + (prep[bi].gather ? rows : 0);
    if (prep[bi].cols) floats += rows * b.cols() * b.taps() * g.c_per_group();
    if (prep[bi].gather) floats += rows * b.cols() * g.out_c_per_group();
  }
  const int64_t items = start[p.n];
  if (items == 0) return;
  par.for_each(items, min_chunk_for(floats / items), [&](int64_t i0, int64_t i1) {
    int bi = 0;
    for (int64_t i = i0; i < i1; ++i) {
      while (i >= start[bi + 1]) ++bi;
      const Block& b = p.block[bi];
      const int64_t rows = count * b.rows();
      const int64_t t = i - start[bi];
      if (prep[bi].cols && t < rows) {
        im2col_row(g, b, x_chunk, t, c0, prep[bi].cols_at);
      } else {
        gather_row(g, b, dy_chunk, prep[bi].cols ? t - rows : t, o0, prep[bi].scratch_at);
      }
    }
  });
}

// --- phase 2: the GEMMs, one parallel region ---------------------------------------------------
// Every thread runs single-threaded GEMMs on its share of every block, so that a chunk costs one
// parallel region however many blocks and kernel rows it has (one region per GEMM cost more than
// the GEMMs themselves on small maps, worse when the cores are shared).

const Parallel kSerial{};
constexpr int64_t kTile = 16;                 // shares are whole tiles of 16 rows or columns
// A GEMM is split only when every share keeps at least ~1M multiply-adds: smaller ones run in
// ops/gemm.cc's plain loops, several times slower than OpenBLAS.
constexpr int64_t kMinSplitWork = int64_t{2} << 20;

// Runs body(t, shares) for t in [0, shares) in one parallel region, one share per thread.
template <typename Body>
void for_each_share(const Parallel& par, Body&& body) {
  const int64_t shares = std::max(1, par.threads);
  par.for_each(shares, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) body(t, shares);
  });
}

// Share t of [0, n) in whole tiles.
inline void share_of(int64_t n, int64_t t, int64_t shares, int64_t* lo, int64_t* hi) {
  const int64_t tiles = (n + kTile - 1) / kTile;
  *lo = std::min(n, tiles * t / shares * kTile);
  *hi = std::min(n, tiles * (t + 1) / shares * kTile);
}

// A share's rectangle [m0, m1) x [n0, n1) of a block's C.
struct Part {
  int64_t m0, m1, n0, n1;
};

// Share t's part of an m x n x k GEMM: split along the larger side of C (the other operand is
// packed by every share, so the smaller one should be); a GEMM too small to split goes whole to
// share `owner % shares`. False when the share has nothing to do.
bool part_of(int64_t m, int64_t n, int64_t k, int owner, int64_t t, int64_t shares, Part* part) {
  if (m * n * k < kMinSplitWork) {
    *part = Part{0, m, 0, n};
    return t == owner % shares && m > 0 && n > 0;
  }
  int64_t lo, hi;
  if (m >= n) {
    share_of(m, t, shares, &lo, &hi);
    *part = Part{lo, hi, 0, n};
  } else {
    share_of(n, t, shares, &lo, &hi);
    *part = Part{0, m, lo, hi};
  }
  return part->m0 < part->m1 && part->n0 < part->n1;
}

// The block's compact tap columns (its K: taps * cg, in (ky, kx, ci) order) against a weight row
// (kg = kh * kw * cg): calls fn(s0, s1, w0) for each piece [s0, s1) of [n0, n1) that is
// contiguous in the weight row, starting at weight column w0. With whole kernel rows
// (nkx == kw) that is one piece; otherwise one per kernel row ky.
template <typename Fn>
void for_each_segment(const ConvGeometry& g, const Block& b, int64_t n0, int64_t n1, Fn&& fn) {
  const int64_t cg = g.c_per_group(), nkx = b.kx1 - b.kx0;
  if (nkx == g.kw) {
    if (n0 < n1) fn(n0, n1, b.ky0 * g.kw * cg + n0);
    return;
  }
  const int64_t seg = nkx * cg;
  for (int64_t ky = b.ky0; ky < b.ky1; ++ky) {
    const int64_t s = (ky - b.ky0) * seg;
    const int64_t s0 = std::max(n0, s), s1 = std::min(n1, s + seg);
    if (s0 < s1) fn(s0, s1, (ky * g.kw + b.kx0) * cg + (s0 - s));
  }
}

// c[part] = beta * c + a[rows][K] * W_block^T (the part's output channels). w_g: the group's
// first weight row.
void forward_part(const ConvGeometry& g, const Block& b, const Part& pt, const float* a, int64_t lda,
                  const float* w_g, float beta, float* c, int64_t ldc) {
  const int64_t kg = g.kh * g.kw * g.c_per_group();
  float bk = beta;
  for_each_segment(g, b, 0, b.taps() * g.c_per_group(), [&](int64_t s0, int64_t s1, int64_t w0) {
    gemm(kSerial, false, true, pt.m1 - pt.m0, pt.n1 - pt.n0, s1 - s0, 1.0f, a + pt.m0 * lda + s0,
         lda, w_g + pt.n0 * kg + w0, kg, bk, c + pt.m0 * ldc + pt.n0, ldc);
    bk = 1.0f;
  });
}

// d[part] = beta * d + dy[rows][opg] * W_block (the part's tap columns).
void backward_data_part(const ConvGeometry& g, const Block& b, const Part& pt, const float* dy,
                        int64_t ld_dy, const float* w_g, float beta, float* d, int64_t ldd) {
  const int64_t kg = g.kh * g.kw * g.c_per_group();
  for_each_segment(g, b, pt.n0, pt.n1, [&](int64_t s0, int64_t s1, int64_t w0) {
    gemm(kSerial, false, false, pt.m1 - pt.m0, s1 - s0, g.out_c_per_group(), 1.0f,
         dy + pt.m0 * ld_dy, ld_dy, w_g + w0, kg, beta, d + pt.m0 * ldd + s0, ldd);
  });
}

// dW_block[part] = beta * dW_block + dy[rows][part's channels]^T * cols[rows][part's taps].
void backward_weight_part(const ConvGeometry& g, const Block& b, const Part& pt, int64_t rows,
                          const float* dy, int64_t ld_dy, const float* cols, int64_t ld_cols,
                          float beta, float* dw_g) {
  const int64_t kg = g.kh * g.kw * g.c_per_group();
  for_each_segment(g, b, pt.n0, pt.n1, [&](int64_t s0, int64_t s1, int64_t w0) {
    gemm(kSerial, true, false, pt.m1 - pt.m0, s1 - s0, rows, 1.0f, dy + pt.m0, ld_dy,
         cols + s0, ld_cols, beta, dw_g + pt.m0 * kg + w0, kg);
  });
}

// y rows of the part (group columns from o0) = beta * y + scratch rows.
void scatter_part(const ConvGeometry& g, const Block& b, const Part& pt, const float* scratch,
                  int64_t o0, float beta, float* y_chunk) {
  const int64_t opg = g.out_c_per_group(), n = pt.n1 - pt.n0;
  for (int64_t r = pt.m0; r < pt.m1; ++r) {
    float* dst = y_chunk + out_pixel(g, b, r) * g.out_c + o0 + pt.n0;
    const float* src = scratch + r * opg + pt.n0;
    if (beta == 0.0f) std::memcpy(dst, src, sizeof(float) * n);
    else add_to(dst, src, n);
  }
}

// --- phase 3 of backward data: col2im ---------------------------------------------------------

// dx_chunk (group channels from c0) += every column entry of the blocks in `has_cols` that
// im2col would have copied from there; rows first cleared (all channels) when `clear`. Gathers
// per input row so that threads never write the same element.
void col2im(const Parallel& par, const ConvGeometry& g, const Plan& p, const Prep* prep,
            int64_t count, int64_t c0, bool clear, float* dx_chunk) {
  const int64_t cg = g.c_per_group();
  par.for_each(count * g.h, min_chunk_for(g.w * cg * g.kh), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {  // r = image * H + iy
      const int64_t i = r / g.h, iy = r % g.h;
      float* dx_row = dx_chunk + r * g.w * g.c;
      if (clear) std::memset(dx_row, 0, sizeof(float) * g.w * g.c);
      for (int bi = 0; bi < p.n; ++bi) {
        if (!prep[bi].cols) continue;
        const Block& b = p.block[bi];
        const int64_t nkx = b.kx1 - b.kx0, k = b.taps() * cg;
        for (int64_t ky = b.ky0; ky < b.ky1; ++ky) {
          const int64_t u = iy + g.ph - ky;
          if (u < 0 || u % g.sh != 0) continue;
          const int64_t oy = u / g.sh;
          if (oy < b.oy0 || oy >= b.oy1) continue;
          const float* col_row = prep[bi].cols_at +
                                 (i * b.rows() + (oy - b.oy0)) * b.cols() * k + (ky - b.ky0) * nkx * cg;
          for (int64_t ox = b.ox0; ox < b.ox1; ++ox) {
            const float* col = col_row + (ox - b.ox0) * k;
            const int64_t ix_start = ox * g.sw - g.pw;
            const int64_t vx0 = std::clamp<int64_t>(-ix_start, b.kx0, b.kx1);
            const int64_t vx1 = std::clamp<int64_t>(g.w - ix_start, vx0, b.kx1);
            if (cg == g.c) {  // all channels: the valid taps of the kernel row are one run
              if (vx0 < vx1)
                add_to(dx_row + (ix_start + vx0) * g.c, col + (vx0 - b.kx0) * cg, (vx1 - vx0) * cg);
            } else {
              for (int64_t kx = vx0; kx < vx1; ++kx)
                add_to(dx_row + (ix_start + kx) * g.c + c0, col + (kx - b.kx0) * cg, cg);
            }
          }
        }
      }
    }
  });
}

// --- per chunk: where each block's operands are -------------------------------------------------

struct Operand {
  const float* p = nullptr;
  int64_t ld = 0;
};

struct Target {
  float* p = nullptr;
  int64_t ld = 0;
};

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

// The block's columns: a view of x when possible, else its workspace area (built in phase 1).
Operand columns(const ConvGeometry& g, const Plan& p, int bi, const Workspace& ws, int64_t count,
                const float* x_chunk, int64_t c0, Prep* prep) {
  const Block& b = p.block[bi];
  int64_t base, stride;
  if (input_view(g, b, g.c_per_group(), count, false, &base, &stride))
    return Operand{x_chunk + base * g.c + c0, stride * g.c};
  prep->cols = true;
  prep->cols_at = ws.cols + p.chunk * p.cols_at[bi];
  return Operand{prep->cols_at, b.taps() * g.c_per_group()};
}

// The block's dy rows: in place when evenly spaced, else its scratch area (gathered in phase 1).
Operand dy_rows(const ConvGeometry& g, const Plan& p, int bi, const Workspace& ws, int64_t count,
                const float* dy_chunk, int64_t o0, Prep* prep) {
  const OutRows o = out_rows(g, p.block[bi], count);
  if (o.even) return Operand{dy_chunk + o.base * g.out_c + o0, o.stride * g.out_c};
  prep->gather = true;
  prep->scratch_at = ws.scratch + p.chunk * p.scratch_at[bi];
  return Operand{prep->scratch_at, g.out_c_per_group()};
}

}  // namespace

void set_tap_pruning_for_testing(TapPruning mode) {
  forced_pruning.store(mode, std::memory_order_relaxed);
}

TapPruning im2col_plan(const ConvGeometry& g) {
  const Plan p = make_plan(g);
  if (p.n > 1) return TapPruning::kClasses;
  return p.block[0].taps() == g.kh * g.kw ? TapPruning::kNone : TapPruning::kGlobal;
}

int64_t im2col_multiply_adds(const ConvGeometry& g) {
  const Plan p = make_plan(g);
  int64_t per_image = 0;  // output pixels x taps
  for (int i = 0; i < p.n; ++i) per_image += p.block[i].pixels() * p.block[i].taps();
  return per_image * g.n * g.groups * g.c_per_group() * g.out_c_per_group();
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
  for (int64_t n0 = 0; n0 < g.n; n0 += p.chunk) {
    const int64_t count = std::min(p.chunk, g.n - n0);
    const float* x_chunk = x + n0 * g.h * g.w * g.c;
    float* y_chunk = y + n0 * g.out_h * g.out_w * g.out_c;  // the chunk's rows are contiguous
    for (int64_t gi = 0; gi < g.groups; ++gi) {
      Prep prep[kMaxBlocks];
      Operand a[kMaxBlocks];
      Target c[kMaxBlocks];
      bool scatter[kMaxBlocks] = {};
      for (int bi = 0; bi < p.n; ++bi) {
        const Block& b = p.block[bi];
        if (b.taps() == 0) continue;
        a[bi] = columns(g, p, bi, ws, count, x_chunk, gi * cpg, &prep[bi]);
        const OutRows o = out_rows(g, b, count);
        scatter[bi] = !o.even;
        c[bi] = o.even ? Target{y_chunk + o.base * g.out_c + gi * opg, o.stride * g.out_c}
                       : Target{ws.scratch + p.chunk * p.scratch_at[bi], opg};
      }
      prepare(call.parallel, g, p, prep, count, x_chunk, nullptr, gi * cpg, 0);
      for_each_share(call.parallel, [&](int64_t t, int64_t shares) {
        for (int bi = 0; bi < p.n; ++bi) {
          const Block& b = p.block[bi];
          const int64_t rows = count * b.pixels();
          if (b.taps() == 0) {  // pixels that see only padding: y = bias (already there) or 0
            if (beta == 0.0f && t == bi % shares)
              for (int64_t r = 0; r < rows; ++r)
                std::memset(y_chunk + out_pixel(g, b, r) * g.out_c + gi * opg, 0, sizeof(float) * opg);
            continue;
          }
          Part pt;
          if (!part_of(rows, opg, b.taps() * cpg, bi, t, shares, &pt)) continue;
          forward_part(g, b, pt, a[bi].p, a[bi].ld, w + gi * opg * kg, scatter[bi] ? 0.0f : beta,
                       c[bi].p, c[bi].ld);
          if (scatter[bi]) scatter_part(g, b, pt, c[bi].p, gi * opg, beta, y_chunk);
        }
      });
    }
  }
}

void im2col_backward_data(const KernelCall& call, const ConvGeometry& g, const float* dy,
                          const float* w, float* dx, bool accumulate) {
  const Plan p = make_plan(g);
  const Workspace ws = split_workspace(call, p);
  const int64_t cpg = g.c_per_group(), opg = g.out_c_per_group(), kg = g.kh * g.kw * cpg;
  int with_taps = 0;
  for (int bi = 0; bi < p.n; ++bi) with_taps += p.block[bi].taps() > 0;
  for (int64_t n0 = 0; n0 < g.n; n0 += p.chunk) {
    const int64_t count = std::min(p.chunk, g.n - n0);
    const float* dy_chunk = dy + n0 * g.out_h * g.out_w * g.out_c;
    float* dx_chunk = dx + n0 * g.h * g.w * g.c;
    for (int64_t gi = 0; gi < g.groups; ++gi) {
      Prep prep[kMaxBlocks];
      Operand a[kMaxBlocks];
      Target d[kMaxBlocks];
      bool any_cols = false;
      float view_beta = 1.0f;
      for (int bi = 0; bi < p.n; ++bi) {
        const Block& b = p.block[bi];
        if (b.taps() == 0) continue;
        a[bi] = dy_rows(g, p, bi, ws, count, dy_chunk, gi * opg, &prep[bi]);
        // Writing through a view of dx is race-free only for a single block with disjoint rows
        // (blocks' input footprints overlap).
        int64_t base, stride;
        if (with_taps == 1 && input_view(g, b, cpg, count, true, &base, &stride)) {
          d[bi] = Target{dx_chunk + base * g.c + gi * cpg, stride * g.c};
          // Rows that tile every input pixel overwrite dx; otherwise clear it first.
          const bool tiles = b.taps() == stride && count * b.pixels() * stride == count * g.h * g.w;
          if (!accumulate && tiles) view_beta = 0.0f;
          else if (!accumulate && gi == 0) std::memset(dx_chunk, 0, sizeof(float) * count * g.h * g.w * g.c);
        } else {
          prep[bi].cols = true;
          prep[bi].cols_at = ws.cols + p.chunk * p.cols_at[bi];
          d[bi] = Target{prep[bi].cols_at, b.taps() * cpg};
          any_cols = true;
        }
      }
      // Phase 1 only gathers dy rows: here prep's columns are the GEMMs' output (col2im's input).
      Prep gather_only[kMaxBlocks];
      for (int bi = 0; bi < p.n; ++bi) {
        gather_only[bi].gather = prep[bi].gather;
        gather_only[bi].scratch_at = prep[bi].scratch_at;
      }
      prepare(call.parallel, g, p, gather_only, count, nullptr, dy_chunk, 0, gi * opg);
      for_each_share(call.parallel, [&](int64_t t, int64_t shares) {
        for (int bi = 0; bi < p.n; ++bi) {
          const Block& b = p.block[bi];
          if (b.taps() == 0) continue;
          Part pt;
          if (!part_of(count * b.pixels(), b.taps() * cpg, opg, bi, t, shares, &pt)) continue;
          backward_data_part(g, b, pt, a[bi].p, a[bi].ld, w + gi * opg * kg,
                             prep[bi].cols ? 0.0f : view_beta, d[bi].p, d[bi].ld);
        }
      });
      // Pixels no tap reads get a zero gradient: when not accumulating, col2im clears every row
      // before the first group adds to it (views cleared dx above or overwrite it).
      if (any_cols) col2im(call.parallel, g, p, prep, count, gi * cpg, !accumulate && gi == 0, dx_chunk);
      if (with_taps == 0 && !accumulate && gi == 0)
        std::memset(dx_chunk, 0, sizeof(float) * count * g.h * g.w * g.c);
    }
  }
}

void im2col_backward_weight(const KernelCall& call, const ConvGeometry& g, const float* dy,
                            const float* x, float* dw, bool accumulate) {
  const Plan p = make_plan(g);
  const Workspace ws = split_workspace(call, p);
  const int64_t cpg = g.c_per_group(), opg = g.out_c_per_group(), kg = g.kh * g.kw * cpg;
  // Taps no pixel reads have a zero gradient. With one block of every tap the first chunk's GEMMs
  // overwrite dW (beta 0) and may split either way; otherwise each share clears its output
  // channels of dW first and all shares split dW by output channels, so that blocks whose taps
  // overlap never write the same element from two threads.
  const bool whole = p.n == 1 && p.block[0].taps() == g.kh * g.kw;
  for (int64_t n0 = 0; n0 < g.n; n0 += p.chunk) {
    const int64_t count = std::min(p.chunk, g.n - n0);
    const float* dy_chunk = dy + n0 * g.out_h * g.out_w * g.out_c;
    const float* x_chunk = x + n0 * g.h * g.w * g.c;
    const bool first = n0 == 0;
    for (int64_t gi = 0; gi < g.groups; ++gi) {
      Prep prep[kMaxBlocks];
      Operand a[kMaxBlocks], cols[kMaxBlocks];
      for (int bi = 0; bi < p.n; ++bi) {
        if (p.block[bi].taps() == 0) continue;
        a[bi] = dy_rows(g, p, bi, ws, count, dy_chunk, gi * opg, &prep[bi]);
        cols[bi] = columns(g, p, bi, ws, count, x_chunk, gi * cpg, &prep[bi]);
      }
      prepare(call.parallel, g, p, prep, count, x_chunk, dy_chunk, gi * cpg, gi * opg);
      float* dw_g = dw + gi * opg * kg;
      for_each_share(call.parallel, [&](int64_t t, int64_t shares) {
        int64_t lo, hi;
        share_of(opg, t, shares, &lo, &hi);
        if (!whole && first && !accumulate && lo < hi)
          std::memset(dw_g + lo * kg, 0, sizeof(float) * (hi - lo) * kg);
        const float beta = whole && first && !accumulate ? 0.0f : 1.0f;
        for (int bi = 0; bi < p.n; ++bi) {
          const Block& b = p.block[bi];
          if (b.taps() == 0) continue;
          const int64_t rows = count * b.pixels();
          Part pt{lo, hi, 0, b.taps() * cpg};
          if (whole ? !part_of(opg, b.taps() * cpg, rows, bi, t, shares, &pt) : lo >= hi) continue;
          backward_weight_part(g, b, pt, rows, a[bi].p, a[bi].ld, cols[bi].p, cols[bi].ld, beta, dw_g);
        }
      });
    }
  }
}

}  // namespace edgetrain
