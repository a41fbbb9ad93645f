// SPDX-License-Identifier: Apache-2.0
// The protocol without sockets: every bad-request class answers with a
// clear error and makes no mutating backend call; good requests reach the
// backend with the typed request; lookup agrees with an independent
// MurmurHash3 over the flow key's bytes.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <regex>

#include "control/api/dispatcher.h"
#include "fake_backend.h"

namespace keel::api {
namespace {

using nlohmann::json;
using testing::FakeBackend;

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake_.services.push_back(FakeBackend::makeService("web", "10.0.0.1", 80, {"10.0.0.5", "10.0.0.6"}));
    fake_.services.push_back(FakeBackend::makeService("v6", "2001:db8::1", 443, {"2001:db8::5"}));
  }
  // The response, also of a request answered later (conn.list), which the
  // fake answers at once unless told to hold it.
  json call(const std::string& line) {
    DispatchOutcome out = dispatcher_.handleLine(line);
    if (!out.later) return out.response;
    EXPECT_TRUE(out.response.is_null());
    std::optional<json> sent;
    out.later([&](json response) {
      EXPECT_FALSE(sent) << "sent twice";
      sent = std::move(response);
    });
    EXPECT_TRUE(sent) << "not sent";
    return sent.value_or(json());
  }

  FakeBackend fake_;
  Dispatcher dispatcher_{fake_};
};

struct BadRow {
  const char* name;
  std::string line;
  const char* code;
  const char* message;  // expected exact message
};

TEST_F(DispatcherTest, BadRequestsChangeNothing) {
  const BadRow rows[] = {
      {"malformed json", R"({"id":1,"method":"real.drain",)", code::kParseError, nullptr},
      {"not an object", R"([1,2,3])", code::kInvalidRequest, "request: must be a JSON object, got a list"},
      {"bare string", R"("hello")", code::kInvalidRequest, "request: must be a JSON object, got \"hello\""},
      {"method missing", R"({"id":1})", code::kInvalidRequest, "method: is required"},
      {"method not string", R"({"id":1,"method":7})", code::kInvalidRequest, "method: must be a string, got 7"},
      {"bad id", R"({"id":[1],"method":"service.list"})", code::kInvalidRequest,
       "id: must be an integer or a string, got a list"},
      // A number no double holds stops the parser (security review L4: `internal`).
      {"id overflows", R"({"id":1e400,"method":"service.list"})", code::kInvalidRequest,
       "id: number out of range (number overflow parsing '1e400'; a JSON number here must fit a double)"},
      {"param overflows", R"({"id":1,"method":"real.set_weight","params":{"service":"web","address":"10.0.0.5","weight":-1e400}})",
       code::kInvalidParams,
       "params.weight: number out of range (number overflow parsing '-1e400'; a JSON number here must fit a double)"},
      {"overflow in a list", R"({"id":1,"method":"service.add","params":{"name":"x","reals":[{"address":"10.0.0.7"},{"weight":1E999}]}})",
       code::kInvalidParams,
       "params.reals[1].weight: number out of range (number overflow parsing '1E999'; a JSON number here must fit a double)"},
      {"overflow alone", "1e400", code::kInvalidRequest,
       "request: number out of range (number overflow parsing '1e400'; a JSON number here must fit a double)"},
      {"id too long to echo", R"({"id":")" + std::string(257, 'i') + R"(","method":"service.list"})",
       code::kInvalidRequest, "id: a string of at most 256 bytes, got 257"},
      {"extra envelope key", R"({"id":1,"method":"service.list","parms":{}})", code::kInvalidRequest,
       "\"parms\": unknown request key (expected: id, method, params)"},
      {"unknown method", R"({"id":1,"method":"real.destroy","params":{}})", code::kUnknownMethod, nullptr},
      {"null params", R"({"id":1,"method":"real.drain","params":null})", code::kInvalidRequest,
       "params: must be an object (omitted when there are none), got null"},
      {"params a list", R"({"id":1,"method":"service.list","params":[]})", code::kInvalidRequest,
       "params: must be an object (omitted when there are none), got a list"},
      {"missing param", R"({"id":1,"method":"real.drain","params":{"service":"web"}})", code::kInvalidParams,
       "params.address: is required"},
      {"extra param", R"({"id":1,"method":"real.drain","params":{"service":"web","address":"10.0.0.5","now":true}})",
       code::kInvalidParams, "params.now: unknown key (expected: service, address, reason)"},
      {"drain reason too long", R"({"id":1,"method":"real.drain","params":{"service":"web","address":"10.0.0.5","reason":")" +
                                    std::string(201, 'x') + R"("}})",
       code::kInvalidParams, nullptr},
      {"drain reason for an unknown real", R"({"id":1,"method":"real.drain","params":{"service":"web","address":"10.0.0.9","reason":"kernel"}})",
       code::kNotFound, "services[web]: real 10.0.0.9 not found"},
      {"undrain takes no reason", R"({"id":1,"method":"real.undrain","params":{"service":"web","address":"10.0.0.5","reason":"done"}})",
       code::kInvalidParams, "params.reason: unknown key (expected: service, address)"},
      {"wrong type", R"({"id":1,"method":"real.set_weight","params":{"service":"web","address":"10.0.0.5","weight":"9"}})",
       code::kInvalidParams, "params.weight: must be an integer 0..65535, got \"9\""},
      {"weight out of range", R"({"id":1,"method":"real.set_weight","params":{"service":"web","address":"10.0.0.5","weight":65536}})",
       code::kInvalidParams, "params.weight: must be an integer 0..65535, got 65536"},
      {"bad address", R"({"id":1,"method":"real.remove","params":{"service":"web","address":"10.0.0"}})",
       code::kInvalidParams, "params.address: must be an IPv4 or IPv6 address, got \"10.0.0\""},
      {"unknown service", R"({"id":1,"method":"real.drain","params":{"service":"nope","address":"10.0.0.5"}})",
       code::kNotFound, "services[nope]: not found"},
      {"unknown real", R"({"id":1,"method":"real.drain","params":{"service":"web","address":"10.0.0.9"}})",
       code::kNotFound, "services[web]: real 10.0.0.9 not found"},
      {"real exists", R"({"id":1,"method":"real.add","params":{"service":"web","address":"10.0.0.5"}})",
       code::kExists, "services[web]: real 10.0.0.5 already exists"},
      {"service exists", R"({"id":1,"method":"service.add","params":{"name":"web","vip":"10.0.0.2","port":80,"protocol":"tcp"}})",
       code::kExists, "services[web]: already exists"},
      {"vip taken", R"({"id":1,"method":"service.add","params":{"name":"web2","vip":"10.0.0.1","port":80,"protocol":"tcp"}})",
       code::kExists, "services[web2]: 10.0.0.1 port 80/tcp is already service web"},
      {"remove unknown service", R"({"id":1,"method":"service.remove","params":{"name":"nope"}})",
       code::kNotFound, "services[nope]: not found"},
      {"reload with params", R"({"id":1,"method":"config.reload","params":{"path":"/x"}})",
       code::kInvalidParams, "params.path: unknown key (expected: none)"},
      {"shutdown bad detach", R"({"id":1,"method":"daemon.shutdown","params":{"detach":1}})",
       code::kInvalidParams, "params.detach: must be true or false, got 1"},
      {"binary garbage", std::string("\x00\x01\xff\xfe{{", 6), code::kParseError, nullptr},
      // nlohmann's parser stops at a NUL: the valid request before it ran.
      {"a request, then a NUL",
       std::string(R"({"id":1,"method":"real.set_weight","params":{"service":"web","address":"10.0.0.5","weight":50}})") +
           std::string(1, '\0') + "{not json",
       code::kParseError,
       "request: malformed JSON: a NUL byte at offset 95 (JSON text has none; write \\u0000 inside a string)"},
      {"invalid utf8 in string", "{\"id\":1,\"method\":\"real.drain\xff\"}", code::kParseError, nullptr},
      {"deep nesting", std::string(100, '[') + std::string(100, ']'), code::kInvalidRequest,
       "request: JSON nested deeper than 64 levels"},
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(row.name);
    json r = call(row.line);
    ASSERT_EQ(r["ok"], false) << r.dump();
    EXPECT_EQ(r["error"]["code"], row.code) << r.dump();
    if (row.message) {
      EXPECT_EQ(r["error"]["message"], row.message);
    }
    // The response always serializes, whatever bytes the request held.
    EXPECT_FALSE(serializeResponse(r).empty());
  }
  EXPECT_TRUE(fake_.mutations.empty()) << fake_.mutations.front();
  EXPECT_FALSE(fake_.shutdownDetach.has_value());
}

