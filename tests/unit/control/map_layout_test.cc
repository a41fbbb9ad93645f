// SPDX-License-Identifier: Apache-2.0
// The layouts recorded beside pinned maps (dataplane/xdp/map_layout.h): what
// this build's BTF says of its maps, and which differences between a pinned
// layout and this build's a restart accepts. No privileges: the balancer
// object is opened, never loaded.
#include "dataplane/xdp/map_layout.h"

#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>

#include <string>

#include "balancer.skel.h"

namespace keel::xdp {
namespace {

// A key of one u32 and keel_ct_value, as mapLayout writes them.
const std::string kCt =
    "k - 0 32 u32\n"
    "v backend_id 0 32 u32\n"
    "v gen 32 32 u32\n"
    "v last_seen_ns 64 64 u64\n";

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return at == std::string::npos ? text : text.replace(at, from.size(), to);
}

class MapLayoutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    skel_ = keel_balancer__open();
    ASSERT_NE(skel_, nullptr);
  }
  void TearDown() override { keel_balancer__destroy(skel_); }
  std::string layoutOf(const bpf_map* map) { return mapLayout(bpf_object__btf(skel_->obj), map); }
  keel_balancer* skel_ = nullptr;
};

// The flattened members, from the object's own BTF: arrays of scalars are one
// member, typedefs resolved, offsets in bits.
TEST_F(MapLayoutTest, AMapsLayoutIsItsMembersFromTheObjectsBtf) {
  EXPECT_EQ(layoutOf(skel_->maps.conntrack),
            "k src 0 128 u32[4]\n"
            "k dst 128 128 u32[4]\n"
            "k sport 256 16 u16\n"
            "k dport 272 16 u16\n"
            "k proto 288 8 u8\n"
            "k family 296 8 u8\n"
            "k pad 304 16 u8[2]\n"
            "v backend_id 0 32 u32\n"
            "v gen 32 32 u32\n"
            "v last_seen_ns 64 64 u64\n");
  EXPECT_EQ(layoutOf(skel_->maps.icmp_limit), "k - 0 32 u32\nv - 0 64 u64\n");
  // Every map keeld pins has one, and each fits an entry of map_layouts.
  bpf_map* map;
  int maps = 0;
  bpf_object__for_each_map(map, skel_->obj) {
    if (bpf_map__is_internal(map)) continue;
    SCOPED_TRACE(bpf_map__name(map));
    const std::string text = layoutOf(map);
    if (bpf_map__type(map) == BPF_MAP_TYPE_ARRAY_OF_MAPS) continue;  // rings: key and value are sizes only
    EXPECT_FALSE(text.empty());
    EXPECT_LT(text.size(), kLayoutTextBytes);
    EXPECT_LT(std::string(bpf_map__name(map)).size(), kLayoutNameBytes);
    EXPECT_EQ(layoutDifference(text, text, bpf_map__key_size(map), bpf_map__value_size(map)), "");
    ++maps;
  }
  EXPECT_GE(maps, 10);
}

// What the flattening keeps of a type, on a BTF made here: nested structs
// and arrays of them member by member, arrays of arrays with their lengths,
// bitfields, an enum's name, typedefs looked through; an empty array holds
// nothing.
TEST(TypesLayout, FlattensWhatABuildCouldChange) {
  btf* b = btf__new_empty();
  ASSERT_NE(b, nullptr);
  const int u32 = btf__add_int(b, "unsigned int", 4, 0);
  const int s16 = btf__add_int(b, "short", 2, BTF_INT_SIGNED);
  const int u8 = btf__add_int(b, "unsigned char", 1, 0);
  const int be32 = btf__add_typedef(b, "__be32", u32);
  const int color = btf__add_enum(b, "color", 4);
  ASSERT_EQ(btf__add_enum_value(b, "RED", 0), 0);
  const int row = btf__add_array(b, u32, u32, 3);
  const int matrix = btf__add_array(b, u32, row, 2);  // u32 m[2][3]
  const int empty = btf__add_array(b, u32, u8, 0);
  const int inner = btf__add_struct(b, "inner", 4);
  ASSERT_EQ(btf__add_field(b, "a", s16, 0, 0), 0);
  ASSERT_EQ(btf__add_field(b, "b", u8, 16, 3), 0);  // a 3-bit bitfield
  const int inners = btf__add_array(b, u32, inner, 2);
  const int value = btf__add_struct(b, "value", 44);
  ASSERT_EQ(btf__add_field(b, "addr", be32, 0, 0), 0);
  ASSERT_EQ(btf__add_field(b, "c", color, 32, 0), 0);
  ASSERT_EQ(btf__add_field(b, "m", matrix, 64, 0), 0);
  ASSERT_EQ(btf__add_field(b, "in", inners, 256, 0), 0);
  ASSERT_EQ(btf__add_field(b, "tail", empty, 320, 0), 0);
  ASSERT_GT(value, 0);
  EXPECT_EQ(typesLayout(b, static_cast<uint32_t>(u32), static_cast<uint32_t>(value)),
            "k - 0 32 u32\n"
            "v addr 0 32 u32\n"
            "v c 32 32 enum32:color\n"
            "v m 64 192 u32[3][2]\n"
            "v in[0].a 256 16 s16\n"
            "v in[0].b 272 3 u8\n"
            "v in[1].a 288 16 s16\n"
            "v in[1].b 304 3 u8\n");
  EXPECT_EQ(typesLayout(b, 0, static_cast<uint32_t>(value)), "");
  btf__free(b);
}

