// Winograd F(4x4, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
// CVPR 2016; docs/winograd.md): a 3x3 correlation computed on 4x4 output tiles from 6x6 input
// windows with 36 multiplications per tile and channel pair instead of 144.
//   V = B^T d B  (input window d, 6x6)   U = G g G^T  (kernel g, 3x3; in Python)
//   Y = A^T M A  (M = sum over input channels of U .* V, 6x6; Y the 4x4 output tile)
// The 1-D transforms below are templates over the value type, so that the CPU op runs them on
// 8-float vectors and the C++ tests on plain floats against the matrices written out.
#pragma once

#include "common.h"

namespace realsr_fast {

// Side of an input window, of an output tile, and the number of transformed values per tile.
constexpr int kWinogradWindow = 6;
constexpr int kWinogradTile = 4;
constexpr int kWinogradPoints = kWinogradWindow * kWinogradWindow;

// o = B^T d for one column (or row) of a 6x6 window, with
// B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1].
template <typename V>
HOST_DEVICE void winograd_input_1d(const V* d, V* o) {
  o[0] = 4 * d[0] - 5 * d[2] + d[4];
  o[1] = d[3] + d[4] - 4 * (d[1] + d[2]);
  o[2] = 4 * (d[1] - d[2]) + d[4] - d[3];
  o[3] = 2 * (d[3] - d[1]) + d[4] - d[2];
  o[4] = 2 * (d[1] - d[3]) + d[4] - d[2];
  o[5] = 4 * d[1] - 5 * d[3] + d[5];
}

// o = A^T m for one column (or row) of a 6x6 tile of products, with
// A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1].
template <typename V>
HOST_DEVICE void winograd_output_1d(const V* m, V* o) {
  const V s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
  o[0] = m[0] + s12 + s34;
  o[1] = d12 + 2 * d34;
  o[2] = s12 + 4 * s34;
  o[3] = d12 + 8 * d34 + m[5];
}

// V = B^T d B for a 6x6 window stored row-major in d; v[p * 6 + q] receives V[p][q].
template <typename V>
HOST_DEVICE void winograd_input_tile(const V* d, V* v) {
  V rows[kWinogradPoints];  // rows[a * 6 + q] = (d B)[a][q]
  for (int a = 0; a < kWinogradWindow; ++a) winograd_input_1d(d + a * kWinogradWindow, rows + a * kWinogradWindow);
  for (int q = 0; q < kWinogradWindow; ++q) {
    V column[kWinogradWindow], out[kWinogradWindow];
    for (int a = 0; a < kWinogradWindow; ++a) column[a] = rows[a * kWinogradWindow + q];
    winograd_input_1d(column, out);
    for (int p = 0; p < kWinogradWindow; ++p) v[p * kWinogradWindow + q] = out[p];
  }
}

// Y = A^T M A for a 6x6 tile of products stored row-major in m; y[r * 4 + s] receives Y[r][s].
template <typename V>
HOST_DEVICE void winograd_output_tile(const V* m, V* y) {
  V columns[kWinogradTile * kWinogradWindow];  // columns[r * 6 + q] = (A^T M)[r][q]
  for (int q = 0; q < kWinogradWindow; ++q) {
    V column[kWinogradWindow], out[kWinogradTile];
    for (int p = 0; p < kWinogradWindow; ++p) column[p] = m[p * kWinogradWindow + q];
    winograd_output_1d(column, out);
    for (int r = 0; r < kWinogradTile; ++r) columns[r * kWinogradWindow + q] = out[r];
  }
  for (int r = 0; r < kWinogradTile; ++r) winograd_output_1d(columns + r * kWinogradWindow, y + r * kWinogradTile);
}

}  // namespace realsr_fast
