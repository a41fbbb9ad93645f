// SPDX-License-Identifier: Apache-2.0
#include "dataplane/xdp/map_layout.h"

#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <sstream>
#include <vector>

namespace keel::xdp {

namespace {

// A member whose type the BTF does not resolve: a difference wherever it is.
constexpr const char* kUnknown = "unknown";

std::string line(char side, const std::string& path, uint32_t off, uint32_t bits, const std::string& type) {
  return std::string(1, side) + " " + (path.empty() ? "-" : path) + " " + std::to_string(off) + " " +
         std::to_string(bits) + " " + type + "\n";
}

const btf_type* resolved(const btf* b, uint32_t id) {
  const int rid = btf__resolve_type(b, id);  // past typedefs and qualifiers
  return rid < 0 ? nullptr : btf__type_by_id(b, static_cast<uint32_t>(rid));
}

// A scalar's type in words: u32, s16, char, bool, enum32:keel_reason,
// float64, ptr; an array of scalars adds its lengths, innermost first
// (u32[3][2] is two arrays of three). Empty: not a scalar nor an array of
// scalars.
std::string scalarName(const btf* b, const btf_type* t) {
  if (!t) return "";
  if (btf_is_array(t)) {
    const struct btf_array* a = btf_array(t);
    const std::string inner = scalarName(b, resolved(b, a->type));
    return inner.empty() ? "" : inner + "[" + std::to_string(a->nelems) + "]";
  }
  const std::string bits = std::to_string(t->size * 8);
  if (btf_is_int(t)) {
    const uint8_t enc = btf_int_encoding(t);
    if (enc & BTF_INT_BOOL) return "bool";
    if (enc & BTF_INT_CHAR) return "char";
    return ((enc & BTF_INT_SIGNED) ? "s" : "u") + bits;
  }
  if (btf_is_enum(t) || btf_is_enum64(t)) {
    const char* name = btf__name_by_offset(b, t->name_off);
    return "enum" + bits + (name && *name ? std::string(":") + name : "");
  }
  if (btf_is_float(t)) return "float" + bits;
  if (btf_is_ptr(t)) return "ptr";
  return "";
}

// Appends one line per scalar member (or array of scalars) of type `id`
// placed at bitOff, under `path` (members joined by '.', array elements of a
// struct as [i]). Members of no bits (an empty array) hold nothing: no line.
void flatten(const btf* b, uint32_t id, const std::string& path, uint32_t bitOff, uint32_t bitfieldBits, char side,
             std::string& out) {
  const btf_type* t = resolved(b, id);
  if (!t) {
    out += line(side, path, bitOff, 1, kUnknown);  // never matches (firstMissing): refuses rather than guesses
    return;
  }
  if (btf_is_composite(t)) {
    const btf_member* m = btf_members(t);
    for (uint32_t i = 0; i < btf_vlen(t); ++i) {
      const char* name = btf__name_by_offset(b, m[i].name_off);
      const std::string sub = !name || !*name ? path : path.empty() ? name : path + "." + name;
      flatten(b, m[i].type, sub, bitOff + btf_member_bit_offset(t, i), btf_member_bitfield_size(t, i), side, out);
    }
    return;
  }
  const long size = btf__resolve_size(b, id);
  if (size < 0) {
    out += line(side, path, bitOff, 1, kUnknown);
    return;
  }
  if (size == 0) return;
  const std::string type = scalarName(b, t);
  if (btf_is_array(t) && type.empty()) {  // an array of structs: each element's members
    const struct btf_array* a = btf_array(t);
    const long esize = btf__resolve_size(b, a->type);
    for (uint32_t j = 0; j < a->nelems && esize > 0; ++j)
      flatten(b, a->type, path + "[" + std::to_string(j) + "]", bitOff + j * static_cast<uint32_t>(esize) * 8, 0,
              side, out);
    return;
  }
  uint32_t bits = bitfieldBits ? bitfieldBits : static_cast<uint32_t>(size) * 8;
  if (!bitfieldBits && btf_is_int(t) && btf_int_bits(t) < bits) {  // a bitfield of BTF without the kind flag
    bitOff += btf_int_offset(t);
    bits = btf_int_bits(t);
  }
  out += line(side, path, bitOff, bits, type.empty() ? "kind" + std::to_string(btf_kind(t)) : type);
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
    return (path == "-" ? std::string("the unnamed whole") : path) + " (bits " + std::to_string(off) + "-" +
           std::to_string(off + bits - 1) + ", " + type + ")";
  }
};

// A padding member: its last name is pad or reserved, with leading
// underscores and a number allowed (__pad, pad2, reserved[0]); not padlen.
bool isPadding(const std::string& path) {
  std::string last = path.substr(path.rfind('.') == std::string::npos ? 0 : path.rfind('.') + 1);
  last = last.substr(0, last.find('['));
  last.erase(0, std::min(last.find_first_not_of('_'), last.size()));
  for (const std::string word : {"pad", "reserved"})
    if (last.rfind(word, 0) == 0)
      return last.find_first_not_of("0123456789", word.size()) == std::string::npos;
  return false;
}

bool parse(const std::string& text, std::vector<Leaf>& out) {
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l)) {
    std::istringstream fields(l);
    std::string side;
    Leaf leaf{};
    if (!(fields >> side >> leaf.path >> leaf.off >> leaf.bits >> leaf.type) || (side != "k" && side != "v") ||
        leaf.bits == 0)
      return false;
    leaf.side = side[0];
    leaf.pad = side == "v" && isPadding(leaf.path);  // a key is compared as bytes: no padding there
    out.push_back(std::move(leaf));
  }
  return true;
}

