// SPDX-License-Identifier: Apache-2.0
// Per-worker connection table: flow key -> (backend id, generation).
//
// Why this shape rather than rte_hash: each worker owns its table (RSS keeps
// a flow on one queue, so one worker) and is its only writer, so no locks
// are needed (others only read it, below: storeRelaxed);
// the table is allocated once at start-up and never grows; and eviction is
// ours to choose. rte_hash would need its own aging pass and a writer lock or
// lock-free extendable buckets; neither buys anything for a single-writer
// table.
//
// Two bucketised open-addressing tables of the same capacity, one per
// family: an IPv4 flow needs a 16-byte key, so its entry is 32 bytes (two
// per cache line), while an IPv6 entry is one line (key 40 B + value 16 B +
// hash 4 B). Half-size IPv4 entries halve the memory and the pages an IPv4
// workload touches; that page count, not the flow count, set the cost of an
// established flow (docs/dpdk.md, Measurements). The table's own hash (hashOf) picks a
// bucket of kWays entries. An insert takes the first empty way, else evicts
// the way with the oldest last_seen (LRU-ish; an expired way is among the
// oldest), so a full table degrades to re-picking the coldest flows from the
// ring - the same answer for them unless the ring changed. Entries are never
// cleared, so the live ways of a bucket are always a prefix: a lookup stops
// at the first empty way, and in a table with room nearly every flow is
// found in the bucket's first two lines, the lines the worker prefetches.
#pragma once

#include <sys/mman.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <random>

#include "keel/flow.h"
#include "keel/maps_abi.h"

namespace keel::dpdk {

// A prefetch the compiler keeps. GCC 12 -O2 dropped __builtin_prefetch when
// its address was chosen by a condition (the family dispatch below): the
// worker then ran with no prefetch at all. The same form as DPDK's
// rte_prefetch0.
inline void prefetchLine(const void* p) {
#if defined(__x86_64__) || defined(__i386__)
  asm volatile("prefetcht0 %[p]" : : [p] "m"(*static_cast<const volatile char*>(p)));
#else
  __builtin_prefetch(p);
#endif
}

// Whether two 16-byte regions are equal, as two 8-byte compares (what
// memcmp compiles to as well). Callers pass fields read in place or values
// kept in registers: a region just built with narrower stores would make the
// 8-byte loads wait on a failed store-to-load forwarding.
template <typename A, typename B>
inline bool equal16(const A& x, const B& y) {
  static_assert(sizeof(A) == 16 && sizeof(B) == 16, "two 16-byte values");
  uint64_t a[2], b[2];
  std::memcpy(a, &x, sizeof a);
  std::memcpy(b, &y, sizeof b);
  return ((a[0] ^ b[0]) | (a[1] ^ b[1])) == 0;
}

// The flow key's 8-byte word i, read in place (a copy of the key went
// through the stack). On the supported little-endian targets words 0-1 are
// the source, 2-3 the destination, 4 the ports, protocol, family and pad.
inline uint64_t keyWord(const keel_flow_key& k, size_t i) {
  static_assert(sizeof k == 40 && offsetof(keel_flow_key, dst) == 16 && offsetof(keel_flow_key, sport) == 32,
                "five 8-byte words: src, dst, ports/proto/family/pad");
  uint64_t w;
  std::memcpy(&w, reinterpret_cast<const char*>(&k) + 8 * i, sizeof w);
  return w;
}

// A table's ways are written by their worker alone but may be read by other
// threads (ConnTable::peek(): the other workers, for ICMP errors, and the
// control thread, for keelctl lookup; docs/dpdk.md). So every store to a
// way, and every read from another thread, is a relaxed atomic access of a
// naturally aligned word: plain moves on x86, and no data race. Nothing
// orders a way's words for such a reader: it may see a way half rewritten,
// e.g. the key of the flow an insert is writing with the backend and
// generation of the flow it evicts. Readers use what they read only after
// the checks a hit gets (the backend is VALID, of this service, at that
// generation), so the worst a torn read does is name another valid real of
// the same service, once.
template <typename T, typename V>
inline void storeRelaxed(T& field, V value) {
  static_assert(sizeof(T) == sizeof(V), "a field's own width");
  __atomic_store_n(&field, static_cast<T>(value), __ATOMIC_RELAXED);
}
template <typename T>
inline T loadRelaxed(const T& field) {
  return __atomic_load_n(&field, __ATOMIC_RELAXED);
}
// n 8-byte words from `from` to `to`, relaxed; both 8-byte aligned.
inline void storeWordsRelaxed(void* to, const void* from, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    uint64_t w;
    std::memcpy(&w, static_cast<const char*>(from) + 8 * i, sizeof w);
    __atomic_store_n(static_cast<uint64_t*>(to) + i, w, __ATOMIC_RELAXED);
  }
}
// n 8-byte words read relaxed from `from` into `to`; both 8-byte aligned.
inline void loadWordsRelaxed(void* to, const void* from, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const uint64_t w = __atomic_load_n(static_cast<const uint64_t*>(from) + i, __ATOMIC_RELAXED);
    std::memcpy(static_cast<char*>(to) + 8 * i, &w, sizeof w);
  }
}
// Whether n 8-byte words at `a` (read relaxed) equal those at `b`.
inline bool wordsEqualRelaxed(const void* a, const void* b, size_t n) {
  uint64_t diff = 0;
  for (size_t i = 0; i < n; ++i) {
    uint64_t w;
    std::memcpy(&w, static_cast<const char*>(b) + 8 * i, sizeof w);
    diff |= __atomic_load_n(static_cast<const uint64_t*>(a) + i, __ATOMIC_RELAXED) ^ w;
  }
  return diff == 0;
}

