// SPDX-License-Identifier: Apache-2.0
#include "dataplane/xdp/map_elem_counter.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "ct_count.skel.h"

namespace keel {

Status MapElemCounter::create(int mapFd, std::unique_ptr<MapElemCounter>* out) {
  bpf_map_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(mapFd, &info, &len) != 0)
    return Status::error("map element counter: map info: " + errnoText(errno));
  std::unique_ptr<MapElemCounter> c(new MapElemCounter());
  c->skel_ = keel_ct_count__open();
  if (!c->skel_) return Status::error("map element counter: open: " + errnoText(errno));
  c->skel_->rodata->target_map_id = info.id;
  if (int rc = keel_ct_count__load(c->skel_); rc != 0)
    return Status::error("map element counter: load iterator (needs kernel 6.6+ for "
                         "bpf_map_sum_elem_count): " + errnoText(rc));
  c->link_ = bpf_program__attach_iter(c->skel_->progs.count_map_elems, nullptr);
  if (!c->link_) return Status::error("map element counter: attach iterator: " + errnoText(errno));
  *out = std::move(c);
  return Status::ok();
}

MapElemCounter::~MapElemCounter() {
  if (link_) bpf_link__destroy(link_);
  if (skel_) keel_ct_count__destroy(skel_);
}

std::optional<uint64_t> MapElemCounter::read() const {
  int fd = bpf_iter_create(bpf_link__fd(link_));
  if (fd < 0) return std::nullopt;
  int64_t n = -1;
  size_t got = 0;
  auto* p = reinterpret_cast<char*>(&n);
  while (got < sizeof n) {
    ssize_t r = ::read(fd, p + got, sizeof n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  ::close(fd);
  // Nothing written: the map is gone (its id no longer matches any map).
  if (got != sizeof n || n < 0) return std::nullopt;
  return static_cast<uint64_t>(n);
}

}  // namespace keel
