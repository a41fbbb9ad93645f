// SPDX-License-Identifier: Apache-2.0
#include "dataplane/xdp/map_layout.h"

#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <sstream>
#include <vector>

namespace keel::xdp {

namespace {

// A scalar's type in words: u32, s16, char, bool, enum32, float64, ptr.
std::string scalarName(const btf_type* t, uint32_t bits) {
  if (btf_is_int(t)) {
    const uint8_t enc = btf_int_encoding(t);
    if (enc & BTF_INT_BOOL) return "bool";
    if (enc & BTF_INT_CHAR) return "char";
    return ((enc & BTF_INT_SIGNED) ? "s" : "u") + std::to_string(bits);
  }
  if (btf_is_enum(t) || btf_is_enum64(t)) return "enum" + std::to_string(bits);
  if (btf_is_float(t)) return "float" + std::to_string(bits);
  if (btf_is_ptr(t)) return "ptr";
  return "kind" + std::to_string(btf_kind(t));
}

// Appends one line per scalar member of type `id` placed at bitOff, under
// `path` (members joined by '.', array elements of a struct as [i]).
void flatten(const btf* b, uint32_t id, const std::string& path, uint32_t bitOff, uint32_t bitfieldBits, char side,
             std::string& out) {
  const int rid = btf__resolve_type(b, id);  // past typedefs and qualifiers
  const btf_type* t = rid < 0 ? nullptr : btf__type_by_id(b, static_cast<uint32_t>(rid));
  if (!t) {
    out += std::string(1, side) + " " + (path.empty() ? "-" : path) + " " + std::to_string(bitOff) + " 0 unknown\n";
    return;
  }
  if (btf_is_composite(t)) {
    const btf_member* m = btf_members(t);
    for (uint32_t i = 0; i < btf_vlen(t); ++i) {
      const std::string name = btf__name_by_offset(b, m[i].name_off) ? btf__name_by_offset(b, m[i].name_off) : "";
      const std::string sub = name.empty() ? path : path.empty() ? name : path + "." + name;
      flatten(b, m[i].type, sub, bitOff + btf_member_bit_offset(t, i), btf_member_bitfield_size(t, i), side, out);
    }
    return;
  }
  if (btf_is_array(t)) {
    const struct btf_array* a = btf_array(t);
    const int erid = btf__resolve_type(b, a->type);
    const btf_type* e = erid < 0 ? nullptr : btf__type_by_id(b, static_cast<uint32_t>(erid));
    const long esize = btf__resolve_size(b, a->type);
    if (e && esize > 0 && btf_is_composite(e)) {
      for (uint32_t j = 0; j < a->nelems; ++j)
        flatten(b, a->type, path + "[" + std::to_string(j) + "]", bitOff + j * static_cast<uint32_t>(esize) * 8, 0,
                side, out);
      return;
    }
    const uint32_t ebits = esize > 0 ? static_cast<uint32_t>(esize) * 8 : 0;
    out += std::string(1, side) + " " + (path.empty() ? "-" : path) + " " + std::to_string(bitOff) + " " +
           std::to_string(ebits * a->nelems) + " " + (e ? scalarName(e, ebits) : "unknown") + "[" +
           std::to_string(a->nelems) + "]\n";
    return;
  }
  const long size = btf__resolve_size(b, static_cast<uint32_t>(rid));
  const uint32_t bits = bitfieldBits ? bitfieldBits : size > 0 ? static_cast<uint32_t>(size) * 8 : 0;
  out += std::string(1, side) + " " + (path.empty() ? "-" : path) + " " + std::to_string(bitOff) + " " +
         std::to_string(bits) + " " + scalarName(t, size > 0 ? static_cast<uint32_t>(size) * 8 : 0) + "\n";
}

struct Leaf {
  char side;
  std::string path;
  uint32_t off;
  uint32_t bits;
  std::string type;
  bool pad;