// IPv4: the 5-tuple in 16 bytes, compared whole; no stored hash needed.
struct ConnEntry4 {
  struct Key {
    uint32_t src, dst;
    uint16_t sport, dport;
    uint8_t proto, family;
    uint16_t pad;
  } key;
  keel_ct_value value;  // last_seen_ns == 0: empty

  static Key compact(const keel_flow_key& k) { return Key{k.src[0], k.dst[0], k.sport, k.dport, k.proto, k.family, 0}; }
  // The full flow key back (address words 1-3 are zero for IPv4, flow.h).
  keel_flow_key flowKey() const {
    keel_flow_key k{};
    k.src[0] = key.src;
    k.dst[0] = key.dst;
    k.sport = key.sport;
    k.dport = key.dport;
    k.proto = key.proto;
    k.family = key.family;
    return k;
  }
  // flowKey() for a reader that does not own the table (ConnWays::scan).
  keel_flow_key flowKeyRelaxed() const {
    ConnEntry4 copy;
    loadWordsRelaxed(&copy.key, &key, 2);
    return copy.flowKey();
  }
  using Probe = Key;
  static Probe probe(const keel_flow_key& k, uint32_t) { return compact(k); }
  // With find() inlined GCC keeps the probe in registers; as a call it
  // stored the probe to the stack in 4- and 2-byte pieces (see equal16).
  bool matches(const Probe& p) const { return equal16(key, p); }
  bool matchesRelaxed(const Probe& p) const { return wordsEqualRelaxed(&key, &p, 2); }
  void store(const Probe& p) { storeWordsRelaxed(&key, &p, 2); }
};
static_assert(sizeof(ConnEntry4) == 32, "two IPv4 entries per cache line");

// IPv6: the full key and its hash (compared first, so a bucket scan rarely
// compares 40 bytes).
struct alignas(64) ConnEntry6 {
  keel_flow_key key;
  keel_ct_value value;  // last_seen_ns == 0: empty
  uint32_t hash;
  uint32_t pad;

