// Winograd F(6x6, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
// CVPR 2016; docs/winograd.md): a 3x3 correlation computed on 6x6 output tiles from 8x8 input
// windows with 64 multiplications per tile and channel pair instead of 324.
//   V = B^T d B  (input window d, 8x8)   U = G g G^T  (kernel g, 3x3; in Python)
//   Y = A^T M A  (M = sum over input channels of U .* V, 8x8; Y the 6x6 output tile)
// with the interpolation points 0, 1, -1, 2, -2, 1/2, -1/2 and infinity, in that order.
// The 1-D transforms below are templates over the value type, so that the CPU op runs them on
// 8-float vectors and the C++ tests on plain floats against the matrices written out.
#pragma once

#include "common.h"

namespace realsr_fast {

// Side of an input window, of an output tile, and the number of transformed values per tile.
constexpr int kWinogradWindow = 8;
constexpr int kWinogradTile = 6;
constexpr int kWinogradPoints = kWinogradWindow * kWinogradWindow;

// o = B^T d for one column (or row) of an 8x8 window. Row j of B^T holds the coefficients of
// prod_{l != j} (x - a_l) over the finite points (the last row: of the product over all of them;
// row 0 negated). The rows of a pair of points +-a share their even part and negate their odd part.
template <typename V>
HOST_DEVICE void winograd_input_1d(const V* d, V* o) {
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

// o = A^T m for one column (or row) of an 8x8 tile of products: o[i] = sum_j a_j^i m[j], plus
// m[7] (the point at infinity) in the last row.
template <typename V>
HOST_DEVICE void winograd_output_1d(const V* m, V* o) {
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

// V = B^T d B for an 8x8 window stored row-major in d; v[p * 8 + q] receives V[p][q].
template <typename V>
HOST_DEVICE void winograd_input_tile(const V* d, V* v) {
  V rows[kWinogradPoints];  // rows[a * 8 + q] = (d B)[a][q]
  for (int a = 0; a < kWinogradWindow; ++a) winograd_input_1d(d + a * kWinogradWindow, rows + a * kWinogradWindow);
  for (int q = 0; q < kWinogradWindow; ++q) {
    V column[kWinogradWindow], out[kWinogradWindow];
    for (int a = 0; a < kWinogradWindow; ++a) column[a] = rows[a * kWinogradWindow + q];
    winograd_input_1d(column, out);
    for (int p = 0; p < kWinogradWindow; ++p) v[p * kWinogradWindow + q] = out[p];
  }
}

// Y = A^T M A for an 8x8 tile of products stored row-major in m; y[r * 6 + s] receives Y[r][s].
template <typename V>
HOST_DEVICE void winograd_output_tile(const V* m, V* y) {
  V columns[kWinogradTile * kWinogradWindow];  // columns[r * 8 + q] = (A^T M)[r][q]
  for (int q = 0; q < kWinogradWindow; ++q) {
    V column[kWinogradWindow], out[kWinogradTile];
    for (int p = 0; p < kWinogradWindow; ++p) column[p] = m[p * kWinogradWindow + q];
    winograd_output_1d(column, out);
    for (int r = 0; r < kWinogradTile; ++r) columns[r * kWinogradWindow + q] = out[r];
  }
  for (int r = 0; r < kWinogradTile; ++r) winograd_output_1d(columns + r * kWinogradWindow, y + r * kWinogradTile);
}

}  // namespace realsr_fast
