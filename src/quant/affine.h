// quant/affine.h: helpers for affine integer groups (GPTQ / AWQ / RTN /
// compressed-tensors int): group layout queries used by readers and kernels.
#pragma once

#include <cstdint>
#include <vector>

#include "quant/formats.h"

namespace lq::quant {

// True when g_idx is empty or equals k / group_size for every k (no act-order).
bool trivial_g_idx(const AffineGroups& w);

// Column order that makes each group contiguous: perm sorted by (g_idx[k], k),
// and group_start[g] .. group_start[g + 1] the range of group g in that order
// (n_groups + 1 entries). Without act-order perm is the identity.
struct GroupOrder {
  std::vector<int32_t> perm;
  std::vector<int32_t> group_start;
};
GroupOrder group_order(const AffineGroups& w);

}  // namespace lq::quant