TEST(LayoutDifference, MembersThatMovedOrChangedAreNamed) {
  EXPECT_EQ(layoutDifference(kCt, kCt, 4, 16), "");
  // The same sizes, two members swapped: what a size check cannot see.
  const std::string swapped = replaced(replaced(kCt, "v backend_id 0", "v gen 0"), "v gen 32", "v backend_id 32");
  EXPECT_EQ(layoutDifference(swapped, kCt, 4, 16),
            "value member gen (bits 0-31, u32) pinned; this build has backend_id (bits 0-31, u32)");
  // Renamed, retyped, or in this build only.
  EXPECT_EQ(layoutDifference(replaced(kCt, "gen 32 32 u32", "gen 32 32 s32"), kCt, 4, 16),
            "value member gen (bits 32-63, s32) pinned; this build has gen (bits 32-63, u32)");
  EXPECT_EQ(layoutDifference(replaced(kCt, "v gen 32 32 u32\n", ""), kCt, 4, 16),
            "value member gen (bits 32-63, u32) in this build; the pinned map has nothing there");
  EXPECT_EQ(layoutDifference(replaced(kCt, "k - 0 32 u32", "k id 0 32 u32"), kCt, 4, 16),
            "key member id (bits 0-31, u32) pinned; this build has the unnamed whole (bits 0-31, u32)");
}

// Padding pinned by an older build holds whatever this build has inside it
// (it was written zero); not the other way, and never in a key.
TEST(LayoutDifference, PinnedPaddingHoldsTheFieldsThisBuildMadeOfIt) {
  const std::string padded = replaced(kCt, "v gen 32 32 u32", "v __pad 32 32 u8[4]");
  EXPECT_EQ(layoutDifference(padded, kCt, 4, 16), "");
  const std::string reserved = replaced(kCt, "v gen 32 32 u32", "v reserved2 32 32 u16[2]");
  EXPECT_EQ(layoutDifference(reserved, kCt, 4, 16), "");
  const std::string two = replaced(kCt, "v gen 32 32 u32", "v gen 32 16 u16\nv flags 48 16 u16");
  EXPECT_EQ(layoutDifference(padded, two, 4, 16), "");
  // A member across the padding's edge is not inside it.
  const std::string wide = replaced(padded, "v __pad 32 32 u8[4]", "v pad 32 16 u8[2]\nv x 48 16 u16");
  EXPECT_EQ(layoutDifference(wide, kCt, 4, 16),
            "value member x (bits 48-63, u16) pinned; this build has gen (bits 32-63, u32)");
  // A field this build made padding: its pinned values would be read as
  // whatever a later build puts there (gen -> pad -> flags), so refused.
  EXPECT_EQ(layoutDifference(kCt, padded, 4, 16),
            "value member gen (bits 32-63, u32) pinned; this build has __pad (bits 32-63, u8[4])");
  // Only pad and reserved (with underscores before, a number after) are
  // padding.
  EXPECT_EQ(layoutDifference(replaced(kCt, "v gen 32 32 u32", "v padlen 32 32 u32"), kCt, 4, 16),
            "value member padlen (bits 32-63, u32) pinned; this build has gen (bits 32-63, u32)");
  // A key is hashed and compared as bytes: its padding is a field like any.
  EXPECT_EQ(layoutDifference(replaced(kCt, "k - 0 32 u32", "k pad 0 32 u8[4]"), kCt, 4, 16),
            "key member pad (bits 0-31, u8[4]) pinned; this build has the unnamed whole (bits 0-31, u32)");
}

// Only the bytes both maps hold are compared (a value one build made
// longer); a member across the shorter one's end is a difference.
TEST(LayoutDifference, OnlyTheBytesBothMapsHoldAreCompared) {
  const std::string longer = kCt + "v tail 128 32 u32\n";
  EXPECT_EQ(layoutDifference(kCt, longer, 4, 16), "");
  // A pinned value of 12 bytes against this build's 16: last_seen_ns
  // starts in the bytes both hold and ends past them.
  const std::string shorter = replaced(kCt, "v last_seen_ns 64 64 u64\n", "");
  EXPECT_EQ(layoutDifference(shorter, kCt, 4, 12),
            "value member last_seen_ns (bits 64-127, u64) crosses the end of the shorter value (bit 96)");
  // Padding across that end is cut there: the bytes both hold are compared.
  const std::string padTail = replaced(kCt, "v last_seen_ns 64 64 u64", "v pad 64 64 u8[8]");
  EXPECT_EQ(layoutDifference(padTail, shorter + "v x 64 32 u32\n", 4, 12), "");
}

TEST(LayoutDifference, TextThatIsNoLayoutIsADifference) {
  EXPECT_EQ(layoutDifference("garbage", kCt, 4, 16), "the pinned layout is not one this build can read");
  EXPECT_EQ(layoutDifference("v a 0 0 u32\n", kCt, 4, 16), "the pinned layout is not one this build can read");
  // A member whose type the BTF did not resolve matches nothing, not even
  // itself: the restart is refused rather than guessed.
  EXPECT_EQ(layoutDifference("v x 0 1 unknown\n", "v x 0 1 unknown\n", 0, 1),
            "value member x (bits 0-0, unknown) pinned; this build has x (bits 0-0, unknown)");
}

}  // namespace
}  // namespace keel::xdp
