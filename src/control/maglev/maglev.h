// SPDX-License-Identifier: Apache-2.0
// Maglev lookup-table builder (Eisenbud et al., "Maglev: A Fast and Reliable
// Software Network Load Balancer", NSDI 2016, §3.4), extended with weights.
//
// The ring is built only here; data planes only read ring[hash % M]
// (include/keel/maglev_lookup.h). tests/model/keel_model.py is the reference
// model this code is checked against entry for entry.
#pragma once

#include <cstdint>
#include <vector>

#include "common/address.h"
#include "common/status.h"

namespace keel {

struct MaglevReal {
  IpAddress address;
  uint32_t weight;
  uint32_t backendId;
  bool operator==(const MaglevReal&) const = default;
};

// Returns M entries, each a backendId. Empty result if no real has weight > 0
// or if ringSize is not a valid ring size (see isValidRingSize; use
// checkRingSize for a message).
//
// The table depends only on the SET of reals, never on their listed order:
// reals are sorted by (address, weight, backendId) first. Weight-0 reals get no
// slots; the others get slots in proportion to their weight, and with equal
// weights every real gets floor(M/N) or ceil(M/N) slots (plain Maglev).
//
// Duplicate addresses are the caller's error. They do not crash: duplicates
// share one permutation and split its slots, deterministically.
//
// Cost: about M*ln(M) probes, no allocation besides the result and two
// scratch arrays. Memory: 4*M bytes for the result, M/8 for the taken bitmap.
std::vector<uint32_t> buildMaglevTable(const std::vector<MaglevReal>& reals, uint32_t ringSize);

// Prime and >= 2. The config accepts 65537 and 655373; tests may use small
// primes. Primality is what makes every permutation (offset + j*skip) % M
// visit all M slots for any skip in [1, M-1] (paper §3.4).
bool isValidRingSize(uint32_t m);

// Same check, with a message that says what is wrong.
Status checkRingSize(uint32_t m);

}  // namespace keel
