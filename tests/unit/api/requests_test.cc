// SPDX-License-Identifier: Apache-2.0
// Params validation, one table per method: each row is params JSON and
// either the expected typed value or the exact error (field + message).
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "control/api/requests.h"

namespace keel::api {
namespace {

using nlohmann::json;

struct ErrorRow {
  const char* name;
  const char* params;   // JSON text
  const char* field;    // expected error field
  const char* message;  // expected exact message
};

template <typename T>
void expectErrors(Parsed<T> (*parse)(const json&), const std::vector<ErrorRow>& rows) {
  for (const auto& row : rows) {
    SCOPED_TRACE(row.name);
    json params = json::parse(row.params);
    auto r = parse(params);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error.code, code::kInvalidParams);
    EXPECT_EQ(r.error.field, row.field);
    EXPECT_EQ(r.error.message, row.message);
  }
}

TEST(RequestsTest, RealWeightAccepts) {
  struct Row { const char* params; const char* service; const char* address; uint32_t weight; };
  const Row rows[] = {
      {R"({"service":"web","address":"10.0.0.5","weight":0})", "web", "10.0.0.5", 0},
      {R"({"service":"web","address":"10.0.0.5","weight":65535})", "web", "10.0.0.5", 65535},
      {R"({"service":"a.b-c_9","address":"2001:db8::5","weight":7})", "a.b-c_9", "2001:db8::5", 7},
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(row.params);
    auto r = parseRealWeight(json::parse(row.params));
    ASSERT_TRUE(r.ok()) << r.error.message;
    EXPECT_EQ(r.value->real.service, row.service);
    EXPECT_EQ(r.value->real.address.toString(), row.address);
    EXPECT_EQ(r.value->weight, row.weight);
  }
}

TEST(RequestsTest, RealWeightRejects) {
  expectErrors(parseRealWeight, {
      {"weight too big", R"({"service":"web","address":"10.0.0.5","weight":65536})", "params.weight",
       "params.weight: must be an integer 0..65535, got 65536"},
      {"weight negative", R"({"service":"web","address":"10.0.0.5","weight":-1})", "params.weight",
       "params.weight: must be an integer 0..65535, got -1"},
      {"weight string", R"({"service":"web","address":"10.0.0.5","weight":"100"})", "params.weight",
       "params.weight: must be an integer 0..65535, got \"100\""},
      {"weight float", R"({"service":"web","address":"10.0.0.5","weight":100.0})", "params.weight",
       "params.weight: must be an integer 0..65535, got 100.0"},
      {"weight bool", R"({"service":"web","address":"10.0.0.5","weight":true})", "params.weight",
       "params.weight: must be an integer 0..65535, got true"},
      {"weight missing", R"({"service":"web","address":"10.0.0.5"})", "params.weight",
       "params.weight: is required"},
      {"extra key", R"({"service":"web","address":"10.0.0.5","weight":1,"wieght":2})", "params.wieght",
       "params.wieght: unknown key (expected: service, address, weight)"},
      {"bad address", R"({"service":"web","address":"10.0.0.256","weight":1})", "params.address",
       "params.address: must be an IPv4 or IPv6 address, got \"10.0.0.256\""},
      {"address with NUL", "{\"service\":\"web\",\"address\":\"10.0.0.5\\u0000x\",\"weight\":1}",
       "params.address", "params.address: must be an IPv4 or IPv6 address, got \"10.0.0.5\\x00x\""},
      {"address number", R"({"service":"web","address":167772165,"weight":1})", "params.address",
       "params.address: must be an IPv4 or IPv6 address, got 167772165"},
      {"bad service name", R"({"service":"-web","address":"10.0.0.5","weight":1})", "params.service",
       "params.service: must be a service name (1..63 letters, digits, '-', '_' or '.', starting with "
       "a letter or digit), got \"-web\""},
      {"params not object", R"([1,2])", "params", "params: must be an object, got a list"},
      {"service missing", R"({"address":"10.0.0.5","weight":1})", "params.service",
       "params.service: is required"},
  });
}

TEST(RequestsTest, RealRefRejects) {
  expectErrors(parseRealRef, {
      {"weight not allowed", R"({"service":"web","address":"10.0.0.5","weight":1})", "params.weight",
       "params.weight: unknown key (expected: service, address)"},
      {"address missing", R"({"service":"web"})", "params.address", "params.address: is required"},
      {"empty address", R"({"service":"web","address":""})", "params.address",
       "params.address: must be an IPv4 or IPv6 address, got \"\""},
      {"binary key", "{\"service\":\"web\",\"address\":\"10.0.0.5\",\"\\u0001\":1}", "params.\\x01",
       "params.\\x01: unknown key (expected: service, address)"},
  });
}

// real.drain's optional reason: text for a one-line table, bounded.
TEST(RequestsTest, RealDrainReason) {
  auto r = parseRealDrain(json::parse(R"({"service":"web","address":"10.0.0.5"})"), true);
  ASSERT_TRUE(r.ok()) << r.error.message;
  EXPECT_TRUE(r.value->drain);
  EXPECT_EQ(r.value->reason, "");
  r = parseRealDrain(json::parse(R"({"service":"web","address":"10.0.0.5","reason":"NIC swap — ticket #12"})"), true);
  ASSERT_TRUE(r.ok()) << r.error.message;
  EXPECT_EQ(r.value->reason, "NIC swap — ticket #12");
  r = parseRealDrain(json::parse(R"({"service":"web","address":"10.0.0.5","reason":")" + std::string(200, 'x') + "\"}"), true);
  ASSERT_TRUE(r.ok()) << "200 bytes is the limit, inclusive";
  // The zero-width characters are text, ZWJ in an emoji sequence (woman,
  // ZWJ, laptop) and ZWNJ in Persian spelling: taken, and keelctl shows
  // them escaped (isZeroWidthCodePoint), not refused as hidden.
  r = parseRealDrain(json::parse(R"({"service":"web","address":"10.0.0.5","reason":"on call \ud83d\udc69\u200d\ud83d\udcbb, \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"})"), true);
  ASSERT_TRUE(r.ok()) << r.error.message;
  EXPECT_EQ(r.value->reason, "on call \U0001F469\u200D\U0001F4BB, \u0645\u06CC\u200C\u062E\u0648\u0627\u0647\u0645");
  r = parseRealDrain(json::parse(R"({"service":"web","address":"10.0.0.5"})"), false);
  ASSERT_TRUE(r.ok()) << r.error.message;
  EXPECT_FALSE(r.value->drain);
  const std::string msg = "params.reason: must be 1..200 bytes of text without control characters, got ";
  expectErrors<RealDrainRequest>(+[](const json& p) { return parseRealDrain(p, true); }, {
      {"empty", R"({"service":"web","address":"10.0.0.5","reason":""})", "params.reason",
       (msg + "\"\"").c_str()},
      {"newline", R"({"service":"web","address":"10.0.0.5","reason":"a\nb"})", "params.reason",
       (msg + "\"a\\x0ab\"").c_str()},
      {"not a string", R"({"service":"web","address":"10.0.0.5","reason":42})", "params.reason",
       "params.reason: must be a string, got 42"},
      // UTF-8's own controls, separators and bidi overrides (input review L3).
      {"NEL", R"({"service":"web","address":"10.0.0.5","reason":"ok\u0085line2"})", "params.reason",
       (msg + "\"ok\\xc2\\x85line2\"").c_str()},
      {"line separator", R"({"service":"web","address":"10.0.0.5","reason":"a\u2028b"})", "params.reason",
       (msg + "\"a\\xe2\\x80\\xa8b\"").c_str()},
      {"right-to-left override", R"({"service":"web","address":"10.0.0.5","reason":"\u202ex"})", "params.reason",
       (msg + "\"\\xe2\\x80\\xaex\"").c_str()},
      {"right-to-left isolate", R"({"service":"web","address":"10.0.0.5","reason":"\u2067x"})", "params.reason",
       (msg + "\"\\xe2\\x81\\xa7x\"").c_str()},
      {"right-to-left mark", R"({"service":"web","address":"10.0.0.5","reason":"\u200fx"})", "params.reason",
       (msg + "\"\\xe2\\x80\\x8fx\"").c_str()},
  });
  auto longOne = parseRealDrain(json::parse(R"({"service":"web","address":"10.0.0.5","reason":")" + std::string(201, 'x') + "\"}"), true);
  ASSERT_FALSE(longOne.ok());
  EXPECT_EQ(longOne.error.field, "params.reason");
  EXPECT_EQ(longOne.error.message.rfind(msg, 0), 0u) << longOne.error.message;
  expectErrors<RealDrainRequest>(+[](const json& p) { return parseRealDrain(p, false); }, {
      {"undrain: no reason", R"({"service":"web","address":"10.0.0.5","reason":"done"})", "params.reason",
       "params.reason: unknown key (expected: service, address)"},
  });
}

TEST(RequestsTest, RealAddDefaultsAndMac) {
  auto r = parseRealAdd(json::parse(R"({"service":"web","address":"10.0.0.9"})"));
  ASSERT_TRUE(r.ok()) << r.error.message;
  // None given: the backend applies keel.yaml's default (100), or the
  // file's weight for a file real added back.
  EXPECT_EQ(r.value->real.weight, std::nullopt);
  EXPECT_FALSE(r.value->real.mac);
  r = parseRealAdd(json::parse(
      R"({"service":"web","address":"10.0.0.9","weight":5,"mac":"02:00:00:00:00:09","health":{"type":"tcp"}})"));
  ASSERT_TRUE(r.ok()) << r.error.message;
  EXPECT_EQ(r.value->real.mac->toString(), "02:00:00:00:00:09");
  EXPECT_EQ(r.value->real.health["type"], "tcp");
  expectErrors(parseRealAdd, {
      {"bad mac", R"({"service":"web","address":"10.0.0.9","mac":"02:00:00:00:00"})", "params.mac",
       "params.mac: must be a MAC address like 02:00:00:00:00:01, got \"02:00:00:00:00\""},
      {"health not object", R"({"service":"web","address":"10.0.0.9","health":"tcp"})", "params.health",
       "params.health: must be an object (the keys of a YAML health block), got \"tcp\""},
  });
}

TEST(RequestsTest, ServiceAddAcceptsYamlKeys) {
  auto r = parseServiceAdd(json::parse(R"({
      "name": "dns", "vip": "2001:db8::53", "port": 53, "protocol": "udp",
      "forwarding": "l2dsr", "scheduler": "maglev-src", "ring_size": 655373,
      "reals": [{"address": "2001:db8::1"}, {"address": "2001:db8::2", "weight": 0, "mac": "02:00:00:00:00:02"}],
      "health": {"type": "udp"}})"));
  ASSERT_TRUE(r.ok()) << r.error.message;
  const auto& s = *r.value;
  EXPECT_EQ(s.name, "dns");
  EXPECT_EQ(s.vip.toString(), "2001:db8::53");
  EXPECT_EQ(s.port, 53);
  EXPECT_EQ(s.protocol, KEEL_PROTO_UDP);
  EXPECT_EQ(s.forwarding, "l2dsr");
  EXPECT_EQ(s.scheduler, "maglev-src");
  EXPECT_EQ(s.ringSize, 655373u);
  ASSERT_EQ(s.reals.size(), 2u);
  EXPECT_EQ(s.reals[0].weight, std::nullopt);
  EXPECT_EQ(s.reals[1].weight, 0u);
  EXPECT_EQ(s.reals[1].mac->toString(), "02:00:00:00:00:02");

  auto minimal = parseServiceAdd(json::parse(R"({"name":"w","vip":"10.0.0.1","port":0,"protocol":"tcp"})"));
  ASSERT_TRUE(minimal.ok()) << minimal.error.message;
  EXPECT_EQ(minimal.value->forwarding, "ipip");
  EXPECT_EQ(minimal.value->scheduler, "maglev");
  EXPECT_EQ(minimal.value->ringSize, 65537u);
  EXPECT_TRUE(minimal.value->reals.empty());
}

// keeld's runtime state file stores requests as toParams() and replays them
// through the parser: every key must come back as it went in.
TEST(RequestsTest, ToParamsParsesBackToTheSameRequest) {
  const json full = json::parse(R"({
      "name": "dns", "vip": "2001:db8::53", "port": 53, "protocol": "udp",
      "forwarding": "l2dsr", "scheduler": "maglev-src", "ring_size": 655373,
      "reals": [{"address": "2001:db8::1", "health": {"type": "udp", "rise": 1}},
                {"address": "2001:db8::2", "weight": 0, "mac": "02:00:00:00:00:02"}],
      "health": {"type": "udp", "expect": "pong", "interval": "100ms"}})");
  auto a = parseServiceAdd(full);
  ASSERT_TRUE(a.ok()) << a.error.message;
  auto b = parseServiceAdd(toParams(*a.value));
  ASSERT_TRUE(b.ok()) << b.error.message;
  EXPECT_EQ(toParams(*b.value), toParams(*a.value));
  EXPECT_EQ(b.value->name, "dns");
  EXPECT_EQ(b.value->vip, a.value->vip);
  EXPECT_EQ(b.value->port, 53);
  EXPECT_EQ(b.value->protocol, KEEL_PROTO_UDP);
  EXPECT_EQ(b.value->forwarding, "l2dsr");
  EXPECT_EQ(b.value->scheduler, "maglev-src");
  EXPECT_EQ(b.value->ringSize, 655373u);
  EXPECT_EQ(b.value->health, full["health"]);
  ASSERT_EQ(b.value->reals.size(), 2u);
  EXPECT_EQ(b.value->reals[0].health, full["reals"][0]["health"]);
  EXPECT_EQ(b.value->reals[1].weight, 0u);
  EXPECT_EQ(b.value->reals[1].mac->toString(), "02:00:00:00:00:02");

