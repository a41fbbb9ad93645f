// SPDX-License-Identifier: Apache-2.0
// keel.yaml `health:` blocks: service defaults, per-real overrides, and
// errors that point at file, line and key.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "control/health/health_yaml.h"

namespace keel {
namespace {

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& e : v) s += e + "\n";
  return s;
}

TEST(HealthYaml, ServiceDefaultsAndRealOverrides) {
  YAML::Node doc = YAML::Load(R"(
service:
  type: http
  path: /healthz
  expect: "200-299"
  interval: 500ms
  timeout: 2s
  rise: 3
  fall: 5
real:
  port: 8081
  source: 10.0.0.1
)");
  std::vector<std::string> errors;
  HealthSpecBuilder svc;
  svc.apply(doc["service"], "keel.yaml", "services[0].health", errors);
  HealthSpecBuilder real = svc;
  real.apply(doc["real"], "keel.yaml", "services[0].reals[0].health", errors);
  ASSERT_TRUE(errors.empty()) << joined(errors);
  const HealthCheckSpec* spec = &real.build();
  EXPECT_EQ(spec->type, HealthCheckSpec::Type::Http);
  EXPECT_EQ(spec->path, "/healthz");
  EXPECT_EQ(spec->statusMin, 200);
  EXPECT_EQ(spec->statusMax, 299);
  EXPECT_EQ(spec->interval, HealthDuration(500));
  EXPECT_EQ(spec->timeout, HealthDuration(2000));
  EXPECT_EQ(spec->rise, 3u);
  EXPECT_EQ(spec->fall, 5u);
  EXPECT_EQ(spec->port, 8081);
  ASSERT_TRUE(spec->source);
  EXPECT_EQ(spec->source->toString(), "10.0.0.1");

  const HealthCheckSpec* base = &svc.build();
  EXPECT_EQ(base->port, 0) << "without an override the service port is used";
  EXPECT_FALSE(base->source);
}

TEST(HealthYaml, AbsentBlockGivesDefaults) {
  std::vector<std::string> errors;
  HealthSpecBuilder b;
  b.apply(YAML::Node(), "keel.yaml", "services[0].health", errors);
  EXPECT_TRUE(errors.empty());
  EXPECT_EQ(b.build(), HealthCheckSpec{});
}

TEST(HealthYaml, ExpectFollowsTheFinalType) {
  YAML::Node doc = YAML::Load(R"(
service: { type: http, expect: "200" }
real: { type: udp, expect: "PONG", payload: "PING" }
)");
  std::vector<std::string> errors;
  HealthSpecBuilder b;
  b.apply(doc["service"], "k.yaml", "s.health", errors);
  b.apply(doc["real"], "k.yaml", "r.health", errors);
  ASSERT_TRUE(errors.empty()) << joined(errors);
  const HealthCheckSpec& spec = b.build();
  EXPECT_EQ(spec.type, HealthCheckSpec::Type::Udp);
  EXPECT_EQ(spec.udpExpect, "PONG");
  EXPECT_EQ(spec.udpPayload, "PING");

  HealthSpecBuilder tcp;
  tcp.apply(YAML::Load("{type: tcp, expect: '200'}"), "k.yaml", "x.health", errors);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors.back(), "k.yaml:1: x.health.expect: only http and udp checks use expect (this check is tcp)");
}

