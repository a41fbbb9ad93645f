// SPDX-License-Identifier: Apache-2.0
// Duplicate keys in JSON text: found while parsing, for the control API's
// requests (dispatcher.cc) and keelctl's --health argument (cli/context.cc).
#pragma once

#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace keel::api {

// nlohmann::json keeps the last of a key an object gives twice, so
// {"weight": 0, "weight": 100} would silently mean 100. The parser's
// callback sees every key of every object in order: this records the path
// of the first key seen twice ("params.reals[1].address"), so the request
// can be refused instead of guessed at.
class DuplicateKeyFinder {
 public:
  bool onEvent(nlohmann::json::parse_event_t event, const nlohmann::json& parsed) {
    switch (event) {
      case nlohmann::json::parse_event_t::object_start:
      case nlohmann::json::parse_event_t::array_start:
        stack_.push_back(Frame{event == nlohmann::json::parse_event_t::array_start, {}, {}, 0});
        break;
      case nlohmann::json::parse_event_t::key:
        if (!stack_.empty()) {
          Frame& f = stack_.back();
          f.key = parsed.get<std::string>();
          if (!f.keys.insert(f.key).second && !duplicate_) duplicate_ = path();
        }
        break;
      case nlohmann::json::parse_event_t::object_end:
      case nlohmann::json::parse_event_t::array_end:
        if (!stack_.empty()) stack_.pop_back();
        elementDone();
        break;
      case nlohmann::json::parse_event_t::value:
        elementDone();
        break;
    }
    return true;  // keep everything: the caller decides
  }
  const std::optional<std::string>& duplicate() const { return duplicate_; }
  // The path of the value being read when the parse stopped ("id",
  // "params.reals[1].weight"; "" at the top): where a number too large for
  // a double is, the parser stopping at it (Dispatcher::handleLine).
  std::string where() const { return path(); }

 private:
  // One per open object or list. No frame keeps its own path: the path is
  // spelled from the stack only for the one duplicate reported, so the work
  // stays linear in the text (a path copied into every frame cost the
  // length of a long key once per list under it: a 1 MiB request of one
  // 500,000-byte key over 170,000 empty lists held keeld's loop ~4 s).
  struct Frame {
    bool array;
    std::set<std::string> keys;  // objects: the keys seen so far
    std::string key;             // objects: the key whose value is being read
    size_t index;                // lists: the element being read
  };
  // The path of the value being read ("params.reals[1].address").
  std::string path() const {
    std::string p;
    for (const Frame& f : stack_) {
      if (f.array) {
        p += "[" + std::to_string(f.index) + "]";
      } else {
        if (!p.empty()) p += ".";
        p += f.key;
      }
    }
    return p;
  }
  void elementDone() {
    if (!stack_.empty() && stack_.back().array) ++stack_.back().index;
  }
  std::vector<Frame> stack_;
  std::optional<std::string> duplicate_;
};

// nlohmann::json::parse of `input` (text, or a stream) that notes in
// `duplicates` the first key given twice; allowExceptions as nlohmann's
// (false: a syntax error gives a discarded value).
template <typename Input>
nlohmann::json parseNotingDuplicates(Input&& input, DuplicateKeyFinder& duplicates, bool allowExceptions) {
  return nlohmann::json::parse(
      std::forward<Input>(input),
      [&duplicates](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
        return duplicates.onEvent(event, parsed);
      },
      allowExceptions);
}

}  // namespace keel::api