// One side's members that start within limitBits, padding cut at it; a
// member across it is returned in *across.
std::vector<Leaf> within(const std::vector<Leaf>& all, char side, uint32_t limitBits, const Leaf** across) {
  std::vector<Leaf> out;
  for (const Leaf& l : all) {
    if (l.side != side || l.off >= limitBits) continue;
    if (l.off + l.bits > limitBits) {
      if (!l.pad) {
        if (!*across) *across = &l;
        continue;
      }
      Leaf cut = l;
      cut.bits = limitBits - l.off;
      out.push_back(cut);
      continue;
    }
    out.push_back(l);
  }
  return out;
}

// The first member of `from` the other layout does not hold at the same
// place, in words; empty if none. `padsAbsorb`: a padding member of `other`
// holds whatever lies inside it (padding pinned by an older build, which
// this build made a field of). Padding of `from` needs no match of its own.
std::string firstMissing(const std::vector<Leaf>& from, const std::vector<Leaf>& other, const std::string& part,
                         bool fromPinned, bool padsAbsorb) {
  for (const Leaf& l : from) {
    if (l.pad) continue;
    const Leaf* there = nullptr;
    bool held = false;
    for (const Leaf& o : other) {
      if (l.type != kUnknown && (o.sameAs(l) || (padsAbsorb && o.pad && l.inside(o)))) {
        held = true;
        break;
      }
      if (!there && o.overlaps(l)) there = &o;
    }
    if (held) continue;
    return part + " member " + l.describe() + (fromPinned ? " pinned" : " in this build") + "; " +
           (fromPinned ? "this build has " : "the pinned map has ") +
           (there ? there->describe() : std::string("nothing there"));
  }
  return "";
}

}  // namespace

std::string mapLayout(const btf* b, const bpf_map* map) {
  return typesLayout(b, bpf_map__btf_key_type_id(map), bpf_map__btf_value_type_id(map));
}

std::string typesLayout(const btf* b, uint32_t keyType, uint32_t valueType) {
  if (!b || keyType == 0 || valueType == 0) return "";
  std::string out;
  flatten(b, keyType, "", 0, 0, 'k', out);
  flatten(b, valueType, "", 0, 0, 'v', out);
  return out;
}

std::string layoutDifference(const std::string& pinned, const std::string& ours, uint32_t keyBytes,
                             uint32_t valueBytes) {
  std::vector<Leaf> p, o;
  if (!parse(pinned, p)) return "the pinned layout is not one this build can read";
  if (!parse(ours, o)) return "this build's layout is not readable";
  for (const char side : {'k', 'v'}) {
    const std::string part = side == 'k' ? "key" : "value";
    const uint32_t limit = (side == 'k' ? keyBytes : valueBytes) * 8;
    const Leaf* across = nullptr;
    const std::vector<Leaf> pw = within(p, side, limit, &across), ow = within(o, side, limit, &across);
    if (across)
      return part + " member " + across->describe() + " crosses the end of the shorter " + part + " (bit " +
             std::to_string(limit) + ")";
    // Every pinned member is one of this build's: a field this build made
    // padding (a downgrade past the build that added it) would hold values
    // a later build reads as something else, so it is refused.
    if (std::string d = firstMissing(pw, ow, part, true, false); !d.empty()) return d;
    // Every member of this build's is one of the pinned, or lies in pinned
    // padding (whose bytes the older build kept zero).
    if (std::string d = firstMissing(ow, pw, part, false, true); !d.empty()) return d;
  }
  return "";
}

}  // namespace keel::xdp