// path and host are http's, payload udp's, expect both's; tcp and none take
// none of them. The type that counts is the one in effect at the layer
// that sets the key: its own, or else the one it inherits.
TEST(HealthYaml, AKeyTheTypeDoesNotUseIsAnErrorWhereItIsSet) {
  struct Row {
    const char* block;
    const char* error;  // "" = accepted
  };
  const Row rows[] = {
      {"{type: tcp, path: /h}", "k.yaml:1: s.health.path: only http checks use path (this check is tcp)"},
      {"{path: /h}", "k.yaml:1: s.health.path: only http checks use path (this check is tcp)"},  // tcp by default
      {"{type: udp, host: h.example}", "k.yaml:1: s.health.host: only http checks use host (this check is udp)"},
      {"{type: http, payload: x}", "k.yaml:1: s.health.payload: only udp checks use payload (this check is http)"},
      {"{type: none, expect: '200'}", "k.yaml:1: s.health.expect: only http and udp checks use expect (this check is none)"},
      {"{type: tcp, payload: ''}", "k.yaml:1: s.health.payload: only udp checks use payload (this check is tcp)"},
      {"{type: tcp, require_reply: true}",
       "k.yaml:1: s.health.require_reply: only udp checks use require_reply (this check is tcp)"},
      {"{type: http, require_reply: false}",
       "k.yaml:1: s.health.require_reply: only udp checks use require_reply (this check is http)"},
      {"{require_reply: true}",  // tcp by default
       "k.yaml:1: s.health.require_reply: only udp checks use require_reply (this check is tcp)"},
      {"{type: udp, payload: PING, require_reply: true}", ""},
      {"{type: http, path: /h, host: h.example, expect: '200-299'}", ""},
      {"{type: udp, payload: PING, expect: PONG}", ""},
      {"{type: tcp, port: 81, interval: 1s, timeout: 1s, rise: 1, fall: 1, source: 10.0.0.1}", ""},
      // An unreadable type is reported once, not again for each key.
      {"{type: htp, path: /h}", "k.yaml:1: s.health.type: must be one of none, tcp, http, udp, got \"htp\""},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.block);
    std::vector<std::string> errors;
    HealthSpecBuilder b;
    b.apply(YAML::Load(row.block), "k.yaml", "s.health", errors);
    if (*row.error == '\0') {
      EXPECT_TRUE(errors.empty()) << joined(errors);
    } else {
      ASSERT_EQ(errors.size(), 1u) << joined(errors);
      EXPECT_EQ(errors[0], row.error);
    }
  }

  // Inherited type: the real's path under the service's tcp is the real's
  // mistake; the service's keys are fine.
  std::vector<std::string> svcErrors, realErrors;
  HealthSpecBuilder b;
  b.apply(YAML::Load("{type: tcp, port: 81}"), "k.yaml", "s.health", svcErrors);
  b.apply(YAML::Load("{path: /h}"), "k.yaml", "r.health", realErrors);
  EXPECT_TRUE(svcErrors.empty()) << joined(svcErrors);
  ASSERT_EQ(realErrors.size(), 1u) << joined(realErrors);
  EXPECT_EQ(realErrors[0], "k.yaml:1: r.health.path: only http checks use path (this check is tcp)");

  // A real that sets http itself may set them; one that inherits http too.
  std::vector<std::string> errors;
  HealthSpecBuilder own;
  own.apply(YAML::Load("{type: tcp}"), "k.yaml", "s.health", errors);
  own.apply(YAML::Load("{path: /h, type: http}"), "k.yaml", "r.health", errors);
  HealthSpecBuilder inherits;
  inherits.apply(YAML::Load("{type: http}"), "k.yaml", "s.health", errors);
  inherits.apply(YAML::Load("{path: /r}"), "k.yaml", "r.health", errors);
  EXPECT_TRUE(errors.empty()) << joined(errors);
  EXPECT_EQ(own.build().path, "/h");
  EXPECT_EQ(inherits.build().path, "/r");
}