  struct Probe {
    const keel_flow_key* key;
    uint32_t hash;
  };
  static Probe probe(const keel_flow_key& k, uint32_t hash) { return Probe{&k, hash}; }
  bool matches(const Probe& p) const { return hash == p.hash && std::memcmp(&key, p.key, sizeof key) == 0; }
  bool matchesRelaxed(const Probe& p) const {
    return loadRelaxed(hash) == p.hash && wordsEqualRelaxed(&key, p.key, sizeof key / 8);
  }
  const keel_flow_key& flowKey() const { return key; }
  keel_flow_key flowKeyRelaxed() const {
    keel_flow_key k;
    loadWordsRelaxed(&k, &key, sizeof k / 8);
    return k;
  }
  void store(const Probe& p) {
    storeWordsRelaxed(&key, p.key, sizeof key / 8);
    storeRelaxed(hash, p.hash);
  }
};
static_assert(sizeof(ConnEntry6) == 64, "one cache line per IPv6 entry");

// Where a connection table's memory comes from. The DPDK plane passes EAL
// memory (rte_zmalloc_socket: on 2 MiB hugepages in production, on the
// worker's NUMA socket); the default, for tests and tools without EAL, is
// the heap. zalloc returns zeroed memory aligned to `align`, or null.
struct ConnMemory {
  void* (*zalloc)(size_t bytes, size_t align, int socket);
  void (*release)(void* p);
  int socket;
};

// The heap: 2 MiB-aligned and advised onto transparent huge pages (which
// in a guest whose memory the host backs with small pages barely helps;
// docs/dpdk.md, Measurements).
inline void* heapZalloc(size_t bytes, size_t align, int) {
  bytes = (bytes + align - 1) / align * align;
  void* mem = std::aligned_alloc(align, bytes);
  if (!mem) return nullptr;
  madvise(mem, bytes, MADV_HUGEPAGE);
  std::memset(mem, 0, bytes);
  return mem;
}
inline void heapRelease(void* p) { std::free(p); }
inline constexpr ConnMemory kHeapConnMemory{heapZalloc, heapRelease, -1};

// One family's table: buckets of kWays entries.
template <typename Entry>
class ConnWays {
 public:
  static constexpr uint32_t kWays = 4;

  // capacity is rounded up to a power of two number of buckets.
  static uint32_t bucketsFor(uint32_t capacity) {
    uint32_t buckets = 1;
    while (buckets * kWays < capacity) buckets <<= 1;
    return buckets;
  }
  // The bytes a table of this capacity takes.
  static uint64_t bytesFor(uint32_t capacity) { return uint64_t{bucketsFor(capacity)} * kWays * sizeof(Entry); }

  ConnWays(uint32_t capacity, const ConnMemory& memory) : entries_(nullptr, Free{memory.release}) {
    const uint32_t buckets = bucketsFor(capacity);
    mask_ = buckets - 1;
    // 2 MiB-aligned: with a million entries spread over tens of MiB, every
    // lookup is a cache miss, and on 4 KiB pages a TLB miss (a page walk)
    // on top of it; the cost followed the pages the table spans.
    const size_t huge = 2u << 20;
    void* mem = memory.zalloc(static_cast<size_t>(buckets) * kWays * sizeof(Entry), huge, memory.socket);
    if (!mem) throw std::bad_alloc();  // start-up only, never on the packet path
    entries_.reset(static_cast<Entry*>(mem));
  }

  uint32_t capacity() const { return (mask_ + 1) * kWays; }

  keel_ct_value* find(const keel_flow_key& key, uint32_t hash, uint64_t nowNs, uint64_t idleNs) {
    Entry* b = bucket(hash);
    const typename Entry::Probe probe = Entry::probe(key, hash);
    for (uint32_t w = 0; w < kWays; ++w) {
      Entry& e = b[w];
      if (e.value.last_seen_ns == 0) return nullptr;  // ways fill in order: the rest are empty
      if (!e.matches(probe)) continue;
      // Seen after nowNs: live (as peek() and bpf/lib/conntrack.h read it).
      if (idleNs != 0 && e.value.last_seen_ns < nowNs && nowNs - e.value.last_seen_ns > idleNs) return nullptr;
      return &e.value;
    }
    return nullptr;
  }

