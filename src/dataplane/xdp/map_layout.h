// SPDX-License-Identifier: Apache-2.0
// What the bytes of a pinned map mean, recorded beside the pins so that a
// restarted keeld of another build can tell a map it may reuse from one of the
// same sizes whose fields moved or changed meaning (docs/architecture.md,
// "Restart and adoption").
//
// A map's layout is the flat list of its key's and value's members as the
// build's own BTF (the balancer object's, embedded in keeld: no kernel BTF and
// no CAP_SYS_ADMIN needed) lays them out: path, bit offset, bit size and
// type. It is kept as text, one member a line, so that two builds' layouts
// can be compared member by member, not only as equal or not:
//   - every member of either layout must be in the other at the same place,
//     with the same name and type;
//   - except that a padding member (a name beginning "pad" or "reserved",
//     leading underscores ignored) matches whatever the other layout has
//     entirely inside its bytes, so a build may turn padding into fields
//     (their old bytes are the zeros padding holds: maps_abi.h) or fields
//     back into padding without a refused restart;
//   - only the bytes both maps have count: a value one build made longer
//     (node_config, whose fields are only appended) is compared over the
//     shorter one's bytes.
#pragma once

#include <cstdint>
#include <string>

struct btf;
struct bpf_map;

namespace keel::xdp {

// The layout of `map`'s key and value as `b` (the object's BTF) lays them
// out, in the text form above; empty when the map's types have no BTF (a
// map declared by sizes only: nothing to compare beyond them).
std::string mapLayout(const btf* b, const bpf_map* map);

// Empty when a map pinned with layout `pinned` holds what this build's
// `ours` reads, over the first keyBytes of the key and valueBytes of the
// value; otherwise what differs, in words ("value member gen: bits 32-63,
// u32 pinned; this build: backend_id, bits 32-63, u32"). A `pinned` text
// that is not a layout is a difference too.
std::string layoutDifference(const std::string& pinned, const std::string& ours, uint32_t keyBytes,
                             uint32_t valueBytes);

// The pinned map that holds the layouts: the map's name as libbpf and the
// pins spell it (not the kernel's, cut to 15 bytes) -> layout text, both
// NUL-padded.
inline constexpr const char* kLayoutsPin = "map_layouts";
inline constexpr uint32_t kLayoutNameBytes = 64;
inline constexpr uint32_t kLayoutTextBytes = 4096;

}  // namespace keel::xdp