TEST(HealthYaml, ChangingTheTypeDropsTheInheritedTypeKeys) {
  YAML::Node doc = YAML::Load(R"(
http: { type: http, path: /h, host: h.example, expect: "200-299", interval: 2s }
udp: { type: udp, payload: PING, expect: PONG }
)");
  std::vector<std::string> errors;
  HealthSpecBuilder svc;
  svc.apply(doc["http"], "k.yaml", "s.health", errors);
  HealthSpecBuilder tcp = svc;
  tcp.apply(YAML::Load("{type: tcp}"), "k.yaml", "r.health", errors);
  ASSERT_TRUE(errors.empty()) << joined(errors);
  const HealthCheckSpec* t = &tcp.build();
  EXPECT_EQ(t->type, HealthCheckSpec::Type::Tcp);
  EXPECT_EQ(t->path, "/");
  EXPECT_EQ(t->host, "");
  EXPECT_EQ(t->interval, HealthDuration(2000));

  HealthSpecBuilder udp = svc;
  udp.apply(YAML::Load("{port: 53, type: udp}"), "k.yaml", "r.health", errors);
  ASSERT_TRUE(errors.empty()) << joined(errors);
  const HealthCheckSpec* u = &udp.build();
  EXPECT_EQ(u->udpExpect, "") << "http's \"200-299\" is not a udp reply";

  HealthSpecBuilder back;
  back.apply(doc["udp"], "k.yaml", "s.health", errors);
  back.apply(YAML::Load("{type: http}"), "k.yaml", "r.health", errors);
  const HealthCheckSpec* h = &back.build();
  EXPECT_EQ(h->statusMin, 200);
  EXPECT_EQ(h->statusMax, 399);
  EXPECT_EQ(h->udpPayload, "");
  EXPECT_TRUE(errors.empty()) << joined(errors);

  // The type is taken first whatever the key order, so a layer's own keys
  // survive its type change and are checked against its type.
  HealthSpecBuilder own = svc;
  own.apply(YAML::Load("{expect: '200', type: tcp}"), "k.yaml", "r.health", errors);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "k.yaml:1: r.health.expect: only http and udp checks use expect (this check is tcp)");
}

// require_reply: a udp key like payload, exactly true or false, and never
// a `false` that an expect in the same check would override.
TEST(HealthYaml, RequireReply) {
  auto build = [](std::initializer_list<const char*> layers, std::vector<std::string>& errors) {
    HealthSpecBuilder b;
    int i = 0;
    for (const char* layer : layers) {
      b.apply(YAML::Load(layer), "k.yaml", i++ == 0 ? "s.health" : "r.health", errors);
    }
    return b.build();
  };
  std::vector<std::string> errors;
  EXPECT_FALSE(build({"{type: udp}"}, errors).udpRequireReply) << "default: today's behaviour";
  EXPECT_TRUE(build({"{type: udp, require_reply: true}"}, errors).udpRequireReply);
  EXPECT_TRUE(build({"{type: udp, require_reply: 'true'}"}, errors).udpRequireReply)
      << "a quoted true, as a JSON string gives it, reads the same as metrics.enabled's";
  // Layers: inherited like payload; a real may turn it off; a real that
  // changes the type drops it, one that restates the same type keeps it.
  EXPECT_TRUE(build({"{type: udp, require_reply: true}", "{port: 53}"}, errors).udpRequireReply);
  EXPECT_TRUE(build({"{type: udp, require_reply: true}", "{type: udp}"}, errors).udpRequireReply);
  EXPECT_FALSE(build({"{type: udp, require_reply: true}", "{require_reply: false}"}, errors).udpRequireReply);
  EXPECT_FALSE(build({"{type: udp, require_reply: true}", "{type: tcp}"}, errors).udpRequireReply);
  EXPECT_FALSE(build({"{type: udp, require_reply: true}", "{type: tcp}", "{type: udp}"}, errors).udpRequireReply);
  // With an expect a reply is needed anyway: `true` beside it is redundant
  // and accepted (keepalived's require_reply carries the expected bytes);
  // a real's expect overrides a `false` it inherits.
  HealthCheckSpec both = build({"{type: udp, expect: PONG, require_reply: true}"}, errors);
  EXPECT_EQ(both.udpExpect, "PONG");
  HealthCheckSpec overrides = build({"{type: udp, require_reply: false}", "{expect: PONG}"}, errors);
  EXPECT_EQ(overrides.udpExpect, "PONG");
  ASSERT_TRUE(errors.empty()) << joined(errors);

  struct Row {
    std::vector<const char*> layers;
    const char* error;
  };
  const Row rows[] = {
      {{"{type: udp, require_reply: yes}"}, "k.yaml:1: s.health.require_reply: must be true or false, got \"yes\""},
      {{"{type: udp, require_reply: 1}"}, "k.yaml:1: s.health.require_reply: must be true or false, got \"1\""},
      {{"{type: udp, require_reply: True}"}, "k.yaml:1: s.health.require_reply: must be true or false, got \"True\""},
      {{"{type: udp, require_reply: ''}"}, "k.yaml:1: s.health.require_reply: must be true or false, got \"\""},
      {{"{type: udp, require_reply: [true]}"}, "k.yaml:1: s.health.require_reply: must be a scalar, got a list"},
      // Whatever the key order, and wherever the expect comes from, a
      // layer's own `false` next to an expect is refused at that key.
      {{"type: udp\nrequire_reply: false\nexpect: PONG\n"},
       "k.yaml:2: s.health.require_reply: false has no effect with expect \"PONG\": a udp check with expect "
       "always needs a matching reply (remove require_reply, or expect)"},
      {{"{type: udp, expect: PONG}", "{port: 53,\n require_reply: false}"},
       "k.yaml:2: r.health.require_reply: false has no effect with expect \"PONG\": a udp check with expect "
       "always needs a matching reply (remove require_reply, or expect)"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.layers.back());
    std::vector<std::string> rowErrors;
    HealthSpecBuilder b;
    for (size_t i = 0; i < row.layers.size(); ++i)
      b.apply(YAML::Load(row.layers[i]), "k.yaml", i == 0 ? "s.health" : "r.health", rowErrors);
    ASSERT_EQ(rowErrors.size(), 1u) << joined(rowErrors);
    EXPECT_EQ(rowErrors[0], row.error);
  }
}

