// SPDX-License-Identifier: Apache-2.0
// What the bytes of a pinned map mean, recorded beside the pins so that a
// restarted keeld of another build can tell a map it may reuse from one of the
// same sizes whose fields moved or changed meaning (docs/architecture.md,
// "Restart and adoption").
//
// A map's layout is the flat list of its key's and value's members as the
// build's own BTF (the balancer object's, embedded in keeld: no kernel BTF and
// no CAP_SYS_ADMIN needed) lays them out: path, bit offset, bit size and
// type (the scalar under any typedef: u32, s16, bool, enum32:NAME, and an
// array of scalars as one member, u8[6]). It is kept as text, one member a
// line ("v gen 32 32 u32"), so that two builds' layouts can be compared
// member by member, not only as equal or not:
//   - every member of the pinned layout must be in this build's at the same
//     place, with the same name and type, and the other way round;
//   - except that padding in a pinned value (a member named pad or reserved,
//     leading underscores and a number allowed) holds whatever this build
//     has entirely inside it: a build may turn padding into fields, whose
//     old bytes are the zeros padding holds (maps_abi.h). Not the other way:
//     a field this build made padding (a downgrade past the build that added
//     it) holds values that a later build could read as another field, so it
//     is a difference, and a key has no padding (it is compared as bytes:
//     a changed key finds no pinned entry);
//   - only the bytes both maps have count: a value one build made longer
//     (node_config, whose fields are only appended) is compared over the
//     shorter one's bytes.
// A field whose meaning changes must be renamed (maps_abi.h): the layout
// cannot see meaning, only names, places and types.
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
// The same for a key and a value type of `b` (0: none, "").
std::string typesLayout(const btf* b, uint32_t keyType, uint32_t valueType);

// Empty when a map pinned with layout `pinned` holds what this build's
// `ours` reads, over the first keyBytes of the key and valueBytes of the
// value; otherwise what differs, in words ("value member gen (bits 0-31,
// u32) pinned; this build has backend_id (bits 0-31, u32)"). A `pinned`
// text that is not a layout is a difference too.
std::string layoutDifference(const std::string& pinned, const std::string& ours, uint32_t keyBytes,
                             uint32_t valueBytes);

// The pinned map that holds the layouts (XdpDataplane::pinLayouts): the
// map's name as libbpf and the pins spell it (not the kernel's, cut to 15
// bytes) -> "id N" (the map's id: the entry describes that map only) and its
// layout text, both NUL-padded; and kLayoutFormatKey -> kLayoutFormat, the
// form of the entries (a record of another form is refused).
inline constexpr const char* kLayoutsPin = "map_layouts";
inline constexpr uint32_t kLayoutNameBytes = 64;
inline constexpr uint32_t kLayoutTextBytes = 4096;
inline constexpr const char* kLayoutFormatKey = "#format";
inline constexpr const char* kLayoutFormat = "1";

}  // namespace keel::xdp