TEST_F(DispatcherTest, ANumberNoDoubleHoldsIsRefusedAtItsKey) {
  json r = call(R"({"id":1e400,"method":"service.list"})");
  EXPECT_EQ(r["error"]["code"], code::kInvalidRequest) << r.dump();
  EXPECT_EQ(r["error"]["field"], "id") << r.dump();
  EXPECT_TRUE(r["id"].is_null()) << r.dump();
  r = call(R"({"id":7,"method":"real.set_weight","params":{"service":"web","address":"10.0.0.5","weight":1e400}})");
  EXPECT_EQ(r["error"]["code"], code::kInvalidParams) << r.dump();
  EXPECT_EQ(r["error"]["field"], "params.weight") << r.dump();
  EXPECT_TRUE(fake_.mutations.empty());
}

TEST_F(DispatcherTest, ErrorsEchoIdAndField) {
  json r = call(R"({"id":"abc","method":"real.drain","params":{"service":"web","address":"10.0.0.9"}})");
  EXPECT_EQ(r["id"], "abc");
  EXPECT_EQ(r["error"]["field"], "params.address");
  r = call(R"({"id":7,"method":"real.set_weight","params":{"service":"web","address":"10.0.0.5","weight":-3}})");
  EXPECT_EQ(r["id"], 7);
  EXPECT_EQ(r["error"]["field"], "params.weight");
  r = call("{nope");
  EXPECT_TRUE(r["id"].is_null());
  EXPECT_NE(r["error"]["message"].get<std::string>().find("request: malformed JSON: "), std::string::npos);
}

// nlohmann::json would keep the last of a key given twice; the request is
// refused instead, naming the key's full path, whatever its depth.
TEST_F(DispatcherTest, DuplicateKeysAreRefusedWithTheirPath) {
  struct Row {
    const char* name;
    std::string line;
    const char* code;
    const char* field;
    json id;
  };
  const Row rows[] = {
      {"weight twice", R"({"id":1,"method":"real.set_weight","params":{"service":"web","address":"10.0.0.5","weight":0,"weight":100}})",
       code::kInvalidParams, "params.weight", 1},
      {"method twice", R"({"id":2,"method":"service.list","method":"daemon.shutdown"})", code::kInvalidRequest,
       "method", 2},
      {"params twice", R"({"id":3,"method":"service.list","params":{},"params":{}})", code::kInvalidRequest,
       "params", 3},
      {"id twice: neither is echoed", R"({"id":4,"id":5,"method":"service.list"})", code::kInvalidRequest, "id",
       nullptr},
      {"in a real's health", R"({"id":6,"method":"service.add","params":{"name":"new","vip":"10.0.0.2","port":80,"protocol":"tcp",)"
                             R"("reals":[{"address":"10.0.0.7"},{"address":"10.0.0.8","health":{"type":"http","port":81,"type":"tcp"}}]}})",
       code::kInvalidParams, "params.reals[1].health.type", 6},
      {"in a list inside a list", R"({"id":7,"method":"service.list","params":{"a":[[{"k":1}],[{"k":1},{"k":1,"k":2}]]}})",
       code::kInvalidParams, "params.a[1][1].k", 7},
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(row.name);
    json r = call(row.line);
    ASSERT_EQ(r["ok"], false) << r.dump();
    EXPECT_EQ(r["id"], row.id) << r.dump();
    EXPECT_EQ(r["error"]["code"], row.code) << r.dump();
    EXPECT_EQ(r["error"]["field"], row.field) << r.dump();
    EXPECT_EQ(r["error"]["message"], std::string(row.field) + ": duplicate key (each key may appear once in an object)");
  }
  EXPECT_TRUE(fake_.mutations.empty()) << fake_.mutations.front();
  EXPECT_FALSE(fake_.shutdownDetach.has_value());
  // The same key in different objects is no duplicate.
  json ok = call(R"({"id":8,"method":"service.add","params":{"name":"new","vip":"10.0.0.2","port":80,"protocol":"tcp",)"
                 R"("reals":[{"address":"10.0.0.7","weight":1},{"address":"10.0.0.8","weight":2}],"health":{"port":80}}})");
  EXPECT_EQ(ok["ok"], true) << ok.dump();
}

TEST_F(DispatcherTest, MutationsReachBackendTyped) {
  EXPECT_EQ(call(R"({"id":1,"method":"real.drain","params":{"service":"web","address":"10.0.0.5"}})")["ok"], true);
  EXPECT_EQ(call(R"({"id":2,"method":"real.set_weight","params":{"service":"web","address":"10.0.0.6","weight":0}})")["ok"], true);
  EXPECT_EQ(call(R"({"id":3,"method":"real.add","params":{"service":"v6","address":"2001:db8::6","weight":7}})")["ok"], true);
  EXPECT_EQ(call(R"({"id":4,"method":"real.undrain","params":{"service":"web","address":"10.0.0.5"}})")["ok"], true);
  EXPECT_EQ(call(R"({"id":5,"method":"real.remove","params":{"service":"v6","address":"2001:db8::5"}})")["ok"], true);
  EXPECT_EQ(call(R"({"id":6,"method":"service.add","params":{"name":"dns","vip":"10.0.0.53","port":53,"protocol":"udp","reals":[{"address":"10.0.0.7"}]}})")["ok"], true);
  EXPECT_EQ(call(R"({"id":7,"method":"service.remove","params":{"name":"dns"}})")["ok"], true);
  EXPECT_EQ(call(R"({"id":8,"method":"config.reload"})")["ok"], true);
  std::vector<std::string> want = {"drain web 10.0.0.5",          "setRealWeight web 10.0.0.6 0",
                                   "addReal v6 2001:db8::6 7",    "undrain web 10.0.0.5",
                                   "removeReal v6 2001:db8::5",   "addService dns",
                                   "removeService dns",           "reload"};
  EXPECT_EQ(fake_.mutations, want);
}

// A drain's record: when (RFC 3339, the fake's clock) and the operator's
// reason, in service.show and health.show; a repeated drain keeps the time
// and takes a new reason; undrain clears both to null.
// A change that runs but could not be saved (keeld's state file) says so
// in its answer's warnings, which keelctl prints, beside any others.
TEST_F(DispatcherTest, AChangeThatCouldNotBeSavedSaysSo) {
  const std::string why = "the change is running, but keeld could not save it (open x.tmp: No space left on device)";
  fake_.unsaved = why;
  json r = call(R"({"id":1,"method":"real.drain","params":{"service":"web","address":"10.0.0.5"}})");
  ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
  EXPECT_EQ(r["result"]["warnings"], json::array({why})) << r.dump();
  fake_.unsaved = "not saved";
  fake_.addWarnings = {"real 10.0.0.9: held down"};
  r = call(R"({"id":2,"method":"real.add","params":{"service":"web","address":"10.0.0.9"}})");
  EXPECT_EQ(r["result"]["warnings"], json::array({"real 10.0.0.9: held down", "not saved"})) << r.dump();
  r = call(R"({"id":3,"method":"real.undrain","params":{"service":"web","address":"10.0.0.5"}})");
  EXPECT_FALSE(r["result"].contains("warnings")) << "said once: " << r.dump();
}