  auto ra = parseRealAdd(json::parse(
      R"({"service":"web","address":"10.0.0.9","weight":5,"mac":"02:00:00:00:00:09","health":{"type":"tcp"}})"));
  ASSERT_TRUE(ra.ok()) << ra.error.message;
  auto rb = parseRealAdd(toParams(*ra.value));
  ASSERT_TRUE(rb.ok()) << rb.error.message;
  EXPECT_EQ(rb.value->service, "web");
  EXPECT_EQ(rb.value->real.address, ra.value->real.address);
  EXPECT_EQ(rb.value->real.weight, 5u);
  EXPECT_EQ(rb.value->real.mac, ra.value->real.mac);
  EXPECT_EQ(rb.value->real.health, ra.value->real.health);
  auto bare = parseRealAdd(toParams(*parseRealAdd(json::parse(R"({"service":"w","address":"::1"})")).value));
  ASSERT_TRUE(bare.ok()) << bare.error.message;
  EXPECT_FALSE(bare.value->real.mac);
  EXPECT_TRUE(bare.value->real.health.is_null());
}

TEST(RequestsTest, ServiceAddRejects) {
  expectErrors(parseServiceAdd, {
      {"vip missing", R"({"name":"w","port":80,"protocol":"tcp"})", "params.vip", "params.vip: is required"},
      {"port missing", R"({"name":"w","vip":"10.0.0.1","protocol":"tcp"})", "params.port",
       "params.port: is required"},
      {"protocol missing", R"({"name":"w","vip":"10.0.0.1","port":80})", "params.protocol",
       "params.protocol: is required"},
      {"bad protocol", R"({"name":"w","vip":"10.0.0.1","port":80,"protocol":"sctp"})", "params.protocol",
       "params.protocol: must be one of tcp|udp, got \"sctp\""},
      {"bad forwarding", R"({"name":"w","vip":"10.0.0.1","port":80,"protocol":"tcp","forwarding":"nat"})",
       "params.forwarding", "params.forwarding: must be one of ipip|l2dsr, got \"nat\""},
      {"bad scheduler", R"({"name":"w","vip":"10.0.0.1","port":80,"protocol":"tcp","scheduler":"rr"})",
       "params.scheduler", "params.scheduler: must be one of maglev|maglev-src, got \"rr\""},
      {"ring not prime", R"({"name":"w","vip":"10.0.0.1","port":80,"protocol":"tcp","ring_size":65536})",
       "params.ring_size", "params.ring_size: must be 65537 or 655373, got 65536"},
      {"port too big", R"({"name":"w","vip":"10.0.0.1","port":65536,"protocol":"tcp"})", "params.port",
       "params.port: must be an integer 0..65535, got 65536"},
      {"reals not list", R"({"name":"w","vip":"10.0.0.1","port":80,"protocol":"tcp","reals":{}})",
       "params.reals", "params.reals: must be a list of reals, got an object"},
      {"real bad weight",
       R"({"name":"w","vip":"10.0.0.1","port":80,"protocol":"tcp","reals":[{"address":"10.0.0.2"},{"address":"10.0.0.3","weight":70000}]})",
       "params.reals[1].weight", "params.reals[1].weight: must be an integer 0..65535, got 70000"},
      {"real unknown key",
       R"({"name":"w","vip":"10.0.0.1","port":80,"protocol":"tcp","reals":[{"address":"10.0.0.2","port":8080}]})",
       "params.reals[0].port", "params.reals[0].port: unknown key (expected: address, weight, mac, health)"},
      {"real duplicate",
       R"({"name":"w","vip":"10.0.0.1","port":80,"protocol":"tcp","reals":[{"address":"10.0.0.2"},{"address":"10.0.0.2"}]})",
       "params.reals[1].address", "params.reals[1].address: duplicate real 10.0.0.2"},
      {"real not object", R"({"name":"w","vip":"10.0.0.1","port":80,"protocol":"tcp","reals":["10.0.0.2"]})",
       "params.reals[0]", "params.reals[0]: must be an object, got \"10.0.0.2\""},
      {"name too long",
       R"({"name":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","vip":"10.0.0.1","port":80,"protocol":"tcp"})",
       "params.name",
       "params.name: must be a service name (1..63 letters, digits, '-', '_' or '.', starting with a "
       "letter or digit), got \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\""},
  });
}

