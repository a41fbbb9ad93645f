// SPDX-License-Identifier: Apache-2.0
#include "dataplane/xdp/btf_layout.h"

#include <bpf/btf.h>

namespace keel {
namespace {

// Through typedefs and qualifiers to the type that has a layout.
uint32_t skipAliases(const btf* b, uint32_t id) {
  for (int i = 0; i < 32; ++i) {
    const btf_type* t = btf__type_by_id(b, id);
    if (!t) return id;
    switch (btf_kind(t)) {
      case BTF_KIND_TYPEDEF:
      case BTF_KIND_VOLATILE:
      case BTF_KIND_CONST:
      case BTF_KIND_RESTRICT:
      case BTF_KIND_TYPE_TAG: id = t->type; break;
      default: return id;
    }
  }
  return id;
}

std::string nameOf(const btf* b, uint32_t nameOff) {
  const char* n = btf__name_by_offset(b, nameOff);
  return n && *n ? n : "(anonymous)";
}

bool compare(const btf* a, uint32_t aId, const btf* b, uint32_t bId, const std::string& what, std::string* why,
             int depth) {
  auto differ = [&](const std::string& how) {
    if (why) *why = what + ": " + how;
    return false;
  };
  if (depth > 16) return differ("types nested too deep to compare");
  aId = skipAliases(a, aId);
  bId = skipAliases(b, bId);
  const btf_type* ta = btf__type_by_id(a, aId);
  const btf_type* tb = btf__type_by_id(b, bId);
  if (!ta || !tb) return differ("type missing from its BTF");
  if (btf_kind(ta) != btf_kind(tb)) return differ("another kind of type");
  switch (btf_kind(ta)) {
    case BTF_KIND_INT:
      if (ta->size != tb->size || btf_int_encoding(ta) != btf_int_encoding(tb) ||
          btf_int_offset(ta) != btf_int_offset(tb) || btf_int_bits(ta) != btf_int_bits(tb))
        return differ("another integer (" + std::to_string(tb->size) + " bytes in the pinned map, " +
                      std::to_string(ta->size) + " here)");
      return true;
    case BTF_KIND_ARRAY: {
      const struct btf_array* ea = btf_array(ta);
      const struct btf_array* eb = btf_array(tb);
      if (ea->nelems != eb->nelems)
        return differ(std::to_string(eb->nelems) + " elements in the pinned map, " + std::to_string(ea->nelems) +
                      " here");
      return compare(a, ea->type, b, eb->type, what + "[]", why, depth + 1);
    }
    case BTF_KIND_STRUCT:
    case BTF_KIND_UNION: {
      if (ta->size != tb->size)
        return differ(std::to_string(tb->size) + " bytes in the pinned map, " + std::to_string(ta->size) + " here");
      const uint16_t n = btf_vlen(ta);
      if (n != btf_vlen(tb))
        return differ(std::to_string(btf_vlen(tb)) + " members in the pinned map, " + std::to_string(n) + " here");
      const btf_member* ma = btf_members(ta);
      const btf_member* mb = btf_members(tb);
      for (uint16_t i = 0; i < n; ++i) {
        const std::string name = nameOf(a, ma[i].name_off);
        const uint32_t offset = btf_member_bit_offset(ta, i);
        const std::string member = what + ": member " + std::to_string(i) + " (" + name + " at bit " +
                                   std::to_string(offset) + ")";
        if (nameOf(b, mb[i].name_off) != name) {
          if (why) *why = member + ": named " + nameOf(b, mb[i].name_off) + " in the pinned map";
          return false;
        }
        if (btf_member_bit_offset(tb, i) != offset || btf_member_bitfield_size(ta, i) != btf_member_bitfield_size(tb, i)) {
          if (why)
            *why = member + ": at bit " + std::to_string(btf_member_bit_offset(tb, i)) + " in the pinned map";
          return false;
        }
        if (!compare(a, ma[i].type, b, mb[i].type, what + "." + name, why, depth + 1)) return false;
      }
      return true;
    }
    case BTF_KIND_PTR: return true;  // a pointer is 8 bytes whatever it points to
    default:
      // Enums and the rest: their size is their layout.
      if (ta->size != tb->size)
        return differ(std::to_string(tb->size) + " bytes in the pinned map, " + std::to_string(ta->size) + " here");
      return true;
  }
}

}  // namespace

bool sameBtfLayout(const btf* a, uint32_t aId, const btf* b, uint32_t bId, const std::string& what,
                   std::string* why) {
  return compare(a, aId, b, bId, what, why, 0);
}

}  // namespace keel
