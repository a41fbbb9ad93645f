// SPDX-License-Identifier: Apache-2.0
// How many entries a BPF hash map holds, without walking it: the kernel's
// per-CPU element count (6.6+), summed by bpf_map_sum_elem_count() from the
// bpf_map iterator in bpf/ct_count.bpf.c. Each read() creates one iterator
// instance and reads 8 bytes: O(maps in the system + CPUs), not O(entries).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "common/status.h"

struct keel_ct_count;
struct bpf_link;

namespace keel {

class MapElemCounter {
 public:
  // Loads the iterator for the map behind mapFd (a hash or LRU hash map).
  // Fails on kernels without the kfunc or iterator support.
  static Status create(int mapFd, std::unique_ptr<MapElemCounter>* out);
  ~MapElemCounter();
  MapElemCounter(const MapElemCounter&) = delete;
  MapElemCounter& operator=(const MapElemCounter&) = delete;

  // The current entry count, or nullopt if the iterator could not be read.
  std::optional<uint64_t> read() const;

 private:
  MapElemCounter() = default;
  keel_ct_count* skel_ = nullptr;
  bpf_link* link_ = nullptr;
};

}  // namespace keel
