// SPDX-License-Identifier: Apache-2.0
#include "control/maglev/maglev.h"

#include <algorithm>
#include <string>
#include <tuple>

#include "keel/hash.h"

namespace keel {

namespace {

// One real's walk through its permutation (paper §3.4, Pseudocode 1).
// permutation[j] = (offset + j * skip) % M is never materialised: `cur` is the
// next candidate slot and advances by `skip` with a conditional subtract, so
// the probe loop has no division and no memory besides the taken bitmap.
struct Walk {
  uint32_t cur;        // permutation[next]; starts at offset
  uint32_t skip;       // in [1, M-1]
  uint32_t weight;     // > 0
  uint32_t backendId;
  uint64_t claimed;    // slots taken so far
};

}  // namespace

bool isValidRingSize(uint32_t m) {
  if (m < 2) return false;
  if (m % 2 == 0) return m == 2;
  for (uint64_t d = 3; d * d <= m; d += 2)
    if (m % d == 0) return false;
  return true;
}

Status checkRingSize(uint32_t m) {
  if (isValidRingSize(m)) return Status::ok();
  return Status::error("ring size " + std::to_string(m) +
                       " is not a prime >= 2 (Maglev needs a prime so every permutation covers the "
                       "ring; use 65537 or 655373)");
}

std::vector<uint32_t> buildMaglevTable(const std::vector<MaglevReal>& reals, uint32_t ringSize) {
  const uint32_t m = ringSize;
  if (!isValidRingSize(m)) return {};

  // Canonical order: the table must depend on the set of reals, never on the
  // order the caller listed them. Address first; weight and backendId only
  // break ties between duplicate addresses so even that case is deterministic.
  std::vector<const MaglevReal*> sorted;
  sorted.reserve(reals.size());
  uint32_t maxWeight = 0;
  for (const MaglevReal& r : reals) {
    if (r.weight == 0) continue;  // weight 0: no slots, not even a walk
    sorted.push_back(&r);
    maxWeight = std::max(maxWeight, r.weight);
  }
  if (sorted.empty()) return {};
  std::sort(sorted.begin(), sorted.end(), [](const MaglevReal* a, const MaglevReal* b) {
    return std::tie(a->address, a->weight, a->backendId) <
           std::tie(b->address, b->weight, b->backendId);
  });

  std::vector<Walk> walks;
  walks.reserve(sorted.size());
  for (const MaglevReal* r : sorted) {
    __u32 words[4];
    r->address.toWords(words);
    const uint32_t offset = keel_real_offset_hash(words, r->address.family()) % m;
    const uint32_t skip = keel_real_skip_hash(words, r->address.family()) % (m - 1) + 1;
    walks.push_back(Walk{offset, skip, r->weight, r->backendId, 0});
  }

  // M bits: 8 KiB at M=65537, so the taken set stays in L1 while the table
  // itself (256 KiB) is only written, once per slot.
  std::vector<uint64_t> taken((m + 63) / 64, 0);
  std::vector<uint32_t> table(m);

  // Weighted populate. Plain Maglev lets every real claim one slot per round.
  // Here, in round r (1-based), real i may claim only while
  //     claimed_i * w_max < r * w_i.
  // By induction, after round r real i holds exactly ceil(r * w_i / w_max)
  // slots: a real of maximum weight claims every round, one of a third of it
  // every third round. So slot counts are proportional to weight up to the
  // rounding of the last (partial) round, and with equal weights the rule is
  // always true and this is exactly the paper's Pseudocode 1, giving each real
  // floor(M/N) or ceil(M/N) slots. (Envoy's maglev_lb.cc weights the same way
  // with a per-host target; this form needs no floating point.)
  // Termination: M is prime, so each walk visits every slot; a claim always
  // finds a free slot while filled < M, and the w_max real claims every round.
  uint32_t filled = 0;
  for (uint64_t round = 1; filled < m; ++round) {
    for (Walk& w : walks) {
      if (w.claimed * maxWeight >= round * w.weight) continue;
      uint32_t c = w.cur;
      while (taken[c >> 6] >> (c & 63) & 1) {
        c += w.skip;
        if (c >= m) c -= m;
      }
      taken[c >> 6] |= uint64_t{1} << (c & 63);
      table[c] = w.backendId;
      ++w.claimed;
      c += w.skip;
      if (c >= m) c -= m;
      w.cur = c;
      if (++filled == m) break;
    }
  }
  return table;
}

}  // namespace keel