// keelctl's --health reaches keeld as JSON, and daemon_backend.cc's
// jsonToYaml hands YAML::Load(json.dump()) to this same builder: a JSON
// boolean is the YAML scalar true, a number or string is refused alike.
TEST(HealthYaml, RequireReplyFromApiJson) {
  auto viaJson = [](const nlohmann::json& j, std::vector<std::string>& errors) {
    HealthSpecBuilder b;
    b.apply(YAML::Load(j.dump()), "request", "params.real.health", errors);
    return b.build();
  };
  std::vector<std::string> errors;
  HealthCheckSpec spec = viaJson({{"type", "udp"}, {"payload", "PING"}, {"require_reply", true}}, errors);
  ASSERT_TRUE(errors.empty()) << joined(errors);
  EXPECT_TRUE(spec.udpRequireReply);
  EXPECT_EQ(spec.udpPayload, "PING");
  viaJson({{"type", "udp"}, {"require_reply", 1}}, errors);
  viaJson({{"type", "tcp"}, {"require_reply", false}}, errors);
  ASSERT_EQ(errors.size(), 2u) << joined(errors);
  EXPECT_EQ(errors[0], "request:1: params.real.health.require_reply: must be true or false, got \"1\"");
  EXPECT_EQ(errors[1],
            "request:1: params.real.health.require_reply: only udp checks use require_reply (this check is tcp)");
}

// An API request's value out of range is shown as it was given: a JSON
// number as a number, text in quotes (docs review L6: "rise": 0 read
// got "0").
TEST(HealthYaml, OutOfRangeValuesAreShownAsGiven) {
  auto tagged = [](std::initializer_list<std::pair<const char*, const char*>> kv, const char* tag) {
    YAML::Node map(YAML::NodeType::Map);
    for (const auto& [k, v] : kv) {
      YAML::Node n(v);
      n.SetTag(tag);
      map[k] = n;
    }
    return map;
  };
  std::vector<std::string> errors;
  HealthSpecBuilder b;
  b.apply(tagged({{"rise", "0"}, {"port", "65536"}, {"fall", "1.5"}}, kJsonNumberTag), "request", "params.health",
          errors);
  b.apply(tagged({{"type", "http"}}, kJsonStringTag), "request", "params.health", errors);
  b.apply(tagged({{"expect", "600"}}, kJsonNumberTag), "request", "params.health", errors);
  b.apply(tagged({{"expect", "600"}}, kJsonStringTag), "request", "params.health", errors);
  b.apply(YAML::Load("{rise: 0}"), "keel.yaml", "services[0].health", errors);
  EXPECT_EQ(errors, (std::vector<std::string>{
                        "request: params.health.rise: must be an integer 1..1000, got 0",
                        "request: params.health.port: must be an integer 1..65535, got 65536",
                        "request: params.health.fall: must be an integer 1..1000, got 1.5",
                        "request: params.health.expect: http status range 600 must lie within 100-599 with MIN <= MAX",
                        "request: params.health.expect: http status range \"600\" must lie within 100-599 with MIN "
                        "<= MAX",
                        "keel.yaml:1: services[0].health.rise: must be an integer 1..1000, got \"0\""}));
}

