// SPDX-License-Identifier: Apache-2.0
// What the worker loop does to an mbuf the packet path rewrote, apart from
// the loop so that tests/unit/dpdk/mbuf_frame_test.cc can run it on real
// chained mbufs: the chain cases only arise with multi-segment frames,
// which the pcap tests do not make.
#pragma once

#include <rte_mbuf.h>

#include <cstdint>

#include "dataplane/dpdk/worker_path.h"

namespace keel::dpdk {

// A frame the packet path rewrote (PacketBuf, on kTx): the mbuf's
// first segment is set to start at b.data and hold b.len bytes. The path
// works in the first segment's buffer only; it may have moved the start into
// the headroom (an outer header) and changed the length (grown by it, or cut
// after an ICMP error's quote). A cut frame ends in the first segment, and
// so does one whose start moved: it was rebuilt around the IP packet, which
// the parser found whole in the first segment (an outer header: the bytes
// after the packet stay out of the tunnel, as XDP's adjust_tail leaves
// them; an ICMP error ends after its quote). A chain behind either goes;
// otherwise (l2dsr, an echo reply: rewritten in place) the segments behind
// it stay as they were.
inline void setFrame(rte_mbuf* m, const PacketBuf& b) {
  const uint16_t oldLen = rte_pktmbuf_data_len(m);
  const uint16_t oldOff = m->data_off;
  m->data_off = static_cast<uint16_t>(b.data - static_cast<uint8_t*>(m->buf_addr));
  m->data_len = static_cast<uint16_t>(b.len);
  if ((b.len < oldLen || m->data_off != oldOff) && m->next) {
    rte_pktmbuf_free(m->next);
    m->next = nullptr;
    m->nb_segs = 1;
    m->pkt_len = b.len;
    return;
  }
  m->pkt_len = m->pkt_len - oldLen + b.len;
}

}  // namespace keel::dpdk
