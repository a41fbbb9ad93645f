// SPDX-License-Identifier: Apache-2.0
#include "dataplane/dpdk/conn_persist.h"

#include <endian.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <map>
#include <tuple>

#include "common/file_write.h"

namespace keel::dpdk {

namespace {

bool familyOk(uint8_t f) { return f == KEEL_AF_INET || f == KEEL_AF_INET6; }

// A backend's identity within the next keeld: its service's id, family and address.
using RealKey = std::tuple<uint32_t, uint8_t, std::array<uint32_t, 4>>;

RealKey realKey(uint32_t serviceId, uint8_t family, const uint32_t addr[4]) {
  return {serviceId, family, {addr[0], addr[1], addr[2], addr[3]}};
}

// A digest of a flow key for restoreConns to sort entries by: a compare
// then rarely reads the keys themselves, scattered over the file's records.
uint64_t flowDigest(const keel_flow_key& k) {
  uint64_t h = 0;
  for (size_t i = 0; i < sizeof k / 8; ++i) h = (h ^ keyWord(k, i)) * 0x9e3779b97f4a7c15ull;
  return h ^ (h >> 29);
}

}  // namespace

SavedConns exportConns(const Snapshot& snap, const std::vector<const ConnTable*>& tables, uint64_t nowNs,
                       uint64_t savedAtNs, ConnExportReport* report) {
  ConnExportReport rep;
  // service id -> key: an entry names its backend, whose slot names the
  // service by id (ids are below maxServices, the rings' index).
  std::vector<const keel_service_key*> services(snap.maxServices, nullptr);
  for (uint32_t i = 0; i <= snap.serviceMask; ++i)
    if (snap.services[i].used && snap.services[i].value.id < snap.maxServices)
      services[snap.services[i].value.id] = &snap.services[i].key;

  SavedConns out;
  out.workers = static_cast<uint32_t>(tables.size());
  out.savedAtNs = savedAtNs;
  // The seeds, for the next keeld to put each entry back into its bucket;
  // only as one capacity for all (the DPDK plane gives every worker the
  // same), which the next keeld's tables must have for that.
  const bool oneCapacity = !tables.empty() && std::all_of(tables.begin(), tables.end(), [&](const ConnTable* t) {
    return t->capacity() == tables[0]->capacity();
  });
  if (oneCapacity) {
    out.capacity = tables[0]->capacity();
    for (const ConnTable* t : tables) out.seeds.push_back(t->seeds());
  }
  uint64_t occupied = 0;
  for (const ConnTable* t : tables) occupied += t->occupied();
  out.records.reserve(occupied);
  for (uint32_t w = 0; w < tables.size(); ++w) {
    tables[w]->forEach([&](const keel_flow_key& key, const keel_ct_value& v) {
      // The entries a hit may still follow (worker_path.cc): a real of its
      // service at the generation the entry was picked with. Not VALID at
      // that generation is a real not up since this keeld started (a real
      // that goes down, or is removed, gets a new generation; barring an
      // apply the data plane refused midway, whose retry rewrites it at
      // its old one): its checks still pending after a restore, or its
      // l2dsr MAC not yet found. Its
      // entries wait for it, here as in the tables (they were dropped
      // here, so a second restart before its checks passed lost them).
      const BackendSlot* slot = snapshotBackend(snap, v.backend_id);
      const keel_service_key* svc =
          slot && slot->be.service_id < services.size() ? services[slot->be.service_id] : nullptr;
      if (!slot || slot->be.gen != v.gen || !svc) {
        ++rep.skippedStale;
        return;
      }
      const uint64_t age = nowNs > v.last_seen_ns ? nowNs - v.last_seen_ns : 0;
      const uint64_t idle = snapshotIdleNs(snap, key.proto);
      if (idle != 0 && age > idle) {
        ++rep.skippedExpired;
        return;
      }
      ConnRecord r{};
      r.flow = key;
      r.service = *svc;
      std::memcpy(r.realAddr, slot->be.addr, sizeof r.realAddr);
      r.realFamily = slot->be.family;
      r.worker = w;
      r.ageNs = age;
      out.records.push_back(r);
    });
  }
  rep.saved = out.records.size();
  if (report) *report = rep;
  return out;
}

namespace {

// Byte order of a file's integers: versions 3 and 2 little-endian, version
// 1 the order of the machine that wrote it (read only on a machine like it).
enum class Order { kLittle, kNative };

// Little-endian on disk, through glibc's <endian.h> conversions.
void put32(uint8_t* p, uint32_t v) {
  v = htole32(v);
  std::memcpy(p, &v, sizeof v);
}
void put64(uint8_t* p, uint64_t v) {
  v = htole64(v);
  std::memcpy(p, &v, sizeof v);
}
uint32_t get32(const uint8_t* p, Order o) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return o == Order::kNative ? v : le32toh(v);
}
uint64_t get64(const uint8_t* p, Order o) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return o == Order::kNative ? v : le64toh(v);
}