  // liveNs: an evicted entry of another flow seen within it is counted as
  // a live flow evicted (liveEvictions()); 0: count nothing (a restore).
  // Returns whether the key's own way was there and live (seen within
  // liveNs; with liveNs 0, whether it was there at all): an earlier packet
  // of the flow in the same burst wrote it after this one's find() missed.
  bool insert(const keel_flow_key& key, uint32_t hash, uint32_t backendId, uint32_t gen,
              uint64_t nowNs, uint64_t liveNs = 0) {
    Entry* b = bucket(hash);
    const typename Entry::Probe probe = Entry::probe(key, hash);
    Entry* victim = &b[0];
    bool evicts = true;  // no empty way and not the key's own: the bucket's least recently seen goes
    bool ownLive = false;
    for (uint32_t w = 0; w < kWays; ++w) {
      Entry& e = b[w];
      if (e.value.last_seen_ns == 0 || e.matches(probe)) {  // first empty way, or the key's own
        victim = &e;
        evicts = false;
        const uint64_t seen = e.value.last_seen_ns;
        ownLive = seen != 0 && (liveNs == 0 || nowNs < seen || nowNs - seen <= liveNs);
        break;
      }
      if (e.value.last_seen_ns < victim->value.last_seen_ns) victim = &e;
    }
    // A full bucket evicts its least recently seen flow; if that one was
    // still live (seen within its idle timeout), its next packet is picked
    // from the ring again: the table is too small for the flows it holds
    // (keel_dpdk_conntrack_live_evictions_total). Occupancy cannot tell:
    // ways are never emptied, so it counts every flow ever seen.
    if (evicts && liveNs != 0 && (nowNs < victim->value.last_seen_ns || nowNs - victim->value.last_seen_ns <= liveNs))
      __atomic_store_n(&liveEvictions_, liveEvictions_ + 1, __ATOMIC_RELAXED);
    // Entries are never cleared, so a way once taken stays taken: the count
    // of occupied ways only grows, by one each time an empty way is filled
    // (a key's own way or an evicted one is already counted). Only the
    // owning worker writes it; the control thread reads it relaxed
    // (occupied()) instead of walking the table on a scrape.
    if (victim->value.last_seen_ns == 0) __atomic_store_n(&occupied_, occupied_ + 1, __ATOMIC_RELAXED);
    victim->store(probe);  // the probe already holds what a way stores
    storeRelaxed(victim->value.backend_id, backendId);
    storeRelaxed(victim->value.gen, gen);
    storeRelaxed(victim->value.last_seen_ns, uint64_t{nowNs ? nowNs : 1});  // 0 marks an empty way
    return ownLive;
  }

  // find() for a thread that does not own the table: every read relaxed
  // (see storeRelaxed), a copy of the value out, nothing written. An entry
  // seen later than nowNs (its worker's clock ran ahead of this reader's)
  // is live.
  bool peek(const keel_flow_key& key, uint32_t hash, uint64_t nowNs, uint64_t idleNs, keel_ct_value* out) const {
    const Entry* b = &entries_[static_cast<size_t>(hash & mask_) * kWays];
    const typename Entry::Probe probe = Entry::probe(key, hash);
    for (uint32_t w = 0; w < kWays; ++w) {
      const Entry& e = b[w];
      const uint64_t seen = loadRelaxed(e.value.last_seen_ns);
      if (seen == 0) return false;
      if (!e.matchesRelaxed(probe)) continue;
      if (idleNs != 0 && seen < nowNs && nowNs - seen > idleNs) return false;
      *out = valueRelaxed(e, seen);
      return true;
    }
    return false;
  }

