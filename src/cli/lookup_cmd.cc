// SPDX-License-Identifier: Apache-2.0
// keelctl lookup SERVICE --client ADDR:PORT [--protocol tcp|udp] [--port N]
#include <cstdio>
#include <iostream>
#include <memory>
#include <sstream>

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

// lookup's answer, whole before any of it is printed (a ReplyError is said
// alone).
std::string lookupText(const Reply& j) {
  std::ostringstream out;
  out << j["protocol"].text() << " " << clientEndpoint(j["client_address"].text(), j["client_port"].count())
      << " -> " << endpoint(j["vip"].text(), j["port"].count()) << " (" << j["service"].text() << "): ";
  if (j["real"].isNull()) {
    const Reply note = j.get("note");
    out << "no real (" << (note.isNull() ? std::string("empty ring") : note.text()) << ")\n";
  } else {
    char hash[24];
    std::snprintf(hash, sizeof hash, "0x%08llx", static_cast<unsigned long long>(j["hash"].count()));
    out << j["real"].text();
    if (j.has("state")) out << " [" << realState(j) << "]";  // "down, held" as service list says
    out << "  (the ring's pick: " << j["scheduler"].text() << " hash " << hash << ", slot " << j["slot"].text()
        << " of " << j["ring_size"].text() << ")\n";
  }
  // The flow's own entry decides for an established flow (a keeld older
  // than the field sends none: nothing to say then).
  if (!j.has("connection")) return out.str();
  const Reply c = j["connection"];
  // With no ring (no usable real) there is no pick to take: the packet
  // is dropped (operator review L9: it said the ring's pick).
  const std::string pick = j["real"].isNull() ? "is dropped (the ring is empty: drop_no_backend)"
                                              : "takes the ring's pick";
  if (c.isNull()) {
    out << "  connection table: no entry (a new flow: its first packet " << pick << ")\n";
    return out.str();
  }
  out << "  connection table: "
      << (c["real"].isNull() ? std::string("a real no longer in the service") : c["real"].text()) << ", idle "
      << age(static_cast<long long>(c["idle_ms"].count() / 1000));
  // A SYN is never looked up (keel_tcp_syn): one that reuses the ports
  // opens a new connection where the ring sends it.
  if (c["kept"].flag())
    out << ": the flow's packets go there"
        << (j["protocol"].text() == "tcp" ? " (a SYN on these ports opens a new connection: it " + pick + ")"
                                          : std::string())
        << "\n";
  else
    out << ", not kept (" << c["why"].text() << "): its next packet " << pick << "\n";
  return out.str();
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
    if (ctx.jsonOutput()) return ctx.printJson(r->value());
    std::cout << lookupText(*r);
  });
}

}  // namespace keel::cli
