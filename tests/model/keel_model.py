#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""keel reference model: which backend does keel pick for a flow?

The oracle for both data planes (STYLE.md habit 5). Written straight from the
definitions, with no optimisation, so it is easy to check by reading:

  * MurmurHash3 x86_32 (Austin Appleby's reference, public domain) over the
    bytes include/keel/hash.h feeds it;
  * the flow key layout of include/keel/flow.h;
  * Maglev populate, Pseudocode 1 of Eisenbud et al., NSDI 2016, §3.4, with
    the weighting rule of src/control/maglev/maglev.cc;
  * pick = ring[hash % M] (include/keel/maglev_lookup.h).

Pure Python 3 stdlib; run with /usr/bin/python3.

CLI:
  keel_model.py pick --input FILE.json   -> {"backend_ids": [...]}  (null: empty ring)
  keel_model.py pick --input FILE.json --with-ring  -> also "ring": [...]
  keel_model.py ring --input FILE.json   -> {"ring": [...]}
  keel_model.py selftest                 -> checks murmur3 against published vectors
Input JSON: {"ring_size": M, "scheduler": "maglev"|"maglev-src",
             "reals": [{"address": "10.0.0.1", "weight": 1, "backend_id": 7}, ...],
             "flows": [{"src": "1.2.3.4", "dst": "10.0.0.100", "sport": 1234,
                        "dport": 80, "proto": "tcp"|"udp"}, ...]}
"""

import argparse
import ipaddress
import json
import struct
import sys

# include/keel/hash.h and include/keel/flow.h
SEED_FLOW = 0x6B65656C
SEED_OFFSET = 0x4D61676C
SEED_SKIP = 0x536B6970
AF_INET = 4
AF_INET6 = 6
PROTO = {"tcp": 6, "udp": 17}
MASK = 0xFFFFFFFF


# ---------------------------------------------------------------- murmur3

def rotl32(x, r):
    return ((x << r) | (x >> (32 - r))) & MASK


def murmur3_32(data, seed):
    """MurmurHash3_x86_32 over bytes, exactly as Appleby's reference."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & MASK
    nblocks = len(data) // 4
    for i in range(nblocks):
        (k,) = struct.unpack_from("<I", data, i * 4)  # little-endian blocks
        k = (k * c1) & MASK
        k = rotl32(k, 15)
        k = (k * c2) & MASK
        h ^= k
        h = rotl32(h, 13)
        h = (h * 5 + 0xE6546B64) & MASK
    tail = data[nblocks * 4:]
    k = 0
    if len(tail) >= 3:
        k ^= tail[2] << 16
    if len(tail) >= 2:
        k ^= tail[1] << 8
    if len(tail) >= 1:
        k ^= tail[0]
        k = (k * c1) & MASK
        k = rotl32(k, 15)
        k = (k * c2) & MASK
        h ^= k
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & MASK
    h ^= h >> 16
    return h


# ---------------------------------------------------------------- keys

def addr_bytes(text):
    """(family, 16 raw network-order bytes): IPv4 in the first 4, rest zero."""
    a = ipaddress.ip_address(text)
    if a.version == 4:
        return AF_INET, a.packed + bytes(12)
    return AF_INET6, a.packed


def flow_key(flow):
    """The 40 bytes of struct keel_flow_key."""
    sfam, src = addr_bytes(flow["src"])
    dfam, dst = addr_bytes(flow["dst"])
    if sfam != dfam:
        raise ValueError("flow %r mixes address families" % (flow,))
    proto = PROTO[flow["proto"]]
    # ports are stored in network order; proto, family, 2 pad bytes
    return src + dst + struct.pack(">HH", flow["sport"], flow["dport"]) + bytes([proto, sfam, 0, 0])


def flow_hash(flow):
    """keel_flow_hash: murmur3 of the whole 40-byte key."""
    return murmur3_32(flow_key(flow), SEED_FLOW)


def addr_hash(addr16, family, seed):
    """keel_hash_addr: murmur3 of the 16 address bytes plus the family as a u32."""
    return murmur3_32(addr16 + struct.pack("<I", family), seed)


def src_hash(flow):
    """keel_src_hash: the client address only."""
    family, src = addr_bytes(flow["src"])
    return addr_hash(src, family, SEED_FLOW)


# ---------------------------------------------------------------- maglev

def populate(reals, m):
    """Weighted Maglev table of m entries (backend ids); [] if nothing to fill.

    Paper Pseudocode 1, except that in round r a real may claim a slot only
    while claimed * w_max < r * w (all weights equal: the paper exactly).
    """
    assert is_prime(m), "ring size must be prime"
    live = [r for r in reals if r["weight"] > 0]
    if not live:
        return []
    # Canonical order, as the C++ builder: family, address bytes, weight, id.
    live.sort(key=lambda r: (addr_bytes(r["address"]), r["weight"], r["backend_id"]))
    offset, skip = [], []
    for r in live:
        family, a = addr_bytes(r["address"])
        offset.append(addr_hash(a, family, SEED_OFFSET) % m)
        skip.append(addr_hash(a, family, SEED_SKIP) % (m - 1) + 1)

    def permutation(i, j):
        return (offset[i] + j * skip[i]) % m

    w_max = max(r["weight"] for r in live)
    nxt = [0] * len(live)
    claimed = [0] * len(live)
    entry = [None] * m
    n = 0
    rnd = 0
    while True:
        rnd += 1
        for i, r in enumerate(live):
            if not claimed[i] * w_max < rnd * r["weight"]:
                continue
            c = permutation(i, nxt[i])
            while entry[c] is not None:
                nxt[i] += 1
                c = permutation(i, nxt[i])
            entry[c] = r["backend_id"]
            nxt[i] += 1
            claimed[i] += 1
            n += 1
            if n == m:
                return entry


def is_prime(m):
    return m >= 2 and all(m % d for d in range(2, int(m ** 0.5) + 1))


def pick(flow, scheduler, ring):
    """Backend id for a flow: ring[hash % M]; None if the ring is empty."""
    if not ring:
        return None
    h = src_hash(flow) if scheduler == "maglev-src" else flow_hash(flow)
    return ring[h % len(ring)]


# ---------------------------------------------------------------- CLI

# Published vectors for MurmurHash3_x86_32 (SMHasher / Wikipedia test set).
MURMUR3_VECTORS = [
    (b"", 0, 0x00000000),
    (b"", 1, 0x514E28B7),
    (b"", 0xFFFFFFFF, 0x81F16F39),
    (b"\x00\x00\x00\x00", 0, 0x2362F9DE),
    (b"aaaa", 0x9747B28C, 0x5A97808A),
    (b"abc", 0, 0xB3DD93FA),
    (b"Hello, world!", 0x9747B28C, 0x24884CBA),
    (b"The quick brown fox jumps over the lazy dog", 0x9747B28C, 0x2FA826CD),
]


def selftest():
    bad = [(d, s, e, murmur3_32(d, s)) for d, s, e in MURMUR3_VECTORS if murmur3_32(d, s) != e]
    for d, s, e, got in bad:
        print("murmur3(%r, %#x) = %#x, expected %#x" % (d, s, got, e))
    print("selftest: %s" % ("FAIL" if bad else "ok"))
    return 1 if bad else 0


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["pick", "ring", "selftest"])
    p.add_argument("--input", help="JSON file (see module doc)")
    p.add_argument("--with-ring", action="store_true", help="pick: print the ring too")
    args = p.parse_args(argv)
    if args.command == "selftest":
        return selftest()
    if not args.input:
        p.error("--input is required for %s" % args.command)
    with open(args.input) as f:
        spec = json.load(f)
    ring = populate(spec["reals"], spec["ring_size"])
    if args.command == "ring":
        json.dump({"ring": ring}, sys.stdout)
    else:
        scheduler = spec.get("scheduler", "maglev")
        if scheduler not in ("maglev", "maglev-src"):
            raise SystemExit("unknown scheduler %r" % scheduler)
        out = {"backend_ids": [pick(fl, scheduler, ring) for fl in spec.get("flows", [])]}
        if args.with_ring:
            out["ring"] = ring
        json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
