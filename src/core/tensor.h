// A non-owning 2-D view of backend memory: rows x cols, row-major, contiguous rows.
// Every activation the transformer touches is a matrix (tokens x features), so two
// dimensions are all the op set needs; heads are a reshape of the feature dimension.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace tpinfer {

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::f32;
  int64_t rows = 0;
  int64_t cols = 0;
  // int8 weights only (dtype i8): f32 scales [rows, ceil(cols / group)] in backend memory, row r,
  // columns [g * group, (g + 1) * group) dequantize as q * scales[r * n_groups + g]. group == cols
  // is one scale per output row (per channel).
  void* scales = nullptr;
  int64_t group = 0;
  int64_t n_groups() const { return group > 0 ? (cols + group - 1) / group : 0; }

  int64_t numel() const { return rows * cols; }
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  bool empty() const { return data == nullptr; }
  // The first n rows (a view, no copy).
  Tensor first_rows(int64_t n) const { return Tensor{data, dtype, n, cols, scales, group}; }
  // Rows [first, first + n) (a view, no copy; int8 scales follow their rows).
  Tensor slice_rows(int64_t first, int64_t n) const {
    Tensor t{
        static_cast<char*>(data) + first * cols * dtype_size(dtype), dtype, n, cols, scales, group};
    if (scales != nullptr) t.scales = static_cast<float*>(scales) + first * n_groups();
    return t;
  }
  // Columns [first, first + n) of a ONE-row tensor (a view, no copy: one row is contiguous).
  Tensor col_range(int64_t first, int64_t n) const {
    return Tensor{static_cast<char*>(data) + first * dtype_size(dtype), dtype, rows, n};
  }
  Tensor row(int64_t r) const {
    return Tensor{static_cast<char*>(data) + r * cols * dtype_size(dtype), dtype, 1, cols};
  }
};

}  // namespace tpinfer
