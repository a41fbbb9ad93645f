// SPDX-License-Identifier: Apache-2.0
// The DPDK workers' connection tables across a clean keeld restart.
//
// Why: an XDP restart keeps its connection table (a pinned map the next
// keeld adopts); a DPDK plane's tables live in keeld's worker lcores and go
// with them. The health stop record (daemon_backend.cc) makes the first ring
// after a restart the one that ran, which keeps every flow whose real is the
// ring's pick; a flow on a drained real, or picked before a ring change, is
// kept only by its table entry. So a clean stop writes the entries to a file
// and the next keeld loads them into its workers before they read a
// packet.
//
// What an entry is stored by: what survives a restart. Backend ids and
// generations are handed out afresh by the next keeld's registry, so an
// entry names its service (VIP, port, protocol, family) and its real
// (family + address, as keel_backend holds it); the worker clock is TSC
// nanoseconds whose calibration differs per start, so an entry holds its
// age, not its last_seen. A worker index goes with each entry: RSS puts a
// flow on the same queue only with the same queue count (and port), so with
// the same worker count each entry goes back into its own worker's table.
// With another count keeld cannot tell which queue the NIC's RSS now picks
// (a vdev like net_af_packet hashes in the kernel), so every entry goes into
// every worker's table: the worker the flow lands on finds it, and the
// copies no packet of the flow reaches age out by the idle timeout or are
// evicted like any cold entry.
//
// The file is portable: explicit little-endian integers (ConnFile below),
// so it does not depend on the saving machine's byte order or on struct
// layout.
//
// Pure C++ over ConnTable and the Snapshot (no EAL): the DPDK plane calls it
// with its workers stopped (save) or not yet started (load), so each table
// has one writer, as on the packet path.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "dataplane/dpdk/conn_table.h"
#include "dataplane/dpdk/tables.h"
#include "keel/flow.h"
#include "keel/maps_abi.h"

