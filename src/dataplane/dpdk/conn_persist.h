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
// Where an entry lands within its table: each table hashes flows to 4-way
// buckets with seeds drawn at random when it is built (ConnTable::hashOf).
// Fresh seeds would scatter the saved entries over other buckets, and
// where a bucket then gets more than four some are lost (measured: 3 % of
// the file with the IPv4 half 46 % full, 12 % at 78 %; performance.md). So
// the file keeps each table's seeds and its capacity, and a load into the
// same layout (the same worker count, port spread and capacity) first
// gives every table the seeds its worker's table had: each entry goes back
// into the bucket that held it, and every entry fits.
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

// The file: a header, then (version 3) the tables' seeds, then `entries`
// entries, every integer little-endian; the flow key, the service key and
// the real's address are stored as the bytes they hold (their addresses and
// ports are network order already, their protocol and family single bytes).
//   header, 40 bytes: 0 magic "KEELCONN" | 8 version u32 | 12 entry size
//     u32 (96) | 16 worker count u32 | 20 port spread u32 (SavedConns::spread;
//     0 in files of keelds before 2026-12-05, where it was reserved) |
//     24 entries u64 |
//     32 savedAtNs u64 (CLOCK_REALTIME at the save: the gap until the load
//     adds to every age)
//   seeds, 8 + 32 x n bytes (version 3 only): 0 n u32 (0: none saved, else
//     the worker count) | 4 table capacity u32 (ConnTable::capacity(), the
//     ways of one family, of every saving table) | 8 n times the four
//     hash seeds u64 of worker i's table (ConnTable::seeds())
//   entry, 96 bytes: 0 flow key (keel_flow_key, 40) | 40 service key
//     (keel_service_key, 20) | 60 real address (16) | 76 real family u8 |
//     77 reserved (3) | 80 worker u32 | 84 reserved u32 | 88 ageNs u64
// Reserved bytes are written zero and ignored. The seeds are as secret as
// the entries (they tell which flows share a bucket): the file is 0600.
// Version 2 (keeld from commit 7111440 to 2026-12-06) has no seeds section
// and is still read, with no seeds. Version 1 (keeld before the portable
// file) had version 2's layout in the saving machine's own byte order (it
// wrote its structs as they were): it is still read, as native order, so
// the file the previous keeld left on this machine loads.
struct ConnFile {
  static constexpr char kMagic[8] = {'K', 'E', 'E', 'L', 'C', 'O', 'N', 'N'};
  static constexpr uint32_t kVersion = 3;
  static constexpr uint32_t kNoSeedsVersion = 2;  // read only
  static constexpr uint32_t kNativeVersion = 1;   // read only
  static constexpr size_t kHeaderSize = 40;
  static constexpr size_t kSeedsHeaderSize = 8;  // n, capacity
  static constexpr size_t kSeedsSize = 32;       // one table's four seeds
  static constexpr size_t kEntrySize = 96;
  // Where a version 3 file's entries start.
  static constexpr size_t entriesOffset(size_t seededTables) {
    return kHeaderSize + kSeedsHeaderSize + kSeedsSize * seededTables;
  }
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
  // The saving tables' ConnTable::capacity() and each one's seeds (worker
  // i's are seeds[i]); seeds empty and capacity 0: not known (a version 2
  // or 1 file, or tables of different capacities).
  uint32_t capacity = 0;
  std::vector<ConnTable::Seeds> seeds;
};

struct ConnExportReport {
  uint64_t saved = 0;
  // No hit will follow it again: its real's generation moved on (the real
  // went down or was removed), or the slot names no service now.
  uint64_t skippedStale = 0;
  uint64_t skippedExpired = 0;  // idle longer than its protocol's timeout
};

// The entries of tables (worker i's is tables[i]) that the workers would
// still honour under snap, at worker clock nowNs, and the tables' seeds
// and capacity (when they all have the same); savedAtNs is the wall clock
// to record. Only while no worker runs.
SavedConns exportConns(const Snapshot& snap, const std::vector<const ConnTable*>& tables, uint64_t nowNs,
                       uint64_t savedAtNs, ConnExportReport* report = nullptr);

// The file's bytes (version 3; the seeds section holds none unless there
// is one set per worker and a capacity), and back (version 3, 2 or 1).
// decodeConns says what is wrong (truncated, foreign magic or version,
// which entry is bad and how) and leaves *out empty then.
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
  // Each table took the seeds its worker's table had at the save
  // (ConnTable::reseed), so every entry went back into its own bucket: the
  // same worker count and spread (not copiedToAll), the same capacity, and
  // a file with seeds. Else why not (seedsNotRestored), and the tables
  // keep the seeds they drew: entries may land in fuller buckets.
  bool seedsRestored = false;
  std::string seedsNotRestored;
  uint64_t loaded = 0;  // entries every table they went into still holds
  // Of those, entries whose real is not VALID at the restore (down, its
  // checks not yet passed; an l2dsr real waiting for its MAC): they reach it
  // once it is, unless a packet of the flow came first and was re-picked.
  uint64_t loadedRealDown = 0;
  // Entries some table they went into could not keep: later inserts filled
  // the bucket with more recently seen entries. Never with seedsRestored;
  // otherwise where buckets fill up: all entries copied into each table,
  // a smaller table than the saving one, or, without the saved seeds, a
  // well-filled table of any size. Their flows are picked from the ring
  // again where they land on such a table.
  uint64_t lostNoRoom = 0;
  // Copies of a flow the file holds (each worker saves its copy after a
  // restore into all workers), when they are copied into every table
  // again: the most recently seen one is used (and checked like any
  // entry), the others counted here.
  uint64_t skippedDuplicate = 0;
  uint64_t skippedNoService = 0;  // its service is gone
  uint64_t skippedNoReal = 0;     // the service has no real at that address
  uint64_t skippedExpired = 0;    // older than its protocol's idle timeout, the gap included
};

// Inserts saved into tables (worker i's is tables[i]), each entry naming the
// backend id and generation snap now gives its real: into its own worker's
// table if the worker count and the port's spread (`spread`: this plane's,
// 0 unknown; an unknown one on either side counts as the same) are the ones
// that saved it, else into every table. Into their own tables, with the
// saving capacity and a file that has the seeds, the tables first take the
// saved seeds (each must still be empty: ConnTable::reseed), so the
// entries fill the buckets they were saved from. Entries go in least
// recently seen first, so where a bucket overflows the most recently seen
// stay, as the tables' own eviction would keep them. nowNs: the worker
// clock; wallNowNs: CLOCK_REALTIME, for the gap since the save. Only
// before the workers run.
ConnRestoreReport restoreConns(const Snapshot& snap, const std::vector<ConnTable*>& tables,
                               const SavedConns& saved, uint64_t nowNs, uint64_t wallNowNs, uint32_t spread = 0);

}  // namespace keel::dpdk
