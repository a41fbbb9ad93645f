// SPDX-License-Identifier: Apache-2.0
#include "control/maglev/maglev.h"

#include <algorithm>
#include <functional>
#include <queue>
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
  uint32_t skipInv;    // skip^-1 mod M, 0 until the tail needs it
};

// (c + skip) mod m for c, skip < m, written so c + skip never exceeds 32 bits
// even for a ring near 2^32; compiles to a compare and a cmov.
inline uint32_t advance(uint32_t c, uint32_t skip, uint32_t m) {
  const uint32_t back = m - skip;
  return c >= back ? c - back : c + skip;
}

// skip^-1 mod m (m prime, skip in [1, m-1]) by the extended Euclidean algorithm.
uint32_t inverseMod(uint32_t a, uint32_t m) {
  int64_t t = 0, newT = 1, r = m, newR = a;
  while (newR != 0) {
    int64_t q = r / newR;
    std::tie(t, newT) = std::make_tuple(newT, t - q * newT);
    std::tie(r, newR) = std::make_tuple(newR, r - q * newR);
  }
  return uint32_t(t < 0 ? t + m : t);
}

// Fills the table. Claim order is the paper's: rounds, and within a round the
// reals in canonical order; only how a claim finds its slot is optimised, so
// the result is identical to the unoptimised walk (tests/model/keel_model.py).
class Populator {
 public:
  Populator(std::vector<Walk>& walks, uint32_t m, uint32_t maxWeight)
      : walks_(walks), m_(m), maxWeight_(maxWeight), taken_((m + 63) / 64, 0), table_(m) {
    // Tail switch-over (see claim()): about sqrt(M) free slots, where a walk's
    // expected M/F probes per claim meets a scan's F steps per claim. The scan
    // reduces a product of two values < M with a 64-bit reciprocal, which is
    // exact only while M^3 < 2^64; larger (unconfigurable) rings just walk.
    if (m_ < (1u << 21)) {
      tailThreshold_ = 1;
      while (uint64_t(tailThreshold_) * tailThreshold_ < m_) ++tailThreshold_;
      reciprocal_ = uint64_t(((unsigned __int128)1 << 64) / m_) + 1;
    }
  }

  std::vector<uint32_t> run() {
    // Weighted populate. Plain Maglev lets every real claim one slot per round.
    // Here, in round r (1-based), real i may claim only while
    //     claimed_i * w_max < r * w_i.
    // By induction, after round r real i holds exactly ceil(r * w_i / w_max)
    // slots: a real of maximum weight claims every round, one of a third of it
    // every third round. So slot counts are proportional to weight up to the
    // rounding of the last (partial) round, and with equal weights the rule is
    // always true and this is exactly the paper's Pseudocode 1, giving each
    // real floor(M/N) or ceil(M/N) slots. (Envoy's maglev_lb.cc weights the
    // same way with a per-host target; this form needs no floating point.)
    // Termination: M is prime, so each walk visits every slot; a claim always
    // finds a free slot while filled < M, and the w_max real claims each round.
    uint64_t weightSum = 0;
    for (const Walk& w : walks_) weightSum += w.weight;
    // Scanning every real each round costs N * M * w_max / sum(w) checks. When
    // weights are skewed (one heavy real among many light ones) that is up to
    // N * M, so then we visit only the reals due in a round, from a heap keyed
    // (round, index): the same claim order, in O(M log N).
    if (uint64_t(maxWeight_) * walks_.size() <= 8 * weightSum)
      populateByRounds();
    else
      populateByHeap();
    return std::move(table_);
  }

 private:
  void populateByRounds() {
    // The walk phase is the build's hot loop (about M ln(M/sqrt(M)) probes
    // and one claim per slot), so it is written out here with the claim
    // inlined and its state in locals: through the members, every store into
    // the table might alias the walk state for the compiler, which then
    // reloads it on each claim. That alone took 1,000 reals at M=65537 from
    // ~1.0 ms to ~0.85 ms (perf/maglev/maglev_bench); the tail below, a few
    // hundred claims, keeps the shared claim().
    uint64_t* const taken = taken_.data();
    uint32_t* const table = table_.data();
    Walk* const walks = walks_.data();
    const uint32_t n = uint32_t(walks_.size()), m = m_, maxWeight = maxWeight_;
    const uint32_t walkEnd = m - tailThreshold_;  // slots claimed by walking
    uint32_t filled = 0, i = 0;
    uint64_t round = 1;
    for (;; ++round) {
      for (i = 0; i < n; ++i) {
        Walk& w = walks[i];
        if (w.claimed * maxWeight >= round * w.weight) continue;
        if (filled == walkEnd) goto tail;
        const uint32_t skip = w.skip, back = m - skip;
        uint32_t c = w.cur;
        while (taken[c >> 6] >> (c & 63) & 1) c = c >= back ? c - back : c + skip;
        taken[c >> 6] |= uint64_t{1} << (c & 63);
        table[c] = w.backendId;
        w.cur = c >= back ? c - back : c + skip;
        ++w.claimed;
        ++filled;
      }
    }
  tail:
    // Resumes the same (round, real) sequence where the walk phase stopped.
    filled_ = filled;
    if (filled_ == m_) return;
    enterTail();
    for (;; ++round, i = 0) {
      for (; i < n; ++i) {
        Walk& w = walks[i];
        if (w.claimed * maxWeight >= round * w.weight) continue;
        claim(w);
        if (filled_ == m_) return;
      }
    }
  }