// The offsets of conn_persist.h's layout.
namespace at {
constexpr size_t kVersion = 8, kEntrySize = 12, kWorkers = 16, kSpread = 20, kEntries = 24, kSavedAt = 32;
constexpr size_t kFlow = 0, kService = 40, kRealAddr = 60, kRealFamily = 76, kWorker = 80, kAge = 88;
}  // namespace at
static_assert(sizeof(keel_flow_key) == at::kService - at::kFlow &&
                  sizeof(keel_service_key) == at::kRealAddr - at::kService &&
                  sizeof(ConnRecord::realAddr) == at::kRealFamily - at::kRealAddr &&
                  at::kAge + 8 == ConnFile::kEntrySize,
              "the keys and the address are stored as their bytes");

void encodeRecord(const ConnRecord& r, uint8_t* p) {
  std::memset(p, 0, ConnFile::kEntrySize);
  std::memcpy(p + at::kFlow, &r.flow, sizeof r.flow);
  std::memcpy(p + at::kService, &r.service, sizeof r.service);
  std::memcpy(p + at::kRealAddr, r.realAddr, sizeof r.realAddr);
  p[at::kRealFamily] = r.realFamily;
  put32(p + at::kWorker, r.worker);
  put64(p + at::kAge, r.ageNs);
}

void decodeRecord(const uint8_t* p, Order o, ConnRecord* r) {
  std::memcpy(&r->flow, p + at::kFlow, sizeof r->flow);
  std::memcpy(&r->service, p + at::kService, sizeof r->service);
  std::memcpy(r->realAddr, p + at::kRealAddr, sizeof r->realAddr);
  r->realFamily = p[at::kRealFamily];
  r->worker = get32(p + at::kWorker, o);
  r->ageNs = get64(p + at::kAge, o);
}

struct Header {
  uint32_t version = 0;
  Order order = Order::kLittle;
  uint32_t workers = 0;
  uint32_t spread = 0;
  uint64_t entries = 0;
  uint64_t savedAtNs = 0;
};

// The header's 40 bytes.
Status parseHeader(const uint8_t* p, Header* h) {
  if (std::memcmp(p, ConnFile::kMagic, sizeof ConnFile::kMagic) != 0)
    return Status::error("not a keel conntrack file (bad magic)");
  const uint32_t version = get32(p + at::kVersion, Order::kLittle);
  if (version == ConnFile::kVersion || version == ConnFile::kNoSeedsVersion) {
    h->version = version;
    h->order = Order::kLittle;
  } else if (get32(p + at::kVersion, Order::kNative) == ConnFile::kNativeVersion) {
    h->version = ConnFile::kNativeVersion;
    h->order = Order::kNative;
  } else {
    // A version 1 file is in its writer's byte order: one from a machine of
    // the other order reads as 1 << 24.
    const bool swapped1 = version == (ConnFile::kNativeVersion << 24);
    return Status::error("version " + std::to_string(version) + ", this keeld reads versions " +
                         std::to_string(ConnFile::kNativeVersion) + " to " + std::to_string(ConnFile::kVersion) +
                         (swapped1 ? " (a version 1 file from a machine of the other byte order?)" : ""));
  }
  const uint32_t entrySize = get32(p + at::kEntrySize, h->order);
  if (entrySize != ConnFile::kEntrySize)
    return Status::error("entry size " + std::to_string(entrySize) + ", expected " +
                         std::to_string(ConnFile::kEntrySize));
  h->workers = get32(p + at::kWorkers, h->order);
  h->entries = get64(p + at::kEntries, h->order);
  h->savedAtNs = get64(p + at::kSavedAt, h->order);
  h->spread = get32(p + at::kSpread, h->order);  // 0 in version 1 (reserved, written zero)
  if (h->workers == 0) return Status::error("worker count 0");
  return Status::ok();
}