namespace keel::dpdk {

// One saved entry, in memory (the file's layout is ConnFile's, below).
struct ConnRecord {
  keel_flow_key flow;
  keel_service_key service;  // the service whose real the entry names
  uint32_t realAddr[4];      // keel_backend.addr
  uint8_t realFamily = 0;    // keel_backend.family
  uint32_t worker = 0;       // index of the worker whose table held it
  uint64_t ageNs = 0;        // now - last_seen at the save
};

// The file: a header, then `entries` entries, every integer little-endian;
// the flow key, the service key and the real's address are stored as the
// bytes they hold (their addresses and ports are network order already,
// their protocol and family single bytes).
//   header, 40 bytes: 0 magic "KEELCONN" | 8 version u32 | 12 entry size
//     u32 (96) | 16 worker count u32 | 20 port spread u32 (SavedConns::spread;
//     0 in files of keelds before 2026-12-05, where it was reserved) |
//     24 entries u64 |
//     32 savedAtNs u64 (CLOCK_REALTIME at the save: the gap until the load
//     adds to every age)
//   entry, 96 bytes: 0 flow key (keel_flow_key, 40) | 40 service key
//     (keel_service_key, 20) | 60 real address (16) | 76 real family u8 |
//     77 reserved (3) | 80 worker u32 | 84 reserved u32 | 88 ageNs u64
// Reserved bytes are written zero and ignored. Version 1 (keeld before the
// portable file) had this layout in the saving machine's own byte order (it
// wrote its structs as they were): it is still read, as native order, so the
// file the previous keeld left on this machine loads.
struct ConnFile {
  static constexpr char kMagic[8] = {'K', 'E', 'E', 'L', 'C', 'O', 'N', 'N'};
  static constexpr uint32_t kVersion = 2;
  static constexpr uint32_t kNativeVersion = 1;  // read only
  static constexpr size_t kHeaderSize = 40;
  static constexpr size_t kEntrySize = 96;
};

struct SavedConns {
  uint32_t workers = 0;
  uint64_t savedAtNs = 0;
  std::vector<ConnRecord> records;
  // How the saving plane's port spread flows over its queues: a digest of
  // its driver, RSS hash types, RSS key length and queue count (the DPDK
  // plane's portSpread()); 0: not known. A plane with the same worker count
  // but another spread (net_af_packet's fanout after net_af_xdp's RSS on the
  // same interface, another NIC at the same address) puts the flows on
  // other workers, so the entries go into every table (restoreConns).
  uint32_t spread = 0;
};

struct ConnExportReport {
  uint64_t saved = 0;
  uint64_t skippedStale = 0;    // the worker would re-pick it anyway (real not usable, old generation)
  uint64_t skippedExpired = 0;  // idle longer than its protocol's timeout
};

// The entries of tables (worker i's is tables[i]) that the workers would
// still honour under snap, at worker clock nowNs; savedAtNs is the wall
// clock to record. Only while no worker runs.
SavedConns exportConns(const Snapshot& snap, const std::vector<const ConnTable*>& tables, uint64_t nowNs,
                       uint64_t savedAtNs, ConnExportReport* report = nullptr);

// The file's bytes (version 2), and back (version 2 or 1). decodeConns says
// what is wrong (truncated, foreign magic or version, which entry is bad and
// how) and leaves *out empty then.
std::string encodeConns(const SavedConns& saved);
Status decodeConns(const std::string& bytes, SavedConns* out);

// Writes path whole or not at all, mode 0600 (it lists the clients'
// addresses): writeFileReplacing.
Status writeConnFile(const std::string& path, const SavedConns& saved);
// Reads and removes path (it is consumed whether or not it is usable: a
// later start must never load it again). *found = false and ok when there
// is no file; an error names the file and what is wrong with it.
Status consumeConnFile(const std::string& path, SavedConns* out, bool* found);

struct ConnRestoreReport {
  bool restored = false;
  std::string notRestored;  // why nothing was loaded, when !restored
  uint32_t workers = 0;       // this plane's worker count
  uint32_t savedWorkers = 0;  // the saving plane's
  // The counts differ, or the port spreads flows another way (spreadChanged):
  // every entry went into every worker's table (RSS would put its flow on
  // a queue keeld cannot compute).
  bool copiedToAll = false;
  bool spreadChanged = false;  // both spreads known and different
  uint64_t loaded = 0;  // entries every table they went into still holds
  // Entries some table they went into could not keep: later inserts filled
  // the bucket with more recently seen entries (a smaller table than the
  // saving one, or all entries copied into each table). Their flows are
  // picked from the ring again where they land on such a table.
  uint64_t lostNoRoom = 0;
  // Copies of a flow the file holds (each worker saves its copy after a
  // restore into all workers), when they are copied into every table
  // again: the most recently seen one is used (and checked like any
  // entry), the others counted here.
  uint64_t skippedDuplicate = 0;
  uint64_t skippedNoService = 0;  // its service is gone
  uint64_t skippedNoReal = 0;     // the service has no real at that address
  uint64_t skippedDown = 0;       // the real is there but not VALID (down, or its slot invalidated)
  uint64_t skippedExpired = 0;    // older than its protocol's idle timeout, the gap included
};

// Inserts saved into tables (worker i's is tables[i]), each entry naming the
// backend id and generation snap now gives its real: into its own worker's
// table if the worker count and the port's spread (`spread`: this plane's,
// 0 unknown; an unknown one on either side counts as the same) are the ones
// that saved it, else into every table. Entries go in least recently seen first, so where a bucket
// overflows the most recently seen stay, as the tables' own eviction
// would keep them. nowNs: the worker clock; wallNowNs: CLOCK_REALTIME, for
// the gap since the save. Only before the workers run.
ConnRestoreReport restoreConns(const Snapshot& snap, const std::vector<ConnTable*>& tables,
                               const SavedConns& saved, uint64_t nowNs, uint64_t wallNowNs, uint32_t spread = 0);

}  // namespace keel::dpdk
