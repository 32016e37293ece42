// Winograd F(m x m, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
// CVPR 2016; docs/winograd.md): a 3x3 correlation computed on m x m output tiles from (m+2)x(m+2)
// input windows with (m+2)^2 multiplications per tile and channel pair instead of 9 m^2.
//   V = B^T d B  (input window d)   U = G g G^T  (kernel g, 3x3; in Python)
//   Y = A^T M A  (M = sum over input channels of U .* V; Y the m x m output tile)
// Two variants, each a struct with its sizes and 1-D transforms:
// - WinogradF6, F(6x6, 3x3): the points 0, 1, -1, 2, -2, 1/2, -1/2 and infinity, in that order;
//   the fewest multiplications, for fp32 GEMMs.
// - WinogradF4, F(4x4, 3x3): the points 0, 1, -1, 2, -2 and infinity, the paper's matrices; smaller
//   coefficients, so less of the GEMM's rounding reaches the output, for bf16 GEMMs.
// The transforms are templates over the value type, so that the CPU op runs them on 8-float vectors
// and the C++ tests on plain floats against the matrices written out.
#pragma once

#include "common.h"

namespace realsr_fast {

struct WinogradF6 {
  static constexpr int kWindow = 8, kTile = 6;

  // o = B^T d for one column (or row) of a window. Row j of B^T holds the coefficients of
  // prod_{l != j} (x - a_l) over the finite points (the last row: of the product over all of them;
  // row 0 negated). The rows of a pair of points +-a share their even part and negate their odd part.
  template <typename V>
  HOST_DEVICE static void input_1d(const V* d, V* o) {
    o[0] = d[0] - d[6] + 5.25f * (d[4] - d[2]);
    o[7] = d[7] - d[1] + 5.25f * (d[3] - d[5]);
    const V even1 = d[2] + d[6] - 4.25f * d[4], odd1 = d[1] + d[5] - 4.25f * d[3];  // +-1
    o[1] = even1 + odd1;
    o[2] = even1 - odd1;
    const V even2 = 0.25f * d[2] - 1.25f * d[4] + d[6], odd2 = 0.5f * d[1] - 2.5f * d[3] + 2 * d[5];  // +-2
    o[3] = even2 + odd2;
    o[4] = even2 - odd2;
    const V even3 = 4 * d[2] - 5 * d[4] + d[6], odd3 = 2 * d[1] - 2.5f * d[3] + 0.5f * d[5];  // +-1/2
    o[5] = even3 + odd3;
    o[6] = even3 - odd3;
  }

  // o = A^T m for one column (or row) of a tile of products: o[i] = sum_j a_j^i m[j], plus m[7]
  // (the point at infinity) in the last row.
  template <typename V>
  HOST_DEVICE static void output_1d(const V* m, V* o) {
    const V s1 = m[1] + m[2], d1 = m[1] - m[2];  // +-1
    const V s2 = m[3] + m[4], d2 = m[3] - m[4];  // +-2
    const V s3 = m[5] + m[6], d3 = m[5] - m[6];  // +-1/2
    o[0] = m[0] + s1 + s2 + s3;
    o[1] = d1 + 2 * d2 + 0.5f * d3;
    o[2] = s1 + 4 * s2 + 0.25f * s3;
    o[3] = d1 + 8 * d2 + 0.125f * d3;
    o[4] = s1 + 16 * s2 + 0.0625f * s3;
    o[5] = d1 + 32 * d2 + 0.03125f * d3 + m[7];
  }
};

struct WinogradF4 {
  static constexpr int kWindow = 6, kTile = 4;

  // o = B^T d with the paper's B^T: row j holds the coefficients of prod_{l != j} (x - a_l) over the
  // finite points (the last row: of the product over all of them); pairs +-a share their even part.
  template <typename V>
  HOST_DEVICE static void input_1d(const V* d, V* o) {
    o[0] = 4 * d[0] - 5 * d[2] + d[4];
    o[5] = 4 * d[1] - 5 * d[3] + d[5];
    const V even1 = d[4] - 4 * d[2], odd1 = d[3] - 4 * d[1];  // +-1
    o[1] = even1 + odd1;
    o[2] = even1 - odd1;
    const V even2 = d[4] - d[2], odd2 = 2 * (d[3] - d[1]);  // +-2
    o[3] = even2 + odd2;
    o[4] = even2 - odd2;
  }

  // o = A^T m: o[i] = sum_j a_j^i m[j], plus m[5] (the point at infinity) in the last row.
  template <typename V>
  HOST_DEVICE static void output_1d(const V* m, V* o) {
    const V s1 = m[1] + m[2], d1 = m[1] - m[2];  // +-1
    const V s2 = m[3] + m[4], d2 = m[3] - m[4];  // +-2
    o[0] = m[0] + s1 + s2;
    o[1] = d1 + 2 * d2;
    o[2] = s1 + 4 * s2;
    o[3] = d1 + 8 * d2 + m[5];
  }
};

// V = B^T d B for a window stored row-major in d; v[p * window + q] receives V[p][q].
template <typename F, typename V>
HOST_DEVICE void winograd_input_tile(const V* d, V* v) {
  constexpr int n = F::kWindow;
  V rows[n * n];  // rows[a * n + q] = (d B)[a][q]
  for (int a = 0; a < n; ++a) F::input_1d(d + a * n, rows + a * n);
  for (int q = 0; q < n; ++q) {
    V column[n], out[n];
    for (int a = 0; a < n; ++a) column[a] = rows[a * n + q];
    F::input_1d(column, out);
    for (int p = 0; p < n; ++p) v[p * n + q] = out[p];
  }
}

// Y = A^T M A for a tile of products stored row-major in m; y[r * tile + s] receives Y[r][s].
template <typename F, typename V>
HOST_DEVICE void winograd_output_tile(const V* m, V* y) {
  constexpr int n = F::kWindow, t = F::kTile;
  V columns[t * n];  // columns[r * n + q] = (A^T M)[r][q]
  for (int q = 0; q < n; ++q) {
    V column[n], out[t];
    for (int p = 0; p < n; ++p) column[p] = m[p * n + q];
    F::output_1d(column, out);
    for (int r = 0; r < t; ++r) columns[r * n + q] = out[r];
  }
  for (int r = 0; r < t; ++r) F::output_1d(columns + r * n, y + r * t);
}

}  // namespace realsr_fast