// The entries' bytes, given how many follow the header (and the seeds).
Status checkBodySize(const Header& h, uint64_t body) {
  if (body % ConnFile::kEntrySize != 0 || body / ConnFile::kEntrySize != h.entries)
    return Status::error("truncated or padded: the header says " + std::to_string(h.entries) +
                         " entries, the file holds " + std::to_string(body) +
                         " bytes for them (entries are " + std::to_string(ConnFile::kEntrySize) + " bytes)");
  return Status::ok();
}

// Version 3's seeds section from f, whose `*rest` bytes after the header
// it takes off *rest.
Status readSeeds(FILE* f, const Header& h, uint64_t* rest, SavedConns* out) {
  uint8_t sh[ConnFile::kSeedsHeaderSize];
  if (*rest < sizeof sh || std::fread(sh, sizeof sh, 1, f) != 1)
    return Status::error("truncated: the seeds section is cut short");
  *rest -= sizeof sh;
  const uint32_t n = get32(sh, Order::kLittle), capacity = get32(sh + 4, Order::kLittle);
  if (n == 0) return Status::ok();  // none saved
  if (n != h.workers)
    return Status::error("seeds of " + std::to_string(n) + " tables, the file has " + std::to_string(h.workers) +
                         " workers");
  if (capacity == 0) return Status::error("seeds of tables of capacity 0");
  // Bounded by the file's size before anything is allocated.
  if (*rest / ConnFile::kSeedsSize < n)
    return Status::error("truncated: the seeds of " + std::to_string(n) + " tables are cut short");
  std::vector<uint8_t> buf(static_cast<size_t>(n) * ConnFile::kSeedsSize);
  if (std::fread(buf.data(), buf.size(), 1, f) != 1) return Status::error("read failed or the file changed while read");
  *rest -= buf.size();
  out->seeds.resize(n);
  for (uint32_t i = 0; i < n; ++i)
    for (size_t j = 0; j < out->seeds[i].size(); ++j)
      out->seeds[i][j] = get64(&buf[i * ConnFile::kSeedsSize + 8 * j], Order::kLittle);
  out->capacity = capacity;
  return Status::ok();
}

Status checkRecords(const std::vector<ConnRecord>& records, uint32_t workers) {
  for (size_t i = 0; i < records.size(); ++i) {
    const ConnRecord& r = records[i];
    std::string what;
    if (r.worker >= workers)
      what = "worker " + std::to_string(r.worker) + " of " + std::to_string(workers);
    else if (!familyOk(r.flow.family) || !familyOk(r.service.family) || !familyOk(r.realFamily) ||
             r.flow.family != r.service.family)
      what = "families flow " + std::to_string(r.flow.family) + " service " + std::to_string(r.service.family) +
             " real " + std::to_string(r.realFamily);
    else if (r.flow.pad[0] != 0 || r.flow.pad[1] != 0)
      what = "flow key padding not zero (no packet's key would match it)";
    if (!what.empty()) return Status::error("entry " + std::to_string(i) + " is malformed (" + what + ")");
  }
  return Status::ok();
}

// Entries go through a buffer of this many at a time: a file may hold
// millions, and neither side keeps a second whole copy.
constexpr size_t kChunk = 1024;

