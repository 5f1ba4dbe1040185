// Row gather / scatter of the block-sparse kernel (passbench.skip.sparse, channels-last path).
//
// A channels-last map (B, C, H, W) is a (B*H*W, C) matrix whose rows are pixels (C contiguous values).
// gather_rows copies, for each active patch p and each pixel w of its input window, row table[p][w] of x
// (or zeros where the table holds -1: zero padding) into one (n*W, C) matrix; scatter_rows writes (or adds)
// row q of each active patch's result into row table[p][q] of the output (-1: a pixel of a cropped edge
// patch, dropped). One pass each, instead of index_select + index_fill_ and an index_select of the
// tables + index_copy_. Patches are distinct, so scatter writes distinct rows: no races between threads.
// copy_rows copies the rows of listed patches from one (rows, C) matrix to another of the same shape.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>

namespace {

void check(const at::Tensor& mat, const at::Tensor& table, const at::Tensor& patches, const char* what) {
  TORCH_CHECK(mat.device().is_cpu() && table.device().is_cpu() && patches.device().is_cpu(), what, ": CPU tensors only");
  TORCH_CHECK(mat.dim() == 2 && mat.is_contiguous(), what, ": the pixel matrix must be a contiguous (rows, C) matrix");
  TORCH_CHECK(table.dim() == 2 && table.is_contiguous() && table.scalar_type() == at::kLong, what,
              ": table must be a contiguous int64 (patches, pixels) matrix");
  TORCH_CHECK(patches.dim() == 1 && patches.is_contiguous() && patches.scalar_type() == at::kLong, what,
              ": patches must be a contiguous int64 vector");
}

at::Tensor gather_rows(const at::Tensor& x, const at::Tensor& table, const at::Tensor& patches) {
  check(x, table, patches, "gather_rows");
  const int64_t n = patches.size(0), W = table.size(1), C = x.size(1), N = x.size(0), P = table.size(0);
  at::Tensor out = at::empty({n * W, C}, x.options());
  const int64_t* tab = table.data_ptr<int64_t>();
  const int64_t* pat = patches.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) TORCH_CHECK(pat[i] >= 0 && pat[i] < P, "gather_rows: patch index out of range");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gather_rows", [&] {
    const scalar_t* src = x.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    const size_t bytes = sizeof(scalar_t) * C;
    at::parallel_for(0, n * W, 64, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const int64_t r = tab[pat[i / W] * W + i % W];
        if (r < 0 || r >= N) {
          std::memset(dst + i * C, 0, bytes);  // zero padding (all-zero bits: 0.0 in every float format)
        } else {
          std::memcpy(dst + i * C, src + r * C, bytes);
        }
      }
    });
  });
  return out;
}

void scatter_rows(at::Tensor out, const at::Tensor& table, const at::Tensor& patches, const at::Tensor& src,
                  bool accumulate) {
  check(out, table, patches, "scatter_rows");
  const int64_t n = patches.size(0), Q = table.size(1), C = out.size(1), N = out.size(0), P = table.size(0);
  TORCH_CHECK(src.dim() == 2 && src.is_contiguous() && src.size(0) == n * Q && src.size(1) == C &&
              src.scalar_type() == out.scalar_type(), "scatter_rows: src must be a contiguous (patches*pixels, C) "
              "matrix of the output's dtype");
  const int64_t* tab = table.data_ptr<int64_t>();
  const int64_t* pat = patches.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) TORCH_CHECK(pat[i] >= 0 && pat[i] < P, "scatter_rows: patch index out of range");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "scatter_rows", [&] {
    scalar_t* dst = out.data_ptr<scalar_t>();
    const scalar_t* s = src.data_ptr<scalar_t>();
    const size_t bytes = sizeof(scalar_t) * C;
    at::parallel_for(0, n * Q, 64, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const int64_t r = tab[pat[i / Q] * Q + i % Q];
        if (r < 0 || r >= N) continue;  // a pixel of a cropped edge patch
        if (accumulate) {
          scalar_t* d = dst + r * C;
          const scalar_t* v = s + i * C;
          for (int64_t c = 0; c < C; ++c) d[c] += v[c];
        } else {
          std::memcpy(dst + r * C, s + i * C, bytes);
        }
      }
    });
  });
}

void copy_rows(at::Tensor dst, const at::Tensor& src, const at::Tensor& table, const at::Tensor& patches) {
  // dst[table[p][q]] = src[table[p][q]] for each listed patch p and pixel q (-1: skipped): the blend of a
  // dispatcher's dense path (skipped patches of the conv output take the previous output, or back).
  check(dst, table, patches, "copy_rows");
  TORCH_CHECK(src.sizes() == dst.sizes() && src.is_contiguous() && src.scalar_type() == dst.scalar_type(),
              "copy_rows: src must be a contiguous matrix of dst's shape and dtype");
  const int64_t n = patches.size(0), Q = table.size(1), C = dst.size(1), N = dst.size(0), P = table.size(0);
  const int64_t* tab = table.data_ptr<int64_t>();
  const int64_t* pat = patches.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) TORCH_CHECK(pat[i] >= 0 && pat[i] < P, "copy_rows: patch index out of range");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dst.scalar_type(), "copy_rows", [&] {
    scalar_t* d = dst.data_ptr<scalar_t>();
    const scalar_t* s = src.data_ptr<scalar_t>();
    const size_t bytes = sizeof(scalar_t) * C;
    at::parallel_for(0, n * Q, 64, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const int64_t r = tab[pat[i / Q] * Q + i % Q];
        if (r >= 0 && r < N) std::memcpy(d + r * C, s + r * C, bytes);
      }
    });
  });
}

}  // namespace

TORCH_LIBRARY(passbench_native, m) {
  m.def("gather_rows(Tensor x, Tensor table, Tensor patches) -> Tensor");
  m.def("scatter_rows(Tensor(a!) out, Tensor table, Tensor patches, Tensor src, bool accumulate) -> ()");
  m.def("copy_rows(Tensor(a!) dst, Tensor src, Tensor table, Tensor patches) -> ()");
}

TORCH_LIBRARY_IMPL(passbench_native, CPU, m) {
  m.impl("gather_rows", &gather_rows);
  m.impl("scatter_rows", &scatter_rows);
  m.impl("copy_rows", &copy_rows);
}