  bool sameAs(const Leaf& o) const { return off == o.off && bits == o.bits && path == o.path && type == o.type; }
  bool inside(const Leaf& o) const { return o.off <= off && off + bits <= o.off + o.bits; }
  bool overlaps(const Leaf& o) const { return off < o.off + o.bits && o.off < off + bits; }
  std::string describe() const {
    return (path == "-" ? std::string("the unnamed whole") : path) + " (bits " + std::to_string(off) + "-" + std::to_string(off + bits - 1) + ", " + type + ")";
  }
};

// A padding member: its last name begins "pad" or "reserved", leading
// underscores and an array index ignored.
bool isPadding(const std::string& path) {
  std::string last = path.substr(path.rfind('.') == std::string::npos ? 0 : path.rfind('.') + 1);
  last = last.substr(0, last.find('['));
  last.erase(0, last.find_first_not_of('_') == std::string::npos ? last.size() : last.find_first_not_of('_'));
  return last.rfind("pad", 0) == 0 || last.rfind("reserved", 0) == 0;
}

bool parse(const std::string& text, std::vector<Leaf>& out) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream l(line);
    std::string side;
    Leaf leaf{};
    if (!(l >> side >> leaf.path >> leaf.off >> leaf.bits >> leaf.type) || (side != "k" && side != "v") ||
        leaf.bits == 0)
      return false;
    leaf.side = side[0];
    leaf.pad = isPadding(leaf.path);
    out.push_back(std::move(leaf));
  }
  return true;
}

// The first member of `from` (one side, starting within limitBits) that
// the other layout does not hold at the same place, in words; empty if none.
// A padding member needs no match of its own: a member the other side has
// across its edge is found from that side.
std::string firstMissing(const std::vector<Leaf>& from, const std::vector<Leaf>& other, char side,
                         uint32_t limitBits, bool fromPinned) {
  const std::string part = side == 'k' ? "key" : "value";
  const std::string mineWhere = fromPinned ? " pinned" : " in this build";
  for (const Leaf& l : from) {
    if (l.side != side || l.off >= limitBits) continue;
    if (l.off + l.bits > limitBits)
      return part + " member " + l.describe() + mineWhere + " crosses the end of the shorter value (bit " +
             std::to_string(limitBits) + ")";
    if (l.pad) continue;
    const Leaf* there = nullptr;
    bool held = false;
    for (const Leaf& o : other) {
      if (o.side != side) continue;
      if (o.sameAs(l) || (o.pad && l.inside(o))) {
        held = true;
        break;
      }
      if (!there && o.overlaps(l)) there = &o;
    }
    if (held) continue;
    return part + " member " + l.describe() + mineWhere + "; " +
           (fromPinned ? "this build has " : "the pinned map has ") +
           (there ? there->describe() : std::string("nothing there"));
  }
  return "";
}

}  // namespace

std::string mapLayout(const btf* b, const bpf_map* map) {
  if (!b) return "";
  const uint32_t keyId = bpf_map__btf_key_type_id(map);
  const uint32_t valueId = bpf_map__btf_value_type_id(map);
  if (keyId == 0 || valueId == 0) return "";
  std::string out;
  flatten(b, keyId, "", 0, 0, 'k', out);
  flatten(b, valueId, "", 0, 0, 'v', out);
  return out;
}

std::string layoutDifference(const std::string& pinned, const std::string& ours, uint32_t keyBytes,
                             uint32_t valueBytes) {
  std::vector<Leaf> p, o;
  if (!parse(pinned, p)) return "the pinned layout is not one this build can read";
  if (!parse(ours, o)) return "this build's layout is not readable";
  for (const char side : {'k', 'v'}) {
    const uint32_t limit = (side == 'k' ? keyBytes : valueBytes) * 8;
    if (std::string d = firstMissing(p, o, side, limit, true); !d.empty()) return d;
    if (std::string d = firstMissing(o, p, side, limit, false); !d.empty()) return d;
  }
  return "";
}

}  // namespace keel::xdp
