/**
 * @file response.h
 * @brief Score rounding for ranking responses (GetPersonalizedRanking `score` fields).
 *
 * Ops: `round_score` (double -> double). Responses carry float32 softmax scores widened to
 * double and rounded to 7 decimals exactly as NumPy's `np.round(x, 7)` does for float64:
 * multiply by 1e7 (exact as a double), round half to even (`nearbyint` in the default
 * rounding mode, like `np.rint`), divide by 1e7. NaN and inf pass through. Nothing here
 * knows about Python; the binding (`ranking_entries` in cpp/src/bind_response.cpp) builds
 * the dicts.
 */
#pragma once

#include <cmath>

namespace rankcore {

/// `x` rounded to 7 decimals, bit-identical to `float(np.round(np.float64(x), 7))`.
inline double round_score(double x) noexcept { return std::nearbyint(x * 1e7) / 1e7; }

}  // namespace rankcore