  // forEach() for a thread that does not own the table: every way read as
  // peek() reads it (relaxed, copied out, nothing written), so a way being
  // rewritten may be seen with words of two flows; the caller applies the
  // checks of a hit before it trusts the backend (storeRelaxed).
  template <typename F>
  void scan(F&& f) const {
    for (size_t i = 0; i < capacity(); ++i) {
      const Entry& e = entries_[i];
      const uint64_t seen = loadRelaxed(e.value.last_seen_ns);
      if (seen != 0) f(e.flowKeyRelaxed(), valueRelaxed(e, seen));
    }
  }

  // Pulls a bucket's first two lines toward the cache (ConnTable::prefetch):
  // 128 bytes on one page, so the second line costs no second page walk.
  // That is an IPv4 bucket whole (four 32-byte ways) and ways 0-1 of an
  // IPv6 one (four 64-byte ways). Ways fill in order, so in a table sized
  // for its flows nearly every flow is in them; a flow past them waits for
  // a demand miss. With 100,000 flows in the 1M-entry default ~2 % of IPv4
  // flows sit in an IPv4 bucket's second line (~19 % with 262,144 entries),
  // and ~15 % of IPv6 flows in way 1, ~2 % past it. In-process A/B
  // (docs/dpdk.md, Measurements): IPv4 +1.3 % established for the whole
  // bucket against its first line (+11-13 % with 262,144 entries); IPv6
  // +10-13 % for ways 0-1 against way 0 (`dpdk_bench --ipv6`), where all
  // four lines gave about the same (+9-16 %) for twice the outstanding
  // misses a burst asks for. (When IPv4 entries were 64 bytes, prefetching
  // all four lines of an IPv4 bucket was 2.5x slower: 128 lines a burst
  // overran the core's outstanding-miss slots.)
  void prefetch(uint32_t hash) const {
    static_assert(sizeof(Entry) * kWays >= 128 && sizeof(Entry) * kWays % 128 == 0,
                  "the two lines prefetched are in one bucket, on one page (the table is 2 MiB-aligned)");
    const char* line = reinterpret_cast<const char*>(entries_.get() + static_cast<size_t>(hash & mask_) * kWays);
    prefetchLine(line);
    prefetchLine(line + 64);
  }

  // Occupied ways (live or idle-expired flows), safe to call from any
  // thread while the owning worker inserts: a relaxed load, O(1).
  uint64_t occupied() const { return __atomic_load_n(&occupied_, __ATOMIC_RELAXED); }
  // Live flows evicted by inserts (insert's liveNs): any thread.
  uint64_t liveEvictions() const { return __atomic_load_n(&liveEvictions_, __ATOMIC_RELAXED); }

  // The same by walking the table (tests check occupied() against it).
  size_t countLive() const {
    size_t n = 0;
    for (size_t i = 0; i < capacity(); ++i) n += entries_[i].value.last_seen_ns != 0;
    return n;
  }

  // Calls f(flow key, value) for every occupied way. A walk of the whole
  // table: only while the owning worker does not run (conn_persist.h).
  template <typename F>
  void forEach(F&& f) const {
    for (size_t i = 0; i < capacity(); ++i)
      if (entries_[i].value.last_seen_ns != 0) f(entries_[i].flowKey(), entries_[i].value);
  }

 private:
  Entry* bucket(uint32_t hash) { return &entries_[static_cast<size_t>(hash & mask_) * kWays]; }
  // Way e's value as peek() and scan() copy it out (relaxed loads; `seen`
  // is its last_seen_ns, read first).
  static keel_ct_value valueRelaxed(const Entry& e, uint64_t seen) {
    keel_ct_value v;
    v.backend_id = loadRelaxed(e.value.backend_id);
    v.gen = loadRelaxed(e.value.gen);
    v.last_seen_ns = seen;
    return v;
  }

  struct Free {
    void (*release)(void*);
    void operator()(Entry* p) const { release(p); }
  };
  uint32_t mask_ = 0;
  uint64_t occupied_ = 0;  // written by the owner only, with relaxed atomic stores
  uint64_t liveEvictions_ = 0;  // the same
  std::unique_ptr<Entry[], Free> entries_;
};