  // The first round in which w may claim again: the least r with
  // claimed * w_max < r * w.
  uint64_t dueRound(const Walk& w) const { return w.claimed * maxWeight_ / w.weight + 1; }

  void populateByHeap() {
    using Due = std::pair<uint64_t, uint32_t>;  // (round, index in canonical order)
    std::priority_queue<Due, std::vector<Due>, std::greater<Due>> due;
    for (uint32_t i = 0; i < walks_.size(); ++i) due.push({dueRound(walks_[i]), i});
    while (filled_ < m_) {
      uint32_t i = due.top().second;
      due.pop();
      claim(walks_[i]);
      due.push({dueRound(walks_[i]), i});
    }
  }

  void claim(Walk& w) {
    uint32_t c = freeSlots_.empty() ? walk(w) : scan(w);
    taken_[c >> 6] |= uint64_t{1} << (c & 63);
    table_[c] = w.backendId;
    w.cur = advance(c, w.skip, m_);
    ++w.claimed;
    ++filled_;
    if (filled_ + tailThreshold_ == m_) enterTail();
  }

  // The paper's probe: next free slot along the permutation.
  uint32_t walk(const Walk& w) const {
    // Locals so the loop is load, bit test, add, compare, cmov, branch.
    const uint64_t* taken = taken_.data();
    const uint32_t skip = w.skip, back = m_ - skip;
    uint32_t c = w.cur;
    while (taken[c >> 6] >> (c & 63) & 1) c = c >= back ? c - back : c + skip;
    return c;
  }

  // With F free slots left a walk costs about M/F probes, most of the build's
  // M*ln(M) (the last 1% of slots take over half of them). Instead, the tail
  // computes directly how many steps along w's permutation each free slot is:
  // steps(s) = (s - cur) * skip^-1 mod M. Every slot before cur on the walk is
  // taken (the walk only ever passes taken slots), so the free slot with the
  // fewest steps is exactly the one the walk would reach first.
  uint32_t scan(Walk& w) {
    if (w.skipInv == 0) w.skipInv = inverseMod(w.skip, m_);
    // Branch-free body: d = s - cur + M is in [1, 2M), p = d * skip^-1 < 2M^2,
    // reduced mod M with the reciprocal (exact while 2M^3 < 2^64, M < 2^21);
    // the minimum is kept as (steps << 32 | index) so a cmov tracks it.
    const uint64_t mMinusCur = m_ - w.cur, inv = w.skipInv;
    uint64_t best = UINT64_MAX;
    for (uint32_t k = 0; k < freeSlots_.size(); ++k) {
      uint64_t p = (freeSlots_[k] + mMinusCur) * inv;
      uint64_t q = uint64_t(((unsigned __int128)p * reciprocal_) >> 64);
      uint64_t key = (p - q * m_) << 32 | k;
      best = key < best ? key : best;
    }
    const uint32_t bestIndex = uint32_t(best);
    uint32_t c = freeSlots_[bestIndex];
    freeSlots_[bestIndex] = freeSlots_.back();  // order is irrelevant: minima are unique
    freeSlots_.pop_back();
    return c;
  }

  void enterTail() {
    freeSlots_.reserve(tailThreshold_);
    for (uint32_t i = 0; i < taken_.size(); ++i) {
      for (uint64_t f = ~taken_[i]; f != 0; f &= f - 1) {
        uint32_t s = i * 64 + uint32_t(__builtin_ctzll(f));
        if (s < m_) freeSlots_.push_back(s);
      }
    }
  }

  std::vector<Walk>& walks_;
  const uint32_t m_;
  const uint32_t maxWeight_;
  // M bits: 8 KiB at M=65537, so the taken set stays in L1 while the table
  // itself (256 KiB) is only written, once per slot.
  std::vector<uint64_t> taken_;
  std::vector<uint32_t> table_;
  uint32_t filled_ = 0;
  uint32_t tailThreshold_ = 0;       // 0: never switch to scanning
  uint64_t reciprocal_ = 0;          // floor(2^64 / M) + 1
  std::vector<uint32_t> freeSlots_;  // non-empty only in the tail
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
    walks.push_back(Walk{offset, skip, r->weight, r->backendId, 0, 0});
  }

  return Populator(walks, m, maxWeight).run();
}

}  // namespace keel