TEST(HealthYaml, ErrorsNameFileLineAndKey) {
  YAML::Node doc = YAML::Load("health:\n  type: icmp\n  interval: 5\n  rise: 0\n  bogus: 1\n  source: nope\n");
  std::vector<std::string> errors;
  HealthSpecBuilder b;
  b.apply(doc["health"], "keel.yaml", "services[2].health", errors);
  std::string all = joined(errors);
  EXPECT_EQ(errors.size(), 5u) << all;
  for (const char* part : {"keel.yaml:2: services[2].health.type: must be one of none, tcp, http, udp, got \"icmp\"",
                           "keel.yaml:3: services[2].health.interval: must be a duration from 1ms to 1440m (one day)",
                           "keel.yaml:4: services[2].health.rise:", "keel.yaml:5: services[2].health.bogus: unknown key",
                           "keel.yaml:6: services[2].health.source: must be an IP address, got \"nope\""}) {
    EXPECT_NE(all.find(part), std::string::npos) << part << "\n" << all;
  }
  HealthSpecBuilder bad;
  bad.apply(YAML::Load("{expect: '600', type: http}"), "keel.yaml", "h", errors);
  EXPECT_NE(errors.back().find("keel.yaml:1: h.expect: http status range \"600\" must lie within 100-599"),
            std::string::npos)
      << errors.back();
}

// An empty value (`expect:` and nothing) is reported at its key's line,
// not at the next token's (yaml-cpp's mark for it), which may be lines
// further down past comments and blank lines.
TEST(HealthYaml, AnEmptyValueIsReportedAtItsKeysLine) {
  YAML::Node doc = YAML::Load("health:\n  type: http\n  expect:\n\n  # a comment\n  path: /\n  host:\n");
  std::vector<std::string> errors;
  HealthSpecBuilder b;
  b.apply(doc["health"], "keel.yaml", "services[0].health", errors);
  EXPECT_EQ(joined(errors),
            "keel.yaml:3: services[0].health.expect: must be a scalar, got nothing (null)\n"
            "keel.yaml:7: services[0].health.host: must be a scalar, got nothing (null)\n");
}

// A status range that only interim 1xx responses fall in can never pass
// (the check reads past them; of 100-199 only 101 is a final status): a
// mistake at the key, in the file and in a request. One with 101 or a code
// of 200 or more passes.
TEST(HealthYaml, AnExpectOnlyInterimResponsesFallInIsRefused) {
  for (const char* range : {"100", "102-199", "103", "100-100"}) {
    std::vector<std::string> errors;
    HealthSpecBuilder b;
    b.apply(YAML::Load(std::string("{type: http, expect: '") + range + "'}"), "keel.yaml", "h", errors);
    EXPECT_EQ(joined(errors), "keel.yaml:1: h.expect: http status range \"" + std::string(range) +
                                  "\" can never pass: a check judges the final response's status, and of 100-199 "
                                  "only 101 is one (the others are interim responses it reads past)\n")
        << range;
  }
  for (const char* range : {"101", "100-199", "199-200", "100-599", "204"}) {
    std::vector<std::string> errors;
    HealthSpecBuilder b;
    b.apply(YAML::Load(std::string("{type: http, expect: '") + range + "'}"), "keel.yaml", "h", errors);
    EXPECT_TRUE(errors.empty()) << range << "\n" << joined(errors);
  }
  // The checker's own test says the same of a spec built another way.
  HealthCheckSpec spec;
  spec.type = HealthCheckSpec::Type::Http;
  spec.statusMin = 102;
  spec.statusMax = 150;
  EXPECT_EQ(healthTargetProblems(HealthTarget{"web", *IpAddress::parse("10.0.0.5"), 80, spec}),
            (std::vector<HealthProblem>{{"expect", "http status range 102-150 can never pass: a check judges the "
                                                   "final response's status, and of 100-199 only 101 is one (the "
                                                   "others are interim responses it reads past)"}}));
}

