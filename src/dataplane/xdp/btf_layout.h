// SPDX-License-Identifier: Apache-2.0
// Whether a pinned BPF map holds its keys and values in the layout this
// build's program reads (ring review L6). Adoption already compares a
// pinned map's type, key and value sizes, entries and flags; a build that
// changed a struct but kept its size (two fields of one size swapped, a
// field's meaning moved to another of the same width) would pass those and
// read the previous build's state wrongly. The map's BTF, which libbpf
// gives every map it creates and the kernel keeps with it, tells: its key
// and value types, compared member by member.
#pragma once

#include <cstdint>
#include <string>

struct btf;

namespace keel {

// Whether type `aId` of `a` and type `bId` of `b` lay memory out the same.
// Typedefs and qualifiers are looked through; then the kinds and sizes must
// match, an int's encoding, offset and bits, an array's count and element,
// and a struct's or union's members one by one: name, bit offset, bitfield
// size and (recursively) type. Type names are not compared (a renamed
// struct or typedef is the same layout); member names are (a renamed field
// is taken for a changed one). On a difference, *why names it, e.g.
// "value: member 4 (gen at bit 128): named service_id in the pinned map".
bool sameBtfLayout(const btf* a, uint32_t aId, const btf* b, uint32_t bId, const std::string& what,
                   std::string* why);

}  // namespace keel
