// SPDX-License-Identifier: Apache-2.0
#include "dataplane/dpdk/conn_persist.h"

#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <map>
#include <tuple>
#include <type_traits>

namespace keel::dpdk {

namespace {

static_assert(std::is_trivially_copyable_v<ConnRecord> && std::is_trivially_copyable_v<ConnFileHeader>,
              "written and read as bytes");

bool familyOk(uint8_t f) { return f == KEEL_AF_INET || f == KEEL_AF_INET6; }

// A backend's identity within the next keeld: its service's id, family and address.
using RealKey = std::tuple<uint32_t, uint8_t, std::array<uint32_t, 4>>;

RealKey realKey(uint32_t serviceId, uint8_t family, const uint32_t addr[4]) {
  return {serviceId, family, {addr[0], addr[1], addr[2], addr[3]}};
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
  uint64_t occupied = 0;
  for (const ConnTable* t : tables) occupied += t->occupied();
  out.records.reserve(occupied);
  for (uint32_t w = 0; w < tables.size(); ++w) {
    tables[w]->forEach([&](const keel_flow_key& key, const keel_ct_value& v) {
      // The rule the worker applies on a hit (worker_path.cc): a valid real
      // of its service at the generation the entry was picked with.
      const BackendSlot* slot = snapshotBackend(snap, v.backend_id);
      const keel_service_key* svc =
          slot && slot->be.service_id < services.size() ? services[slot->be.service_id] : nullptr;
      if (!slot || !(slot->be.flags & KEEL_BE_F_VALID) || slot->be.gen != v.gen || !svc) {
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

// The header, given how many bytes follow it.
Status checkHeader(const ConnFileHeader& h, uint64_t body) {
  if (std::memcmp(h.magic, kConnFileMagic, sizeof h.magic) != 0) return Status::error("not a keel conntrack file (bad magic)");
  if (h.version != kConnFileVersion)
    return Status::error("version " + std::to_string(h.version) + ", this keeld reads version " +
                         std::to_string(kConnFileVersion));
  if (h.entrySize != sizeof(ConnRecord))
    return Status::error("entry size " + std::to_string(h.entrySize) + ", expected " +
                         std::to_string(sizeof(ConnRecord)));
  if (h.workers == 0) return Status::error("worker count 0");
  if (body % sizeof(ConnRecord) != 0 || body / sizeof(ConnRecord) != h.entries)
    return Status::error("truncated or padded: the header says " + std::to_string(h.entries) + " entries (" +
                         std::to_string(h.entries * sizeof(ConnRecord)) + " bytes), the file holds " +
                         std::to_string(body) + " bytes after the header");
  return Status::ok();
}

Status checkRecords(const std::vector<ConnRecord>& records, uint32_t workers) {
  for (size_t i = 0; i < records.size(); ++i) {
    const ConnRecord& r = records[i];
    if (r.worker >= workers || !familyOk(r.flow.family) || !familyOk(r.service.family) ||
        !familyOk(r.realFamily) || r.flow.family != r.service.family)
      return Status::error("entry " + std::to_string(i) + " is malformed (worker " + std::to_string(r.worker) +
                           " of " + std::to_string(workers) + ", families flow " +
                           std::to_string(r.flow.family) + " service " + std::to_string(r.service.family) +
                           " real " + std::to_string(r.realFamily) + ")");
  }
  return Status::ok();
}

// The one writer of the format: the header, then the entries.
bool writeConns(FILE* f, const SavedConns& saved) {
  ConnFileHeader h{};
  std::memcpy(h.magic, kConnFileMagic, sizeof h.magic);
  h.version = kConnFileVersion;
  h.entrySize = sizeof(ConnRecord);
  h.workers = saved.workers;
  h.entries = saved.records.size();
  h.savedAtNs = saved.savedAtNs;
  const size_t n = saved.records.size();
  return std::fwrite(&h, sizeof h, 1, f) == 1 &&
         (n == 0 || std::fwrite(saved.records.data(), sizeof(ConnRecord), n, f) == n);
}

// The one reader: `size` bytes from f. The entries are read straight into
// their vector (no second copy of a file that may be tens of MiB).
Status readConns(FILE* f, uint64_t size, SavedConns* out) {
  *out = SavedConns{};
  ConnFileHeader h{};
  if (size < sizeof h || std::fread(&h, sizeof h, 1, f) != 1)
    return Status::error("truncated: " + std::to_string(size) + " bytes, the header alone is " +
                         std::to_string(sizeof h));
  if (Status s = checkHeader(h, size - sizeof h); !s) return s;
  std::vector<ConnRecord> records(h.entries);
  if ((h.entries != 0 && std::fread(records.data(), sizeof(ConnRecord), records.size(), f) != records.size()) ||
      std::fgetc(f) != EOF || std::ferror(f))
    return Status::error("read failed or the file changed while read");
  if (Status s = checkRecords(records, h.workers); !s) return s;
  out->workers = h.workers;
  out->savedAtNs = h.savedAtNs;
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
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return Status::error(tmp + ": " + errnoText(errno));
  const bool written = writeConns(f, saved);
  const int werr = errno;
  if (std::fclose(f) != 0 || !written) {
    std::remove(tmp.c_str());
    return Status::error(tmp + ": write failed: " + errnoText(written ? errno : werr));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return Status::error(path + ": rename from " + tmp + ": " + errnoText(err));
  }
  return Status::ok();
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
                               const SavedConns& saved, uint64_t nowNs, uint64_t wallNowNs) {
  ConnRestoreReport rep;
  if (saved.workers != tables.size()) {
    rep.notRestored = "the file was saved by " + std::to_string(saved.workers) + " workers, this plane has " +
                      std::to_string(tables.size()) +
                      " (RSS would put the flows on other queues; their entries would not be found)";
    return rep;
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
  const uint64_t gap = wallNowNs > saved.savedAtNs ? wallNowNs - saved.savedAtNs : 0;
  for (const ConnRecord& r : saved.records) {
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
    if (!(slot->be.flags & KEEL_BE_F_VALID)) {
      ++rep.skippedDown;
      continue;
    }
    ConnTable& t = *tables[r.worker];
    t.insert(r.flow, t.hashOf(r.flow), it->second, slot->be.gen, nowNs > age ? nowNs - age : 1);
    ++rep.loaded;
  }
  rep.restored = true;
  return rep;
}

}  // namespace keel::dpdk