class ConnTable {
 public:
  // capacity flows of each family (rounded up to whole buckets). seed 0:
  // hashOf()'s seeds are drawn from std::random_device (keeld); another
  // value derives them from it, so a test can repeat a table's layout.
  explicit ConnTable(uint32_t capacity, const ConnMemory& memory = kHeapConnMemory, uint64_t seed = 0)
      : v4_(capacity, memory), v6_(capacity, memory) {
    std::random_device rd;
    for (uint64_t& s : seed_) {
      if (seed == 0) {
        s = static_cast<uint64_t>(rd()) << 32 | rd();
      } else {  // splitmix64
        uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        s = z ^ (z >> 31);
      }
    }
  }

  // The bytes a table of this capacity takes, both families.
  static uint64_t bytesFor(uint32_t capacity) {
    return ConnWays<ConnEntry4>::bytesFor(capacity) + ConnWays<ConnEntry6>::bytesFor(capacity);
  }

  // hashOf()'s seeds: which bucket each flow lands in, given the capacity.
  using Seeds = std::array<uint64_t, 4>;
  const Seeds& seeds() const { return seed_; }
  // Takes given seeds in place of those drawn at construction, while the
  // table is empty (false, nothing changed, once it holds an entry: its
  // entries would sit in buckets the new seeds no longer look in). A clean
  // restart's load (conn_persist.h, restoreConns) gives each table the
  // seeds its worker's table had at the save: with the same capacity every
  // saved entry then goes back into the bucket it came from, which held
  // it, so none is lost for want of room. A plain write: only while no
  // other thread reads the table (before the workers and keeld's loop run).
  bool reseed(const Seeds& seeds) {
    if (occupied() != 0) return false;
    seed_ = seeds;
    return true;
  }

  uint32_t capacity() const { return v4_.capacity(); }  // per family
  // Ways of both families: the most occupied() can reach, and what the
  // plane reports as its capacity (keel_conntrack_capacity sums it over the
  // workers). An IPv4 flow can take only an IPv4 way, so one family alone
  // fills at most capacity().
  uint64_t totalCapacity() const { return uint64_t{v4_.capacity()} + v6_.capacity(); }

  // The table's own hash of a flow key, which find/insert/prefetch take.
  // Not keel_flow_hash (include/keel/hash.h, MurmurHash3 over ten words,
  // ~50 instructions): that one picks the real and must match XDP bit for
  // bit, but a bucket only needs a well-spread index, so an established
  // flow, which never reaches the ring, need not compute it at all. One
  // 64x64->128-bit multiply per 16 bytes of key, high half xor low half (the
  // "mum" mix of wyhash), keyed by seeds drawn when the table is built, so
  // it is hard for a client to choose flows that share a bucket (a mix,
  // not a keyed hash built to resist that).
  uint32_t hashOf(const keel_flow_key& k) const {
    uint64_t h;
    if (k.family == KEEL_AF_INET6) {
      h = mum(mum(keyWord(k, 0) ^ seed_[0], keyWord(k, 1) ^ seed_[1]) ^ keyWord(k, 4),
              mum(keyWord(k, 2) ^ seed_[2], keyWord(k, 3) ^ seed_[3]));
    } else {
      // Address words 1-3 are zero (flow.h): source, destination, then ports/proto/family.
      const uint64_t addrs = uint64_t{k.src[0]} | uint64_t{k.dst[0]} << 32;
      h = mum(addrs ^ seed_[0], keyWord(k, 4) ^ seed_[1]);
    }
    return static_cast<uint32_t>(h ^ (h >> 32));
  }

  // The live entry for key, or null. An entry idle longer than idleNs (when
  // idleNs != 0) is treated as absent: the flow is re-picked, as in XDP.
  // Inlined into the worker's per-packet path (GCC 12 kept it a call, with
  // the caller's register saves around it).
  [[gnu::always_inline]] keel_ct_value* find(const keel_flow_key& key, uint32_t hash, uint64_t nowNs,
                                             uint64_t idleNs) {
    return key.family == KEEL_AF_INET6 ? v6_.find(key, hash, nowNs, idleNs)
                                       : v4_.find(key, hash, nowNs, idleNs);
  }