TEST_F(DispatcherTest, DrainRecordIsShown) {
  auto realOf = [&](const json& r) { return r["result"]["services"][0]["reals"][0]; };
  json r = call(R"({"id":1,"method":"health.show","params":{"service":"web"}})");
  EXPECT_TRUE(realOf(r)["drained_since"].is_null()) << r.dump();
  EXPECT_TRUE(realOf(r)["drain_reason"].is_null());
  r = call(R"({"id":2,"method":"real.drain","params":{"service":"web","address":"10.0.0.5","reason":"kernel 6.18 upgrade, INC-42"}})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(fake_.mutations.back(), "drain web 10.0.0.5 reason=kernel 6.18 upgrade, INC-42");
  r = call(R"({"id":3,"method":"health.show","params":{"service":"web"}})");
  EXPECT_EQ(realOf(r)["state"], "draining");
  EXPECT_EQ(realOf(r)["drained_since"], "2026-12-01T14:03:05Z");
  EXPECT_EQ(realOf(r)["drain_reason"], "kernel 6.18 upgrade, INC-42");
  EXPECT_TRUE(r["result"]["services"][0]["reals"][1]["drained_since"].is_null());
  fake_.now += std::chrono::minutes(5);
  r = call(R"({"id":4,"method":"real.drain","params":{"service":"web","address":"10.0.0.5","reason":"still upgrading"}})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  r = call(R"({"id":5,"method":"service.show","params":{"name":"web"}})");
  const json& shown = r["result"]["service"]["reals"][0];
  EXPECT_EQ(shown["drained_since"], "2026-12-01T14:03:05Z");
  EXPECT_EQ(shown["drain_reason"], "still upgrading");
  r = call(R"({"id":6,"method":"real.undrain","params":{"service":"web","address":"10.0.0.5"}})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  r = call(R"({"id":7,"method":"health.show","params":{"service":"web"}})");
  EXPECT_EQ(realOf(r)["state"], "up");
  EXPECT_TRUE(realOf(r)["drained_since"].is_null());
  EXPECT_TRUE(realOf(r)["drain_reason"].is_null());
}

// A change answers what it did (operator review M2: every changing verb
// answered {}): the real before and after, the service's ring after.
TEST_F(DispatcherTest, AChangeAnswersWhatItChanged) {
  json r = call(R"({"id":1,"method":"real.set_weight","params":{"service":"web","address":"10.0.0.6","weight":0}})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(r["result"], (json{{"service", "web"},
                               {"address", "10.0.0.6"},
                               {"before", {{"weight", 100}, {"state", "up"}}},
                               {"after", {{"weight", 0}, {"state", "up"}}},
                               {"published_ring_size", 65537},
                               {"reals_in_ring", 1}}))
      << r.dump();
  r = call(R"({"id":2,"method":"real.drain","params":{"service":"web","address":"10.0.0.6"}})");
  EXPECT_EQ(r["result"]["before"], (json{{"weight", 0}, {"state", "up"}})) << r.dump();
  EXPECT_EQ(r["result"]["after"], (json{{"weight", 0}, {"state", "draining"}})) << r.dump();
  r = call(R"({"id":3,"method":"real.add","params":{"service":"web","address":"10.0.0.9","weight":7}})");
  EXPECT_TRUE(r["result"]["before"].is_null()) << r.dump();
  EXPECT_EQ(r["result"]["after"], (json{{"weight", 7}, {"state", "up"}})) << r.dump();
  EXPECT_EQ(r["result"]["reals_in_ring"], 2) << r.dump();
  r = call(R"({"id":4,"method":"real.remove","params":{"service":"v6","address":"2001:db8::5"}})");
  EXPECT_EQ(r["result"]["address"], "2001:db8::5") << r.dump();
  EXPECT_EQ(r["result"]["before"], (json{{"weight", 100}, {"state", "up"}})) << r.dump();
  EXPECT_TRUE(r["result"]["after"].is_null()) << r.dump();
  EXPECT_EQ(r["result"]["published_ring_size"], 0) << r.dump();
  EXPECT_EQ(r["result"]["reals_in_ring"], 0) << r.dump();
  r = call(R"({"id":5,"method":"service.add","params":{"name":"dns","vip":"10.0.0.53","port":53,"protocol":"udp","reals":[{"address":"10.0.0.7"},{"address":"10.0.0.8","weight":0}]}})");
  EXPECT_EQ(r["result"], (json{{"service", "dns"},
                               {"vip", "10.0.0.53"},
                               {"port", 53},
                               {"protocol", "udp"},
                               {"reals", 2},
                               {"published_ring_size", 65537},
                               {"reals_in_ring", 1}}))
      << r.dump();
  r = call(R"({"id":6,"method":"service.remove","params":{"name":"dns"}})");
  EXPECT_EQ(r["result"],
            (json{{"service", "dns"}, {"vip", "10.0.0.53"}, {"port", 53}, {"protocol", "udp"}, {"reals", 2}}))
      << r.dump();
}

// A change that leaves a service no usable real is made (an operator may
// mean it), and says so (operator review H1: weights 0, drains or removals
// of the last reals emptied the ring in silence and dropped every new flow).
TEST_F(DispatcherTest, AChangeThatEmptiesTheRingWarns) {
  const std::string emptied =
      "services[web]: no usable real now: new flows to 10.0.0.1:80/tcp are dropped (drop_no_backend)";
  json r = call(R"({"id":1,"method":"real.set_weight","params":{"service":"web","address":"10.0.0.5","weight":0}})");
  EXPECT_FALSE(r["result"].contains("warnings")) << "one real is left: " << r.dump();
  r = call(R"({"id":2,"method":"real.set_weight","params":{"service":"web","address":"10.0.0.6","weight":0}})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(r["result"]["warnings"], json::array({emptied})) << r.dump();
  EXPECT_EQ(r["result"]["published_ring_size"], 0);
  EXPECT_EQ(fake_.mutations.size(), 2u) << "made, not refused";
  // Already empty: nothing more to say of the ring.
  r = call(R"({"id":3,"method":"real.drain","params":{"service":"web","address":"10.0.0.6"}})");
  EXPECT_FALSE(r["result"].contains("warnings")) << r.dump();
  r = call(R"({"id":4,"method":"real.undrain","params":{"service":"web","address":"10.0.0.6"}})");
  r = call(R"({"id":5,"method":"real.set_weight","params":{"service":"web","address":"10.0.0.6","weight":5}})");
  EXPECT_FALSE(r["result"].contains("warnings")) << r.dump();
  EXPECT_EQ(r["result"]["reals_in_ring"], 1);
  // The last real drained, or removed; an IPv6 service on every port.
  r = call(R"({"id":6,"method":"real.drain","params":{"service":"web","address":"10.0.0.6"}})");
  EXPECT_EQ(r["result"]["warnings"], json::array({emptied})) << r.dump();
  fake_.services[1].port = 0;
  r = call(R"({"id":7,"method":"real.remove","params":{"service":"v6","address":"2001:db8::5"}})");
  EXPECT_EQ(r["result"]["warnings"],
            json::array({"services[v6]: no usable real now: new flows to [2001:db8::1]:*/tcp are dropped "
                         "(drop_no_backend)"}))
      << r.dump();
}

// real.remove of a real with kept flows at the last count: made, with the
// count in the answer and a warning that the flows move (IPVS would let
// them finish); none without a count, or without kept flows.
TEST_F(DispatcherTest, RemovingARealWithFlowsSaysHowMany) {
  auto& web = fake_.services[0];
  web.reals[0].flows = RealFlows{12, 3};
  web.reals[1].flows = RealFlows{0, 4};
  web.flowsCountedAt = std::chrono::system_clock::now() - std::chrono::seconds(42);
  json r = call(R"({"id":1,"method":"real.remove","params":{"service":"web","address":"10.0.0.5"}})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(r["result"]["flows"], (json{{"kept", 12}, {"not_kept", 3}})) << r.dump();
  EXPECT_TRUE(r["result"]["flows_counted_at"].is_string()) << r.dump();
  ASSERT_EQ(r["result"]["warnings"].size(), 1u) << r.dump();
  const std::string w = r["result"]["warnings"][0];
  EXPECT_TRUE(std::regex_match(w, std::regex(R"(real 10\.0\.0\.5 of service web had 12 flows \(counted 4[23]s ago\): )"
                                             R"(their next packets take the ring's pick; drain first to let them finish)")))
      << w;
  EXPECT_EQ(fake_.mutations, std::vector<std::string>{"removeReal web 10.0.0.5"});
  r = call(R"({"id":2,"method":"real.remove","params":{"service":"web","address":"10.0.0.6"}})");
  EXPECT_EQ(r["result"]["flows"], (json{{"kept", 0}, {"not_kept", 4}})) << r.dump();
  // No kept flows; the ring it empties is what is said.
  EXPECT_EQ(r["result"]["warnings"].size(), 1u) << r.dump();
  EXPECT_EQ(r["result"]["warnings"][0].get<std::string>().rfind("services[web]: no usable real now", 0), 0u);
  // Not counted: null, nothing said.
  r = call(R"({"id":3,"method":"real.remove","params":{"service":"v6","address":"2001:db8::5"}})");
  EXPECT_TRUE(r["result"]["flows"].is_null()) << r.dump();
  EXPECT_TRUE(r["result"]["flows_counted_at"].is_null()) << r.dump();
  // A draining real's flows: wait for them, then remove.
  fake_.services.push_back(FakeBackend::makeService("db", "10.0.0.2", 5432, {"10.0.0.8", "10.0.0.9"}));
  fake_.services.back().reals[0].draining = true;
  fake_.services.back().reals[0].flows = RealFlows{1, 0};
  r = call(R"({"id":4,"method":"real.remove","params":{"service":"db","address":"10.0.0.8"}})");
  EXPECT_EQ(r["result"]["warnings"],
            json::array({"real 10.0.0.8 of service db had 1 flow: its next packets take the ring's pick; to let "
                         "it finish, remove a draining real once keelctl conns db --real 10.0.0.8 --count shows "
                         "none"}))
      << r.dump();
}

// A repeat that changes nothing says so, as undrain of a real not drained
// did (operator review L4): a wrong address in a script's loop shows.
TEST_F(DispatcherTest, ARepeatThatChangesNothingSaysSo) {
  json r = call(R"({"id":1,"method":"real.undrain","params":{"service":"web","address":"10.0.0.5"}})");
  EXPECT_EQ(r["result"]["warnings"], json::array({"real 10.0.0.5 of service web was not drained: nothing changed"}));
  r = call(R"({"id":2,"method":"real.drain","params":{"service":"web","address":"10.0.0.5","reason":"upgrade"}})");
  EXPECT_FALSE(r["result"].contains("warnings")) << r.dump();
  r = call(R"({"id":3,"method":"real.drain","params":{"service":"web","address":"10.0.0.5"}})");
  EXPECT_EQ(r["result"]["warnings"],
            json::array({"real 10.0.0.5 of service web already draining since 2026-12-01T14:03:05Z: nothing changed"}))
      << r.dump();
  r = call(R"({"id":4,"method":"real.drain","params":{"service":"web","address":"10.0.0.5","reason":"upgrade"}})");
  EXPECT_EQ(r["result"]["warnings"].size(), 1u) << "the same reason: " << r.dump();
  r = call(R"({"id":5,"method":"real.drain","params":{"service":"web","address":"10.0.0.5","reason":"INC-7"}})");
  EXPECT_FALSE(r["result"].contains("warnings")) << "a new reason is a change: " << r.dump();
  r = call(R"({"id":6,"method":"real.set_weight","params":{"service":"web","address":"10.0.0.6","weight":100}})");
  EXPECT_EQ(r["result"]["warnings"],
            json::array({"real 10.0.0.6 of service web: weight already 100: nothing changed"}))
      << r.dump();
  r = call(R"({"id":7,"method":"real.set_weight","params":{"service":"web","address":"10.0.0.6","weight":99}})");
  EXPECT_FALSE(r["result"].contains("warnings")) << r.dump();
}

TEST_F(DispatcherTest, BackendRefusalIsReported) {
  fake_.failMutations = ApiError{code::kFailed, "services[web]: limits.max_reals (16384) reached", "", {}};
  json r = call(R"({"id":1,"method":"real.add","params":{"service":"web","address":"10.0.0.9"}})");
  EXPECT_EQ(r["ok"], false);
  EXPECT_EQ(r["error"]["code"], "failed");
  EXPECT_EQ(r["error"]["message"], "services[web]: limits.max_reals (16384) reached");
}

TEST_F(DispatcherTest, QueriesRenderSnapshots) {
  fake_.services[0].reals[1].draining = true;
  fake_.services[0].reals[0].healthy = false;
  json r = call(R"({"id":1,"method":"service.show","params":{"name":"web"}})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  const json& s = r["result"]["service"];
  EXPECT_EQ(s["vip"], "10.0.0.1");
  EXPECT_EQ(s["protocol"], "tcp");
  EXPECT_EQ(s["reals"][0]["state"], "down");
  EXPECT_EQ(s["reals"][1]["state"], "draining");
  EXPECT_EQ(s["reals"][1]["packets"], 100);
  // 1796133785 s after the epoch is 2026-12-01T14:03:05Z; the 700 ms are cut.
  const auto changed = std::chrono::system_clock::time_point(std::chrono::milliseconds(1796133785700));
  fake_.services[0].reals[0].lastChange = changed;
  fake_.services[0].reals[0].lastCheck = changed + std::chrono::seconds(61);
  fake_.services[0].reals[0].changeReason = "2 consecutive failures: connect: connection refused";
  r = call(R"({"id":2,"method":"health.show","params":{"service":"web"}})");
  ASSERT_EQ(r["result"]["services"].size(), 1u);
  const json& h = r["result"]["services"][0]["reals"];
  EXPECT_EQ(h[0]["check"], "tcp");
  EXPECT_EQ(h[0]["detail"], "connect ok");
  EXPECT_EQ(h[0]["last_change"], "2026-12-01T14:03:05Z");
  EXPECT_EQ(h[0]["last_check"], "2026-12-01T14:04:06Z");
  EXPECT_EQ(h[0]["reason"], "2 consecutive failures: connect: connection refused");
  EXPECT_TRUE(h[1]["last_change"].is_null()) << "no transition and no result yet: null, not a made-up time";
  EXPECT_TRUE(h[1]["last_check"].is_null());
  EXPECT_EQ(h[1]["reason"], "");
  fake_.stats.dataplane = "mock";
  fake_.stats.reasons[KEEL_R_TX_IPIP] = {42, 4200};
  r = call(R"({"id":3,"method":"stats.get"})");
  EXPECT_EQ(r["result"]["dataplane"], "mock");
  EXPECT_EQ(r["result"]["reasons"]["tx_ipip"]["packets"], 42);
  EXPECT_EQ(r["result"]["reasons"].size(), static_cast<size_t>(KEEL_R_MAX));
  EXPECT_EQ(r["result"]["services"].size(), 2u);
  // Connection table: entries null while the plane cannot count them.
  fake_.stats.connTableCapacity = 65536;
  r = call(R"({"id":4,"method":"stats.get"})");
  EXPECT_TRUE(r["result"]["conntrack"]["entries"].is_null());
  EXPECT_EQ(r["result"]["conntrack"]["capacity"], 65536);
  fake_.stats.connTableEntries = 17;
  r = call(R"({"id":5,"method":"stats.get"})");
  EXPECT_EQ(r["result"]["conntrack"]["entries"], 17);
  // Workers: an empty list where the plane has none, else one object each.
  EXPECT_EQ(r["result"]["workers"], json::array());
  fake_.stats.workers = {WorkerStats{0, 1, 10}, WorkerStats{1, 2, 20}};
  r = call(R"({"id":6,"method":"stats.get"})");
  ASSERT_EQ(r["result"]["workers"].size(), 2u);
  EXPECT_EQ(r["result"]["workers"][1]["rx_packets"], 20);
  // attachment: null but on XDP, where it says where the program runs and
  // whether it does now.
  EXPECT_TRUE(r["result"].contains("attachment") && r["result"]["attachment"].is_null()) << r.dump();
  fake_.stats.upkeep = DataplaneUpkeep{false, 2, 1, "eth0", "native", "/sys/fs/bpf/keel/eth0"};
  r = call(R"({"id":7,"method":"stats.get"})");
  EXPECT_EQ(r["result"]["attachment"],
            (json{{"interface", "eth0"}, {"mode", "native"}, {"attached", false}, {"reattached", 2},
                  {"pins_restored", 1}, {"pin_dir", "/sys/fs/bpf/keel/eth0"}}));
}

// stats.get on DPDK: per worker its ICMP peer lookups by outcome and its
// table's halves (entries, capacity, live evictions per family), and the
// halves summed over the workers beside the plane-wide entries/capacity. A
// plane without workers (XDP) has no halves: null, never zeros.
TEST_F(DispatcherTest, StatsShowEachWorkersTableHalvesAndIcmpPeerLookups) {
  fake_.stats.connTableCapacity = 16384;
  json r = call(R"({"id":1,"method":"stats.get"})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_TRUE(r["result"]["conntrack"]["ipv4"].is_null()) << r["result"]["conntrack"];
  EXPECT_TRUE(r["result"]["conntrack"]["ipv6"].is_null()) << r["result"]["conntrack"];
  EXPECT_TRUE(r["result"]["port"].is_null()) << r["result"];

  WorkerStats w0{0, 1, 10};
  w0.txDropped = 5;
  w0.toKernelDropped = 6;
  w0.fromKernel = 8;
  w0.fromKernelDropped = 7;
  w0.hostFramesIgnored = 12;
  w0.icmpPeerFound = 3;
  w0.icmpPeerNotFound = 2;
  w0.icmpPeerRateLimited = 1;
  w0.connEntries = {4096, 7};
  w0.connCapacity = {4096, 4096};
  w0.connLiveEvictions = {900, 0};
  WorkerStats w1{1, 2, 20};
  w1.connEntries = {100, 0};
  w1.connCapacity = {4096, 4096};
  w1.connLiveEvictions = {5, 0};
  fake_.stats.workers = {w0, w1};
  fake_.stats.connTableEntries = 4203;
  fake_.stats.connInsertsSkipped = 31;
  fake_.stats.connMidflowMisses = 44;
  // rx 100 (missed 9, no mbuf 4, errors 1), tx 80 (errors 2), link up at 25000 Mb/s.
  const PortStats port{100, 9, 4, 1, 80, 2, true, 25000};
  fake_.stats.port = port;
  r = call(R"({"id":2,"method":"stats.get"})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(r["result"]["workers"][0],
            (json{{"worker", 0},
                  {"lcore", 1},
                  {"rx_packets", 10},
                  {"icmp_peer_lookups", {{"found", 3}, {"not_found", 2}, {"rate_limited", 1}}},
                  {"conntrack",
                   {{"ipv4", {{"entries", 4096}, {"capacity", 4096}, {"live_evictions", 900}}},
                    {"ipv6", {{"entries", 7}, {"capacity", 4096}, {"live_evictions", 0}}}}},
                  {"tx_dropped", {{"port", 5}, {"to_kernel", 6}, {"from_kernel", 7}}},
                  {"from_kernel", 8},
                  {"host_frames_ignored", 12}}));
  EXPECT_EQ(r["result"]["port"], (json{{"rx_packets", 100},
                                       {"rx_missed", 9},
                                       {"rx_no_mbuf", 4},
                                       {"rx_errors", 1},
                                       {"tx_packets", 80},
                                       {"tx_errors", 2},
                                       {"link_up", true},
                                       {"link_speed_mbps", 25000}}));
  EXPECT_EQ(r["result"]["workers"][1]["icmp_peer_lookups"],
            (json{{"found", 0}, {"not_found", 0}, {"rate_limited", 0}}));
  EXPECT_EQ(r["result"]["conntrack"],
            (json{{"entries", 4203},
                  {"capacity", 16384},
                  {"inserts_skipped", 31},
                  {"midflow_misses", 44},
                  {"ipv4", {{"entries", 4196}, {"capacity", 8192}, {"live_evictions", 905}}},
                  {"ipv6", {{"entries", 7}, {"capacity", 8192}, {"live_evictions", 0}}}}));
}

// methods() is the one list: every method in it reaches its branch (any
// answer but unknown_method or the internal "listed but not dispatched"),
// and unknown_method names exactly those.
TEST_F(DispatcherTest, EveryListedMethodIsDispatchedAndNoOtherIsKnown) {
  ASSERT_EQ(Dispatcher::methods().size(), 17u);
  for (const std::string& m : Dispatcher::methods()) {
    if (m == "daemon.shutdown") continue;  // would ask the server to stop; ShutdownIsDeferredToTheServer
    json r = call(json{{"id", 1}, {"method", m}, {"params", {{"bogus_key_for_the_test", 1}}}}.dump());
    ASSERT_EQ(r["ok"], false) << m << ": " << r.dump();
    EXPECT_NE(r["error"]["code"], code::kUnknownMethod) << m;
    EXPECT_EQ(r["error"]["message"].get<std::string>().find("not dispatched"), std::string::npos) << m << r.dump();
  }
  json r = call(R"({"id":1,"method":"real.destroy","params":{}})");
  ASSERT_EQ(r["error"]["code"], code::kUnknownMethod);
  for (const std::string& m : Dispatcher::methods())
    EXPECT_NE(r["error"]["message"].get<std::string>().find(m), std::string::npos) << m;
}

// The read-only socket's dispatcher: every method that changes keeld is
// refused with `forbidden` before the backend sees it, daemon.shutdown
// included, and so is config.check (host checks that wait on keeld's loop
// for any text); the queries are served as usual.
TEST_F(DispatcherTest, ReadOnlyServesQueriesAndForbidsChanges) {
  Dispatcher ro(fake_, /*readOnly=*/true);
  const std::vector<std::string> changing = {"service.add", "service.remove", "real.add",      "real.remove",
                                             "real.set_weight", "real.drain", "real.undrain", "config.reload",
                                             "daemon.shutdown"};
  const std::vector<std::string> queries = {"service.list", "service.show", "health.show", "stats.get",
                                            "lookup",       "conn.list",    "daemon.status"};
  EXPECT_EQ(Dispatcher::readOnlyMethods(), queries);
  for (const std::string& m : Dispatcher::methods()) {
    const bool changes = std::find(changing.begin(), changing.end(), m) != changing.end();
    EXPECT_EQ(Dispatcher::changes(m), changes) << m;
    if (std::find(queries.begin(), queries.end(), m) != queries.end()) continue;
    DispatchOutcome out = ro.handleLine(json{{"id", 3}, {"method", m}}.dump());
    EXPECT_EQ(out.method, m);
    EXPECT_FALSE(out.shutdownDetach) << m;
    const json& r = out.response;
    ASSERT_EQ(r["ok"], false) << m;
    EXPECT_EQ(r["id"], 3);
    EXPECT_EQ(r["error"]["code"], "forbidden") << m;
    EXPECT_EQ(r["error"]["field"], "method");
    EXPECT_EQ(r["error"]["message"],
              "method: " + m +
                  " is not served on this read-only socket (it serves service.list, service.show, health.show, "
                  "stats.get, lookup, conn.list, daemon.status)");
  }
  EXPECT_TRUE(fake_.mutations.empty());
  EXPECT_FALSE(fake_.shutdownDetach.has_value());
  EXPECT_EQ(ro.handleLine(R"({"id":6,"method":"config.check","params":{"text":"services: []"}})")
                .response["error"]["code"],
            "forbidden");
  EXPECT_EQ(ro.handleLine(R"({"id":1,"method":"service.list"})").response["ok"], true);
  EXPECT_EQ(ro.handleLine(R"({"id":2,"method":"health.show","params":{"service":"web"}})").response["ok"], true);
  EXPECT_EQ(ro.handleLine(R"({"id":7,"method":"daemon.status"})").response["ok"], true);
  // An unknown method stays unknown_method, not forbidden.
  EXPECT_EQ(ro.handleLine(R"({"id":4,"method":"real.destroy"})").response["error"]["code"], "unknown_method");
  // The same requests on the ordinary dispatcher reach the backend.
  EXPECT_EQ(call(R"({"id":5,"method":"real.drain","params":{"service":"web","address":"10.0.0.5"}})")["ok"], true);
  EXPECT_EQ(fake_.mutations, std::vector<std::string>{"drain web 10.0.0.5"});
}

// daemon.status renders the backend's DaemonStatus whole: times in RFC 3339,
// what is unknown or absent as null (never an empty string), a refused
// reload's code and errors, and the keelctl changes by kind. It takes no
// params and changes nothing.
TEST_F(DispatcherTest, DaemonStatusRendersTheBackendsStatus) {
  DaemonStatus& st = fake_.status;
  st.version = "0.1.0";
  st.pid = 4242;
  st.startedAt = fake_.now;
  st.dataplane = "xdp";
  st.where = "eth0";
  st.adopted = true;
  st.configPath = "/etc/keel/keel.yaml";
  st.appliedAt = fake_.now + std::chrono::seconds(60);
  st.appliedBy = "reload";
  st.fileChanged = true;
  st.lastReload = ReloadOutcome{fake_.now + std::chrono::seconds(120), false, "invalid_config",
                                {"keel.yaml:3: services[0].port: must be an integer 0..65535, got \"x\""}};
  st.restartNeeded = {"limits", "metrics"};
  st.stopStartNeeded = {"limits"};
  st.services = 2;
  st.reals = 5;
  st.runtime.drains = 2;
  st.runtime.addedServices = 1;
  st.stateFile = "/run/keel/runtime-eth0.json";
  json r = call(R"({"id":1,"method":"daemon.status"})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(r["result"],
            (json{{"version", "0.1.0"},
                  {"pid", 4242},
                  {"started_at", "2026-12-01T14:03:05Z"},
                  {"dataplane", {{"kind", "xdp"}, {"where", "eth0"}, {"adopted", true}}},
                  {"config",
                   {{"path", "/etc/keel/keel.yaml"},
                    {"applied_at", "2026-12-01T14:04:05Z"},
                    {"applied_by", "reload"},
                    {"file_changed", true},
                    {"file_error", nullptr},
                    {"last_reload",
                     {{"at", "2026-12-01T14:05:05Z"},
                      {"ok", false},
                      {"code", "invalid_config"},
                      {"errors", {"keel.yaml:3: services[0].port: must be an integer 0..65535, got \"x\""}},
                      {"running_kept", true}}},
                    {"restart_needed", {"limits", "metrics"}},
                    {"stop_start_needed", {"limits"}}}},
                  {"services", 2},
                  {"reals", 5},
                  {"runtime_changes",
                   {{"added_services", 1},
                    {"removed_services", 0},
                    {"added_reals", 0},
                    {"removed_reals", 0},
                    {"weights", 0},
                    {"drains", 2},
                    {"state_file", "/run/keel/runtime-eth0.json"},
                    {"unsaved", nullptr}}}}))
      << r.dump();
  // A file keeld cannot read: file_changed null, file_error says why; a
  // reload that worked has no code or errors; no reload yet: null.
  st.fileChanged.reset();
  st.fileError = "/etc/keel/keel.yaml: cannot open: Permission denied";
  st.lastReload = ReloadOutcome{fake_.now, true, {}, {}};
  st.where.clear();
  r = call(R"({"id":2,"method":"daemon.status"})");
  EXPECT_TRUE(r["result"]["config"]["file_changed"].is_null());
  EXPECT_EQ(r["result"]["config"]["file_error"], "/etc/keel/keel.yaml: cannot open: Permission denied");
  EXPECT_EQ(r["result"]["config"]["last_reload"], (json{{"at", "2026-12-01T14:03:05Z"}, {"ok", true}}));
  EXPECT_TRUE(r["result"]["dataplane"]["where"].is_null());
  st.lastReload.reset();
  EXPECT_TRUE(call(R"({"id":3,"method":"daemon.status"})")["result"]["config"]["last_reload"].is_null());
  // No params taken; nothing changed.
  r = call(R"({"id":4,"method":"daemon.status","params":{"verbose":true}})");
  EXPECT_EQ(r["error"]["code"], "invalid_params") << r.dump();
  EXPECT_EQ(fake_.statusCalls, 3);  // the refused request never reached the backend
  EXPECT_TRUE(fake_.mutations.empty());
  EXPECT_FALSE(Dispatcher::changes("daemon.status"));
}

TEST_F(DispatcherTest, ShutdownIsDeferredToTheServer) {
  auto out = dispatcher_.handleLine(R"({"id":1,"method":"daemon.shutdown","params":{"detach":true}})");
  EXPECT_EQ(out.response["ok"], true);
  ASSERT_TRUE(out.shutdownDetach.has_value());
  EXPECT_TRUE(*out.shutdownDetach);
  EXPECT_FALSE(fake_.shutdownDetach.has_value());  // the server calls it after writing the reply
}

TEST_F(DispatcherTest, DetachIsRefusedWhenThePlaneCannotOutliveTheDaemon) {
  fake_.detachable = false;  // DPDK: the workers are the daemon's threads
  auto out = dispatcher_.handleLine(R"({"id":1,"method":"daemon.shutdown","params":{"detach":true}})");
  EXPECT_EQ(out.response["ok"], false);
  EXPECT_EQ(out.response["error"]["code"], code::kFailed);
  EXPECT_EQ(out.response["error"]["field"], "params.detach");
  // It names the stop that keeps state (a signal), not the one that drops it.
  EXPECT_NE(out.response["error"]["message"].get<std::string>().find("stop keeld with a signal"), std::string::npos)
      << out.response;
  EXPECT_FALSE(out.shutdownDetach.has_value());  // nothing stops
  out = dispatcher_.handleLine(R"({"id":2,"method":"daemon.shutdown","params":{}})");
  EXPECT_EQ(out.response["ok"], true);
  ASSERT_TRUE(out.shutdownDetach.has_value());
  EXPECT_FALSE(*out.shutdownDetach);
}

// MurmurHash3 x86_32 over bytes, written from the published algorithm (not
// from include/keel/hash.h), so the test checks the key layout and the byte
// order lookup feeds the hash, not just the hash against itself.
uint32_t murmur3(const uint8_t* data, size_t len, uint32_t seed) {
  auto rotl = [](uint32_t x, int r) { return (x << r) | (x >> (32 - r)); };
  uint32_t h = seed;
  for (size_t i = 0; i + 4 <= len; i += 4) {
    uint32_t k = uint32_t(data[i]) | uint32_t(data[i + 1]) << 8 | uint32_t(data[i + 2]) << 16 |
                 uint32_t(data[i + 3]) << 24;
    k *= 0xcc9e2d51u;
    k = rotl(k, 15);
    k *= 0x1b873593u;
    h ^= k;
    h = rotl(h, 13);
    h = h * 5 + 0xe6546b64u;
  }
  h ^= static_cast<uint32_t>(len);
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

// Flow key bytes as on the wire: src[16] dst[16] sport dport (network
// order) proto family pad pad.
uint32_t referenceFlowHash(const IpAddress& src, uint16_t sport, const IpAddress& dst, uint16_t dport,
                           uint8_t proto) {
  uint8_t b[40] = {};
  std::memcpy(b, src.bytes().data(), 16);
  std::memcpy(b + 16, dst.bytes().data(), 16);
  b[32] = sport >> 8, b[33] = sport & 0xff, b[34] = dport >> 8, b[35] = dport & 0xff;
  b[36] = proto;
  b[37] = src.family();
  return murmur3(b, 40, 0x6b65656cu);
}

uint32_t referenceSrcHash(const IpAddress& src) {
  uint8_t b[20] = {};
  std::memcpy(b, src.bytes().data(), 16);
  b[16] = src.family();
  return murmur3(b, 20, 0x6b65656cu);
}

TEST_F(DispatcherTest, LookupMatchesReferenceHash) {
  const char* clients[] = {"192.0.2.1", "192.0.2.77", "198.51.100.3", "203.0.113.250"};
  int seenReals[2] = {0, 0};
  for (const char* c : clients) {
    for (uint16_t port : {1024, 5555, 40000, 65535}) {
      json r = call(std::string(R"({"id":1,"method":"lookup","params":{"service":"web","client_address":")") + c +
                    R"(","client_port":)" + std::to_string(port) + "}}");
      ASSERT_EQ(r["ok"], true) << r.dump();
      IpAddress client = *IpAddress::parse(c);
      uint32_t h = referenceFlowHash(client, port, *IpAddress::parse("10.0.0.1"), 80, KEEL_PROTO_TCP);
      EXPECT_EQ(r["result"]["hash"], h);
      uint32_t slot = h % 65537;
      EXPECT_EQ(r["result"]["slot"], slot);
      const char* want = slot % 2 == 0 ? "10.0.0.5" : "10.0.0.6";  // the fake's ring
      EXPECT_EQ(r["result"]["real"], want);
      ++seenReals[slot % 2];
    }
  }
  EXPECT_GT(seenReals[0], 0);
  EXPECT_GT(seenReals[1], 0);

  // maglev-src: the client address alone picks the slot, any port.
  fake_.services[1].scheduler = "maglev-src";
  IpAddress c6 = *IpAddress::parse("2001:db8:ffff::9");
  for (uint16_t port : {1, 2000, 60000}) {
    json r = call(R"({"id":2,"method":"lookup","params":{"service":"v6","client_address":"2001:db8:ffff::9","client_port":)" +
                  std::to_string(port) + R"(,"protocol":"tcp"}})");
    ASSERT_EQ(r["ok"], true) << r.dump();
    EXPECT_EQ(r["result"]["hash"], referenceSrcHash(c6));
    EXPECT_EQ(r["result"]["real"], "2001:db8::5");
  }
}

// lookup also reports the flow's connection-table entry, asked for with the
// same key the ring is hashed with; null when there is none. An empty ring
// still shows it (a drained real keeps its flows).
TEST_F(DispatcherTest, LookupShowsTheFlowsConnectionEntry) {
  const std::string ask = R"({"id":1,"method":"lookup","params":{"service":"web","client_address":"192.0.2.1","client_port":5555}})";
  json r = call(ask);
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_TRUE(r["result"]["connection"].is_null());
  keel_flow_key want{};  // include/keel/flow.h, as the data planes build it
  IpAddress::parse("192.0.2.1")->toWords(want.src);
  IpAddress::parse("10.0.0.1")->toWords(want.dst);
  want.sport = htons(5555);
  want.dport = htons(80);
  want.proto = KEEL_PROTO_TCP;
  want.family = IpAddress::parse("10.0.0.1")->family();
  EXPECT_EQ(std::memcmp(&fake_.lastConnKey, &want, sizeof want), 0);

  fake_.conns["web"] = ConnView{*IpAddress::parse("10.0.0.6"), ConnState::kKept, "", 3'200'000'000};
  r = call(ask);
  EXPECT_EQ(r["result"]["connection"], (json{{"real", "10.0.0.6"}, {"kept", true}, {"state", "kept"}, {"idle_ms", 3200}}));
  fake_.conns["web"] = ConnView{std::nullopt, ConnState::kRemoved, "its backend id 9 is no real of this service now (removed)", 0};
  for (auto& real : fake_.services[0].reals) real.draining = true;
  FakeBackend::refresh(fake_.services[0]);
  r = call(ask);
  EXPECT_TRUE(r["result"]["real"].is_null());
  EXPECT_EQ(r["result"]["connection"],
            (json{{"real", nullptr}, {"kept", false}, {"state", "removed"}, {"idle_ms", 0},
                  {"why", "its backend id 9 is no real of this service now (removed)"}}));
}

// conn.list: the filters reach the backend as a ConnQuery, each entry comes
// back with its flow from the key's bytes, and bad params or an unknown
// service are refused before the table is read.
TEST_F(DispatcherTest, ConnListShowsEntriesAndPassesItsFilters) {
  fake_.connListResult.conns = {
      testing::connListed("192.0.2.1", 5555, "10.0.0.1", 80, "web",
                 ConnView{*IpAddress::parse("10.0.0.6"), ConnState::kKept, "", 3'200'000'000}, 1),
      testing::connListed("192.0.2.1", 5555, "10.0.0.1", 80, "",
                 ConnView{std::nullopt, ConnState::kNoService, "no service has this VIP, port and protocol now", 0})};
  fake_.connListResult.counts = {ConnCount{"web", IpAddress::parse("10.0.0.6"), 2, 0}, ConnCount{"", std::nullopt, 0, 1}};
  fake_.connListResult.scanned = 10;
  fake_.connListResult.matched = 3;
  json r = call(R"({"id":1,"method":"conn.list","params":{"service":"web","real":"10.0.0.6","client_address":"192.0.2.1","limit":2}})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  ASSERT_TRUE(fake_.lastConnQuery);
  EXPECT_EQ(fake_.lastConnQuery->service, "web");
  EXPECT_EQ(fake_.lastConnQuery->real, IpAddress::parse("10.0.0.6"));
  EXPECT_EQ(fake_.lastConnQuery->client, IpAddress::parse("192.0.2.1"));
  EXPECT_EQ(fake_.lastConnQuery->limit, 2u);
  EXPECT_EQ(r["result"],
            (json{{"connections",
                   {{{"service", "web"}, {"protocol", "tcp"}, {"client_address", "192.0.2.1"}, {"client_port", 5555},
                     {"vip", "10.0.0.1"}, {"port", 80}, {"real", "10.0.0.6"}, {"kept", true}, {"state", "kept"},
                     {"idle_ms", 3200}, {"worker", 1}},
                    {{"service", nullptr}, {"protocol", "tcp"}, {"client_address", "192.0.2.1"}, {"client_port", 5555},
                     {"vip", "10.0.0.1"}, {"port", 80}, {"real", nullptr}, {"kept", false}, {"state", "no_service"},
                     {"idle_ms", 0}, {"why", "no service has this VIP, port and protocol now"}}}},
                  {"scanned", 10},
                  {"matched", 3},
                  {"truncated", true}}));
  r = call(R"({"id":1,"method":"conn.list"})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_FALSE(fake_.lastConnQuery->service);
  EXPECT_EQ(fake_.lastConnQuery->limit, 1000u) << "the default";
  EXPECT_FALSE(r["result"].contains("counts")) << "counts only for limit 0";
  // limit 0: no entries asked for, the counts by service and real instead.
  fake_.connListResult.conns.clear();
  r = call(R"({"id":1,"method":"conn.list","params":{"limit":0}})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(r["result"]["counts"],
            (json{{{"service", "web"}, {"real", "10.0.0.6"}, {"kept", 2}, {"not_kept", 0}},
                  {{"service", nullptr}, {"real", nullptr}, {"kept", 0}, {"not_kept", 1}}}));
  EXPECT_EQ(r["result"]["truncated"], false) << "nothing was asked to be listed";

  struct Row { const char* params; const char* field; };
  const Row rows[] = {
      {R"({"service":"nope"})", "params.service"},
      {R"({"real":"10.0.0"})", "params.real"},
      {R"({"client_address":7})", "params.client_address"},
      {R"({"limit":-1})", "params.limit"},
      {R"({"limit":10001})", "params.limit"},
      {R"({"limit":"all"})", "params.limit"},
      {R"({"worker":1})", "params.worker"},
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(row.params);
    fake_.lastConnQuery.reset();
    r = call(std::string(R"({"id":1,"method":"conn.list","params":)") + row.params + "}");
    ASSERT_EQ(r["ok"], false);
    EXPECT_EQ(r["error"]["field"], row.field) << r.dump();
    EXPECT_FALSE(fake_.lastConnQuery) << "refused before the table is read";
  }
  fake_.connListError = "xdp: read the connection table: Bad file descriptor";
  r = call(R"({"id":1,"method":"conn.list"})");
  ASSERT_EQ(r["ok"], false);
  EXPECT_EQ(r["error"]["message"], fake_.connListError);
}

// conn.list is answered when the backend is done (keeld walks the table
// off its loop), not by handleLine: the outcome holds no response, and the
// one sent later echoes the request's id.
TEST_F(DispatcherTest, ConnListIsAnsweredWhenTheBackendIsDone) {
  fake_.holdConnLists = true;
  DispatchOutcome out = dispatcher_.handleLine(R"({"id":"c1","method":"conn.list","params":{"limit":0}})");
  ASSERT_TRUE(out.later);
  EXPECT_TRUE(out.response.is_null());
  std::vector<json> sent;
  out.later([&](json r) { sent.push_back(std::move(r)); });
  EXPECT_TRUE(sent.empty()) << "nothing before the backend answers";
  ASSERT_EQ(fake_.heldConnLists.size(), 1u);
  ConnList list;
  list.scanned = 5;
  list.matched = 2;
  list.counts = {ConnCount{"web", IpAddress::parse("10.0.0.6"), 2, 0}};
  fake_.heldConnLists[0](Status::ok(), list);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0]["id"], "c1");
  ASSERT_EQ(sent[0]["ok"], true) << sent[0].dump();
  EXPECT_EQ(sent[0]["result"]["scanned"], 5);
  EXPECT_EQ(sent[0]["result"]["counts"].size(), 1u);

  // An error from the walk is the request's error, with its id.
  out = dispatcher_.handleLine(R"({"id":2,"method":"conn.list"})");
  ASSERT_TRUE(out.later);
  out.later([&](json r) { sent.push_back(std::move(r)); });
  ASSERT_EQ(fake_.heldConnLists.size(), 2u);
  fake_.heldConnLists[1](Status::error("xdp: read the connection table: Bad file descriptor"), {});
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[1]["id"], 2);
  EXPECT_EQ(sent[1]["ok"], false);
  EXPECT_EQ(sent[1]["error"]["message"], "xdp: read the connection table: Bad file descriptor");
}

TEST_F(DispatcherTest, LookupRejectsMismatches) {
  struct Row { const char* params; const char* field; const char* message; };
  fake_.services.push_back(FakeBackend::makeService("any", "10.0.0.3", 0, {"10.0.0.8"}));
  // A port-0 service beside web on web's VIP: port 80 is web's.
  fake_.services.push_back(FakeBackend::makeService("all", "10.0.0.1", 0, {"10.0.0.9"}));
  fake_.services.push_back(FakeBackend::makeService("v6", "2001:db8::10", 80, {"2001:db8::11"}));
  const Row rows[] = {
      {R"({"service":"web","client_address":"192.0.2.1","client_port":1,"protocol":"udp"})", "params.protocol",
       "services[web]: service is tcp, lookup asked for udp"},
      {R"({"service":"web","client_address":"2001:db8::1","client_port":1})", "params.client_address",
       "services[web]: client 2001:db8::1 and VIP 10.0.0.1 are different address families"},
      {R"({"service":"web","client_address":"224.0.0.1","client_port":1})", "params.client_address",
       "services[web]: client 224.0.0.1 is no single host's address: the data planes drop its packets "
       "(drop_bad_source)"},
      {R"({"service":"web","client_address":"10.0.0.1","client_port":1})", "params.client_address",
       "services[web]: client 10.0.0.1 is the VIP itself: the data planes drop its packets (drop_bad_source)"},
      {R"({"service":"v6","client_address":"::1","client_port":1})", "params.client_address",
       "services[v6]: client ::1 is no single host's address: the data planes drop its packets (drop_bad_source)"},
      {R"({"service":"v6","client_address":"::ffff:192.0.2.1","client_port":1})", "params.client_address",
       "services[v6]: client ::ffff:192.0.2.1 is no single host's address: the data planes drop its packets "
       "(drop_bad_source)"},
      {R"({"service":"v6","client_address":"ff02::1","client_port":1})", "params.client_address",
       "services[v6]: client ff02::1 is no single host's address: the data planes drop its packets "
       "(drop_bad_source)"},
      {R"({"service":"web","client_address":"192.0.2.1","client_port":1,"port":81})", "params.port",
       "services[web]: service port is 80, lookup asked for 81"},
      {R"({"service":"any","client_address":"192.0.2.1","client_port":1})", "params.port",
       "services[any]: service listens on every port: give the destination port"},
      {R"({"service":"all","client_address":"192.0.2.1","client_port":1,"port":80})", "params.port",
       "services[all]: port 80 of 10.0.0.1/tcp is service web's, which takes its flows before this port-0 "
       "service: look the flow up there"},
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(row.params);
    json r = call(std::string(R"({"id":1,"method":"lookup","params":)") + row.params + "}");
    ASSERT_EQ(r["ok"], false);
    EXPECT_EQ(r["error"]["field"], row.field);
    EXPECT_EQ(r["error"]["message"], row.message);
  }
  json r = call(R"({"id":1,"method":"lookup","params":{"service":"any","client_address":"192.0.2.1","client_port":1,"port":8080}})");
  EXPECT_EQ(r["result"]["real"], "10.0.0.8");
  EXPECT_EQ(r["result"]["port"], 8080);
  // Another port of web's VIP is the port-0 service's.
  r = call(R"({"id":1,"method":"lookup","params":{"service":"all","client_address":"192.0.2.1","client_port":1,"port":81}})");
  EXPECT_EQ(r["result"]["real"], "10.0.0.9") << r.dump();
  // Every real drained: the ring is empty, lookup says so instead of guessing.
  for (auto& real : fake_.services[0].reals) real.draining = true;
  FakeBackend::refresh(fake_.services[0]);
  r = call(R"({"id":1,"method":"lookup","params":{"service":"web","client_address":"192.0.2.1","client_port":1}})");
  ASSERT_EQ(r["ok"], true);
  EXPECT_TRUE(r["result"]["real"].is_null());
  EXPECT_TRUE(r["result"]["slot"].is_null());
}

}  // namespace
}  // namespace keel::api