TEST(RequestsTest, LookupParams) {
  auto r = parseLookup(json::parse(
      R"({"service":"web","client_address":"2001:db8::7","client_port":5555,"protocol":"tcp","port":443})"));
  ASSERT_TRUE(r.ok()) << r.error.message;
  EXPECT_EQ(r.value->clientAddress.toString(), "2001:db8::7");
  EXPECT_EQ(r.value->clientPort, 5555);
  EXPECT_EQ(*r.value->protocol, KEEL_PROTO_TCP);
  EXPECT_EQ(*r.value->port, 443);
  expectErrors(parseLookup, {
      {"client port missing", R"({"service":"web","client_address":"10.1.1.1"})", "params.client_port",
       "params.client_port: is required"},
      {"client port string", R"({"service":"web","client_address":"10.1.1.1","client_port":"x"})",
       "params.client_port", "params.client_port: must be an integer 0..65535, got \"x\""},
      {"dest port zero", R"({"service":"web","client_address":"10.1.1.1","client_port":1,"port":0})",
       "params.port", "params.port: must be an integer 1..65535, got 0"},
  });
}

TEST(RequestsTest, SmallMethods) {
  EXPECT_TRUE(parseNoParams(json(nullptr)).ok());
  EXPECT_TRUE(parseNoParams(json::object()).ok());
  expectErrors(parseNoParams, {{"any key", R"({"force":true})", "params.force",
                                "params.force: unknown key (expected: none)"}});
  EXPECT_FALSE(parseServiceFilter(json::object()).value->service.has_value());
  EXPECT_EQ(*parseServiceFilter(json::parse(R"({"service":"web"})")).value->service, "web");
  EXPECT_TRUE(parseShutdown(json::parse(R"({"detach":true})")).value->detach);
  EXPECT_FALSE(parseShutdown(json::object()).value->detach);
  expectErrors(parseShutdown, {{"detach string", R"({"detach":"yes"})", "params.detach",
                                "params.detach: must be true or false, got \"yes\""}});
  {
    auto c = parseConfigText(json::parse(R"({"text":"services: []\n","name":"/etc/keel/keel.yaml"})"));
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c.value->text, "services: []\n");
    EXPECT_EQ(c.value->name, "/etc/keel/keel.yaml");
    EXPECT_EQ(parseConfigText(json::parse(R"({"text":""})")).value->name, "config");
  }
  // keeld reads no file for a client (it would with its own privileges).
  expectErrors(parseConfigText,
               {{"text missing", "{}", "params.text", "params.text: is required"},
                {"path", R"({"path":"/etc/shadow"})", "params.path",
                 "params.path: keeld no longer reads the file: send its text in params.text (and its name in "
                 "params.name), as keelctl config check does"},
                {"name empty", R"({"text":"x","name":""})", "params.name",
                 "params.name: must be a file name (1..4096 bytes, no NUL), got \"\""}});
  expectErrors(parseServiceName, {{"name number", R"({"name":5})", "params.name",
                                   "params.name: must be a service name, got 5"}});
}

TEST(RequestsTest, DescribeEscapesGarbage) {
  EXPECT_EQ(describeJson(json(std::string("a\"b\\c\x01\xff", 7))), "\"a\\\"b\\\\c\\x01\\xff\"");
  EXPECT_EQ(describeJson(json(std::string(100, 'x'))), "\"" + std::string(64, 'x') + "...\"");
}

}  // namespace
}  // namespace keel::api