// The one writer of the format: the header, the seeds, then the entries.
bool writeConns(FILE* f, const SavedConns& saved) {
  uint8_t h[ConnFile::kHeaderSize] = {};
  std::memcpy(h, ConnFile::kMagic, sizeof ConnFile::kMagic);
  put32(h + at::kVersion, ConnFile::kVersion);
  put32(h + at::kEntrySize, ConnFile::kEntrySize);
  put32(h + at::kWorkers, saved.workers);
  put32(h + at::kSpread, saved.spread);
  put64(h + at::kEntries, saved.records.size());
  put64(h + at::kSavedAt, saved.savedAtNs);
  if (std::fwrite(h, sizeof h, 1, f) != 1) return false;
  // A set of seeds per worker, or none (a section of 8 bytes saying so).
  const bool seeds = saved.capacity != 0 && saved.workers != 0 && saved.seeds.size() == saved.workers;
  std::vector<uint8_t> sb(ConnFile::kSeedsHeaderSize + (seeds ? saved.seeds.size() * ConnFile::kSeedsSize : 0));
  put32(&sb[0], seeds ? saved.workers : 0);
  put32(&sb[4], seeds ? saved.capacity : 0);
  for (size_t i = 0; seeds && i < saved.seeds.size(); ++i)
    for (size_t j = 0; j < saved.seeds[i].size(); ++j)
      put64(&sb[ConnFile::kSeedsHeaderSize + i * ConnFile::kSeedsSize + 8 * j], saved.seeds[i][j]);
  if (std::fwrite(sb.data(), sb.size(), 1, f) != 1) return false;
  std::vector<uint8_t> buf(kChunk * ConnFile::kEntrySize);
  for (size_t i = 0; i < saved.records.size(); i += kChunk) {
    const size_t n = std::min(kChunk, saved.records.size() - i);
    for (size_t j = 0; j < n; ++j) encodeRecord(saved.records[i + j], &buf[j * ConnFile::kEntrySize]);
    if (std::fwrite(buf.data(), ConnFile::kEntrySize, n, f) != n) return false;
  }
  return true;
}

// The one reader: `size` bytes from f.
Status readConns(FILE* f, uint64_t size, SavedConns* out) {
  *out = SavedConns{};
  uint8_t hb[ConnFile::kHeaderSize];
  if (size < sizeof hb || std::fread(hb, sizeof hb, 1, f) != 1)
    return Status::error("truncated: " + std::to_string(size) + " bytes, the header alone is " +
                         std::to_string(sizeof hb));
  Header h;
  if (Status s = parseHeader(hb, &h); !s) return s;
  uint64_t rest = size - sizeof hb;
  SavedConns seeds;
  if (h.version == ConnFile::kVersion)
    if (Status s = readSeeds(f, h, &rest, &seeds); !s) return s;
  if (Status s = checkBodySize(h, rest); !s) return s;
  std::vector<ConnRecord> records(h.entries);  // the file's size bounds it (checkBodySize)
  std::vector<uint8_t> buf(kChunk * ConnFile::kEntrySize);
  for (size_t i = 0; i < records.size(); i += kChunk) {
    const size_t n = std::min(kChunk, records.size() - i);
    if (std::fread(buf.data(), ConnFile::kEntrySize, n, f) != n)
      return Status::error("read failed or the file changed while read");
    for (size_t j = 0; j < n; ++j) decodeRecord(&buf[j * ConnFile::kEntrySize], h.order, &records[i + j]);
  }
  if (std::fgetc(f) != EOF || std::ferror(f)) return Status::error("read failed or the file changed while read");
  if (Status s = checkRecords(records, h.workers); !s) return s;
  out->workers = h.workers;
  out->spread = h.spread;
  out->savedAtNs = h.savedAtNs;
  out->capacity = seeds.capacity;
  out->seeds = std::move(seeds.seeds);
  out->records = std::move(records);
  return Status::ok();
}

}  // namespace

std::string encodeConns(const SavedConns& saved) {
  char* buf = nullptr;
  size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  if (!f) throw std::bad_alloc();
  const bool ok = writeConns(f, saved);
  std::fclose(f);
  std::string out(buf, len);
  std::free(buf);
  if (!ok) throw std::bad_alloc();
  return out;
}

Status decodeConns(const std::string& bytes, SavedConns* out) {
  *out = SavedConns{};
  if (bytes.empty()) return readConns(nullptr, 0, out);  // fmemopen refuses a zero-size buffer
  FILE* f = fmemopen(const_cast<char*>(bytes.data()), bytes.size(), "rb");
  if (!f) return Status::error("fmemopen: " + errnoText(errno));
  Status s = readConns(f, bytes.size(), out);
  std::fclose(f);
  return s;
}

Status writeConnFile(const std::string& path, const SavedConns& saved) {
  // 0600: the file lists the clients' addresses.
  return writeFileReplacing(path, 0600, [&](FILE* f) { return writeConns(f, saved); });
}