// `payload:` with nothing reads as null, not as the empty payload: the
// error says how to write that.
TEST(HealthYaml, AnEmptyPayloadKeySaysHowToWriteAnEmptyPayload) {
  std::vector<std::string> errors;
  HealthSpecBuilder b;
  b.apply(YAML::Load("health:\n  type: udp\n  payload:\n")["health"], "keel.yaml", "h", errors);
  EXPECT_EQ(joined(errors),
            "keel.yaml:3: h.payload: must be a scalar, got nothing (null); an empty payload is written payload: \"\"\n");
  errors.clear();
  HealthSpecBuilder quoted;
  quoted.apply(YAML::Load("{type: udp, payload: \"\"}"), "keel.yaml", "h", errors);
  EXPECT_TRUE(errors.empty()) << joined(errors);
  EXPECT_EQ(quoted.build().udpPayload, "");
}

TEST(HealthYaml, NotAMapping) {
  std::vector<std::string> errors;
  HealthSpecBuilder b;
  b.apply(YAML::Load("[1, 2]"), "keel.yaml", "services[0].health", errors);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("must be a mapping"), std::string::npos);
}

TEST(HealthYaml, Durations) {
  EXPECT_EQ(parseHealthDuration("250ms"), HealthDuration(250));
  EXPECT_EQ(parseHealthDuration("3s"), HealthDuration(3000));
  EXPECT_EQ(parseHealthDuration("2m"), HealthDuration(120000));
  EXPECT_EQ(parseHealthDuration("1440m"), HealthDuration(86'400'000));
  // Hours, as node durations take them, up to the same one day.
  EXPECT_EQ(parseHealthDuration("1h"), HealthDuration(3'600'000));
  EXPECT_EQ(parseHealthDuration("24h"), HealthDuration(86'400'000));
  // The last three would wrap to a small number of milliseconds if
  // multiplied before the bound check.
  for (const char* bad : {"", "1", "ms", "0s", "0h", "1.5s", "-1s", "+1s", "1 s", "1d", "1hm", "25h", "2000m", "s",
                          "1441m", "86400001ms", "307445734561826m", "18446744073709552s",
                          "18446744073709551615ms"}) {
    EXPECT_FALSE(parseHealthDuration(bad)) << bad;
  }
}

// A unit the node's durations do not take is refused with the list of the
// ones they do; one they take but beyond a day is refused by range alike.
TEST(HealthYaml, DurationErrorsListTheUnits) {
  std::vector<std::string> errors;
  HealthSpecBuilder b;
  b.apply(YAML::Load("interval: 1h\ntimeout: 2s\n"), "k.yaml", "s.health", errors);
  ASSERT_TRUE(errors.empty()) << joined(errors);
  EXPECT_EQ(b.build().interval, std::chrono::hours(1));
  b.apply(YAML::Load("interval: 1d\ntimeout: 25h\n"), "k.yaml", "s.health", errors);
  ASSERT_EQ(errors.size(), 2u) << joined(errors);
  EXPECT_EQ(errors[0],
            "k.yaml:1: s.health.interval: must be a duration from 1ms to 1440m (one day), an integer and "
            "ms, s, m or h like 500ms, 1s, 2m or 1h, got \"1d\"");
  EXPECT_EQ(errors[1],
            "k.yaml:2: s.health.timeout: must be a duration from 1ms to 1440m (one day), an integer and "
            "ms, s, m or h like 500ms, 1s, 2m or 1h, got \"25h\"");
  EXPECT_EQ(b.build().interval, std::chrono::hours(1)) << "a refused value changes nothing";
  EXPECT_EQ(b.build().timeout, std::chrono::seconds(2));
}

}  // namespace
}  // namespace keel
