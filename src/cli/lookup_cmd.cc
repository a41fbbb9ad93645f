// SPDX-License-Identifier: Apache-2.0
// keelctl lookup SERVICE --client ADDR:PORT [--protocol tcp|udp] [--port N]
#include <iostream>
#include <memory>

#include "cli/context.h"

namespace keel::cli {

namespace {

struct LookupArgs {
  std::string service, client, protocol, port;
};

// "10.1.2.3:5555" or "[2001:db8::7]:5555". False if there is no port.
bool splitClient(const std::string& text, std::string& addr, std::string& port) {
  if (!text.empty() && text[0] == '[') {
    auto close = text.find("]:");
    if (close == std::string::npos) return false;
    addr = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos || text.find(':') != colon) return false;
    addr = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  return !addr.empty() && !port.empty();
}

}  // namespace

void defineLookup(CLI::App& noun, Context& ctx) {
  auto a = std::make_shared<LookupArgs>();
  noun.add_option("SERVICE", a->service, "service name")->required();
  noun.add_option("--client", a->client, "client ADDR:PORT, IPv6 as [ADDR]:PORT")->required();
  noun.add_option("--protocol", a->protocol, "tcp or udp (must match the service)");
  noun.add_option("--port", a->port, "destination port, for a service on every port");
  noun.callback([&ctx, a] {
    std::string addr, port;
    if (!splitClient(a->client, addr, port))
      usageError("--client", "must be ADDR:PORT (IPv6 as [ADDR]:PORT), got \"" + a->client + "\"");
    json p{{"service", a->service}, {"client_address", addr}, {"client_port", numberOrString(port)}};
    if (!a->protocol.empty()) p["protocol"] = a->protocol;
    if (!a->port.empty()) p["port"] = numberOrString(a->port);
    auto r = ctx.call("lookup", p);
    if (!r) return;
    if (ctx.jsonOutput()) return ctx.printJson(*r);
    const json& j = *r;
    std::cout << str(j["protocol"]) << " " << clientEndpoint(str(j["client_address"]), j["client_port"].get<uint64_t>())
              << " -> " << endpoint(str(j["vip"]), j["port"].get<uint64_t>()) << " (" << str(j["service"])
              << "): ";
    if (j["real"].is_null()) {
      std::cout << "no real (" << str(j.value("note", json("empty ring"))) << ")\n";
    } else {
      char hash[16];
      std::snprintf(hash, sizeof hash, "0x%08x", j["hash"].get<uint32_t>());
      std::cout << str(j["real"]);
      if (j.contains("state")) std::cout << " [" << realState(j) << "]";  // "down, held" as service list says
      std::cout << "  (the ring's pick: " << str(j["scheduler"]) << " hash " << hash << ", slot "
                << str(j["slot"]) << " of " << str(j["ring_size"]) << ")\n";
    }
    // The flow's own entry decides for an established flow (a keeld older
    // than the field sends none: nothing to say then).
    if (!j.contains("connection")) return;
    const json& c = j["connection"];
    // With no ring (no usable real) there is no pick to take: the packet
    // is dropped (operator review L9: it said the ring's pick).
    const std::string pick = j["real"].is_null() ? "is dropped (the ring is empty: drop_no_backend)"
                                                 : "takes the ring's pick";
    if (c.is_null()) {
      std::cout << "  connection table: no entry (a new flow: its first packet " << pick << ")\n";
      return;
    }
    std::cout << "  connection table: " << (c["real"].is_null() ? std::string("a real no longer in the service")
                                                                  : str(c["real"]))
              << ", idle " << age(static_cast<long long>(c["idle_ms"].get<uint64_t>() / 1000));
    // A SYN is never looked up (keel_tcp_syn): one that reuses the ports
    // opens a new connection where the ring sends it.
    if (c["kept"].get<bool>())
      std::cout << ": the flow's packets go there"
                << (str(j["protocol"]) == "tcp" ? " (a SYN on these ports opens a new connection: it " + pick + ")"
                                                : std::string())
                << "\n";
    else
      std::cout << ", not kept (" << str(c["why"]) << "): its next packet " << pick << "\n";
  });
}

}  // namespace keel::cli
