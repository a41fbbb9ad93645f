// SPDX-License-Identifier: Apache-2.0
// The DPDK workers' connection tables across a clean keeld restart.
//
// Why: an XDP restart keeps its connection table (a pinned map the next
// keeld adopts); a DPDK plane's tables live in keeld's worker lcores and go
// with them. The health stop record (daemon_backend.cc) makes the first ring
// after a restart the one that ran, which keeps every flow whose real is the
// ring's pick; a flow on a drained real, or picked before a ring change, is
// kept only by its table entry. So a clean stop writes the entries to a file
// and the next keeld loads them into the same workers before they read a
// packet.
//
// What an entry is stored by: what survives a restart. Backend ids and
// generations are handed out afresh by the next keeld's registry, so an
// entry names its service (VIP, port, protocol, family) and its real
// (family + address, as keel_backend holds it); the worker clock is TSC
// nanoseconds whose calibration differs per start, so an entry holds its
// age, not its last_seen. A worker index goes with each entry: RSS puts a
// flow on the same queue only with the same queue count (and port), so the
// file is loaded only into as many workers as saved it.
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

// One saved entry. Native byte order: the file is read back by keeld on the
// same machine (the header's entry size and version guard the layout).
struct ConnRecord {
  keel_flow_key flow;
  keel_service_key service;  // the service whose real the entry names
  uint32_t realAddr[4];      // keel_backend.addr
  uint8_t realFamily;        // keel_backend.family
  uint8_t pad[3];
  uint32_t worker;  // index of the worker whose table held it
  uint32_t pad2;
  uint64_t ageNs;  // now - last_seen at the save
};
static_assert(sizeof(ConnRecord) == 96, "conntrack file entry layout");

// File layout: ConnFileHeader, then `entries` ConnRecords.
struct ConnFileHeader {
  char magic[8];        // kConnFileMagic
  uint32_t version;     // kConnFileVersion
  uint32_t entrySize;   // sizeof(ConnRecord)
  uint32_t workers;     // the saving plane's worker count
  uint32_t reserved;
  uint64_t entries;
  uint64_t savedAtNs;   // CLOCK_REALTIME at the save: the gap until the load adds to every age
};
static_assert(sizeof(ConnFileHeader) == 40, "conntrack file header layout");

inline constexpr char kConnFileMagic[8] = {'K', 'E', 'E', 'L', 'C', 'O', 'N', 'N'};
inline constexpr uint32_t kConnFileVersion = 1;

struct SavedConns {
  uint32_t workers = 0;
  uint64_t savedAtNs = 0;
  std::vector<ConnRecord> records;
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

// The file's bytes, and back. decodeConns says what is wrong (truncated,
// foreign magic or version, bad entry) and leaves *out empty then.
std::string encodeConns(const SavedConns& saved);
Status decodeConns(const std::string& bytes, SavedConns* out);

// Writes path atomically (path.tmp, then rename).
Status writeConnFile(const std::string& path, const SavedConns& saved);
// Reads and removes path (it is consumed whether or not it is usable: a
// later start must never load it again). *found = false and ok when there
// is no file; an error names the file and what is wrong with it.
Status consumeConnFile(const std::string& path, SavedConns* out, bool* found);

struct ConnRestoreReport {
  bool restored = false;
  std::string notRestored;  // why nothing was loaded, when !restored
  uint64_t loaded = 0;
  uint64_t skippedNoService = 0;  // its service is gone
  uint64_t skippedNoReal = 0;     // the service has no real at that address
  uint64_t skippedDown = 0;       // the real is there but not VALID (down, or its slot invalidated)
  uint64_t skippedExpired = 0;    // older than its protocol's idle timeout, the gap included
};

// Inserts saved into tables (worker i's is tables[i]), each entry naming the
// backend id and generation snap now gives its real; nothing if the worker
// count differs. nowNs: the worker clock; wallNowNs: CLOCK_REALTIME, for
// the gap since the save. Only before the workers run.
ConnRestoreReport restoreConns(const Snapshot& snap, const std::vector<ConnTable*>& tables,
                               const SavedConns& saved, uint64_t nowNs, uint64_t wallNowNs);

}  // namespace keel::dpdk