  // Writes key -> (backend, gen), reusing the key's own way if present;
  // liveNs and the result as ConnWays::insert.
  bool insert(const keel_flow_key& key, uint32_t hash, uint32_t backendId, uint32_t gen,
              uint64_t nowNs, uint64_t liveNs = 0) {
    if (key.family == KEEL_AF_INET6) return v6_.insert(key, hash, backendId, gen, nowNs, liveNs);
    return v4_.insert(key, hash, backendId, gen, nowNs, liveNs);
  }

  // Refreshes last_seen at most once a second: enough for idle timeouts in
  // seconds, and it keeps established flows from dirtying the line per packet.
  static void touch(keel_ct_value& v, uint64_t nowNs) {
    if (nowNs - v.last_seen_ns > 1000000000ull) storeRelaxed(v.last_seen_ns, uint64_t{nowNs ? nowNs : 1});
  }

  // The live entry for key in a table another worker owns, copied into
  // *out (false: none). Safe while that worker runs: it hashes with this
  // table's seeds and reads relaxed (ConnWays::peek); a value read while
  // its way was rewritten must pass the same checks as a hit before it is
  // used. Only ICMP errors look here (worker_path.cc), never a flow's own
  // packets.
  bool peek(const keel_flow_key& key, uint64_t nowNs, uint64_t idleNs, keel_ct_value* out) const {
    const uint32_t hash = hashOf(key);
    return key.family == KEEL_AF_INET6 ? v6_.peek(key, hash, nowNs, idleNs, out)
                                       : v4_.peek(key, hash, nowNs, idleNs, out);
  }

  // Pulls a flow's bucket toward the cache ahead of find()/insert(): with
  // many flows the bucket is a DRAM miss, and the worker prefetches a whole
  // burst's buckets before touching the first one.
  void prefetch(uint8_t family, uint32_t hash) const {
    if (family == KEEL_AF_INET6)
      v6_.prefetch(hash);
    else
      v4_.prefetch(hash);
  }

  // Every occupied way of both families, as f(keel_flow_key, keel_ct_value),
  // from a thread that does not own the table (ConnWays::scan): safe while
  // the owner runs; a way rewritten meanwhile may be seen torn.
  template <typename F>
  void scan(F&& f) const {
    v4_.scan(f);
    v6_.scan(f);
  }

  // Occupied ways of both families (keel_conntrack_entries): O(1), any thread.
  uint64_t occupied() const { return v4_.occupied() + v6_.occupied(); }
  // One family's half (keel_dpdk_conntrack_*): each family fills, and
  // evicts from, its own half, so its pressure is its own. Any thread.
  struct Half {
    uint64_t occupied, capacity, liveEvictions;
  };
  Half half(uint8_t family) const {
    return family == KEEL_AF_INET6 ? Half{v6_.occupied(), v6_.capacity(), v6_.liveEvictions()}
                                   : Half{v4_.occupied(), v4_.capacity(), v4_.liveEvictions()};
  }
  size_t countLive() const { return v4_.countLive() + v6_.countLive(); }

  // Every occupied way of both families, as f(const keel_flow_key&, const
  // keel_ct_value&). Only while the owning worker does not run.
  template <typename F>
  void forEach(F&& f) const {
    v4_.forEach(f);
    v6_.forEach(f);
  }

 private:
  static uint64_t mum(uint64_t a, uint64_t b) {
    const unsigned __int128 r = static_cast<unsigned __int128>(a) * b;
    return static_cast<uint64_t>(r >> 64) ^ static_cast<uint64_t>(r);
  }

  ConnWays<ConnEntry4> v4_;
  ConnWays<ConnEntry6> v6_;
  Seeds seed_;  // random per table, or a saved table's (reseed)
};

}  // namespace keel::dpdk