Status consumeConnFile(const std::string& path, SavedConns* out, bool* found) {
  *out = SavedConns{};
  *found = false;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    const int err = errno;
    if (err == ENOENT) return Status::ok();
    *found = true;
    std::remove(path.c_str());
    return Status::error(path + ": " + errnoText(err));
  }
  *found = true;
  struct stat st {};
  Status s = fstat(fileno(f), &st) != 0 ? Status::error("stat: " + errnoText(errno))
                                         : readConns(f, static_cast<uint64_t>(st.st_size), out);
  std::fclose(f);
  // Consumed before it is used: a crash after this start must not load it again.
  std::remove(path.c_str());
  if (!s) return Status::error(path + ": " + s.message());
  return Status::ok();
}

ConnRestoreReport restoreConns(const Snapshot& snap, const std::vector<ConnTable*>& tables,
                               const SavedConns& saved, uint64_t nowNs, uint64_t wallNowNs, uint32_t spread) {
  ConnRestoreReport rep;
  rep.workers = static_cast<uint32_t>(tables.size());
  rep.savedWorkers = saved.workers;
  if (tables.empty() || saved.workers == 0) {
    rep.notRestored = "no workers (" + std::to_string(saved.workers) + " saved the file, this plane has " +
                      std::to_string(tables.size()) + ")";
    return rep;
  }
  // Another count, or another port spreading them: RSS puts the flows on
  // other queues, in a way keeld cannot compute, so each entry goes into
  // every table (conn_persist.h).
  rep.spreadChanged = saved.spread != 0 && spread != 0 && saved.spread != spread;
  rep.copiedToAll = saved.workers != tables.size() || rep.spreadChanged;

  // Each entry back into the bucket it was saved from: the tables take the
  // seeds their workers' tables had (conn_persist.h). Where that cannot
  // be, they keep the seeds they drew and entries may land in full buckets.
  if (rep.copiedToAll) {
    rep.seedsNotRestored = "the entries go into every worker's table";
  } else if (saved.seeds.size() != tables.size() || saved.capacity == 0) {
    rep.seedsNotRestored = "the file has no hash seeds (saved by a keeld before 2026-12-06)";
  } else if (const auto other = std::find_if(tables.begin(), tables.end(),
                                             [&](const ConnTable* t) { return t->capacity() != saved.capacity; });
             other != tables.end()) {
    rep.seedsNotRestored = "the tables hold " + std::to_string((*other)->capacity()) +
                           " flows of a family each, the saving ones " + std::to_string(saved.capacity);
  } else if (std::any_of(tables.begin(), tables.end(), [](const ConnTable* t) { return t->occupied() != 0; })) {
    rep.seedsNotRestored = "a table already holds entries";
  } else {
    for (size_t i = 0; i < tables.size(); ++i) tables[i]->reseed(saved.seeds[i]);  // empty: cannot refuse
    rep.seedsRestored = true;
  }

  // The current backends by service, family and address; a VALID one wins
  // over an invalidated slot at the same address.
  std::map<RealKey, uint32_t> reals;
  for (uint32_t id = 0; id < snap.maxBackends; ++id) {
    const BackendSlot* slot = snapshotBackend(snap, id);
    if (!familyOk(slot->be.family)) continue;  // never written
    auto [it, inserted] = reals.try_emplace(realKey(slot->be.service_id, slot->be.family, slot->be.addr), id);
    if (!inserted && (slot->be.flags & KEEL_BE_F_VALID)) it->second = id;
  }

  // With copies in every table, one entry per flow: the most recently seen
  // of the file's copies (a file saved after a copying restore holds one
  // per worker, and only the flow's own worker kept its copy fresh). Chosen
  // before the checks below, so a newest copy that no longer counts (its
  // real down or gone) is not replaced by an older copy naming another
  // real. With the same count each entry goes back to its own table, which
  // held the flow once: nothing to choose.
  std::vector<const ConnRecord*> records;
  records.reserve(saved.records.size());
  for (const ConnRecord& r : saved.records) records.push_back(&r);
  if (rep.copiedToAll) {
    struct Copy {
      uint64_t digest;  // flowDigest(r->flow): a compare rarely reads the keys
      const ConnRecord* r;
    };
    std::vector<Copy> copies;
    copies.reserve(records.size());
    for (const ConnRecord* r : records) copies.push_back(Copy{flowDigest(r->flow), r});
    std::sort(copies.begin(), copies.end(), [](const Copy& a, const Copy& b) {
      if (a.digest != b.digest) return a.digest < b.digest;
      if (int c = std::memcmp(&a.r->flow, &b.r->flow, sizeof a.r->flow); c != 0) return c < 0;
      return a.r->ageNs < b.r->ageNs;
    });
    records.clear();
    for (size_t i = 0; i < copies.size(); ++i) {
      const bool sameFlow = i > 0 && copies[i].digest == copies[i - 1].digest &&
                            std::memcmp(&copies[i].r->flow, &copies[i - 1].r->flow, sizeof copies[i].r->flow) == 0;
      if (sameFlow)
        ++rep.skippedDuplicate;
      else
        records.push_back(copies[i].r);
    }
  }

  // The entries still usable, with the table they go into (every one: kAll).
  constexpr uint32_t kAll = UINT32_MAX;
  struct Entry {
    const ConnRecord* r;
    uint64_t digest;  // flowDigest(r->flow), for a deterministic order among equal ages
    uint32_t table;
    uint32_t backendId;
    uint32_t gen;
    uint64_t age;
    bool realValid;
  };
  std::vector<Entry> entries;
  entries.reserve(records.size());
  const uint64_t gap = wallNowNs > saved.savedAtNs ? wallNowNs - saved.savedAtNs : 0;
  for (const ConnRecord* rp : records) {
    const ConnRecord& r = *rp;
    const uint64_t age = r.ageNs + gap;
    const uint64_t idle = snapshotIdleNs(snap, r.flow.proto);
    if (idle != 0 && age > idle) {
      ++rep.skippedExpired;
      continue;
    }
    const keel_service_value* svc = snapshotFindService(snap, r.service);
    if (!svc) {
      ++rep.skippedNoService;
      continue;
    }
    auto it = reals.find(realKey(svc->id, r.realFamily, r.realAddr));
    if (it == reals.end()) {
      ++rep.skippedNoReal;
      continue;
    }
    const BackendSlot* slot = snapshotBackend(snap, it->second);
    if (!rep.copiedToAll && r.worker >= tables.size()) continue;  // decodeConns refuses such files
    // A real that is not VALID yet (its checks have not passed since a
    // stop longer than fall x interval, its l2dsr MAC not found yet) keeps
    // its entries at its generation: a packet before the real is VALID is
    // picked from the ring (and its entry rewritten), one after it goes
    // back to the real, as for a real that stayed up under a keeld that
    // never stopped. Should its checks fail instead, it stays down at that
    // generation (it was never up here, so no change bumps it) and the
    // entries are followed by no packet. Skipping them reset every flow of
    // a drained real whose checks were not kept.
    entries.push_back(Entry{&r, flowDigest(r.flow), rep.copiedToAll ? kAll : r.worker, it->second, slot->be.gen, age,
                            (slot->be.flags & KEEL_BE_F_VALID) != 0});
  }

  // Least recently seen first: an insert into a full bucket evicts its
  // least recently seen way, so where a bucket overflows the entries that
  // stay are its most recently seen, whatever order the file had.
  // (Ties by digest, for one order whatever the sort does with equals.)
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.age != b.age ? a.age > b.age : a.digest < b.digest;
  });
  auto forTables = [&](const Entry& e, auto&& f) {
    if (e.table == kAll) {
      for (ConnTable* t : tables) f(*t);
    } else {
      f(*tables[e.table]);
    }
  };
  for (const Entry& e : entries)
    forTables(e, [&](ConnTable& t) {
      t.insert(e.r->flow, t.hashOf(e.r->flow), e.backendId, e.gen, nowNs > e.age ? nowNs - e.age : 1);
    });

  // What the tables kept: an entry counts as loaded if every table it went
  // into still holds it (a later insert may have evicted it).
  for (const Entry& e : entries) {
    bool kept = true;
    forTables(e, [&](ConnTable& t) {
      keel_ct_value v;
      kept = kept && t.peek(e.r->flow, nowNs, 0, &v);
    });
    ++(kept ? rep.loaded : rep.lostNoRoom);
    if (kept && !e.realValid) ++rep.loadedRealDown;
  }
  rep.restored = true;
  return rep;
}

}  // namespace keel::dpdk
