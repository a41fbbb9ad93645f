// SPDX-License-Identifier: Apache-2.0
#include "cli/reply.h"

namespace keel::cli {

namespace {

// "a string", "null", "-5": what a value is, for "expected X, got Y". A
// number is said as it is (ASCII); a string is not quoted, so the message
// cannot carry what the peer put in it.
std::string describe(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return v.get<bool>() ? "true" : "false";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: return v.dump();
    default: return "a value of no JSON type";
  }
}

const json& nullValue() {
  static const json kNull;
  return kNull;
}

}  // namespace

std::string str(const json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

Reply::Reply(json value, std::string method, std::string path) : v_(nullptr), path_(std::move(path)) {
  auto doc = std::make_shared<Doc>(Doc{std::move(value), std::move(method)});
  v_ = &doc->value;
  doc_ = std::move(doc);
}

std::string Reply::child(std::string_view key) const {
  return (path_.empty() ? "" : path_ + ".") + std::string(key);
}

void Reply::fail(const std::string& what) const {
  throw ReplyError("unexpected reply from keeld to " + doc_->method + ": " +
                   (path_.empty() ? std::string("the response") : path_) + ": " + what);
}

void Reply::wrongType(const char* expected) const {
  fail(std::string("expected ") + expected + ", got " + describe(*v_));
}

Reply Reply::operator[](std::string_view key) const {
  if (!v_->is_object()) wrongType("an object");
  const auto it = v_->find(key);
  if (it == v_->end()) Reply(doc_, &nullValue(), child(key)).fail("missing");
  return Reply(doc_, &*it, child(key));
}

Reply Reply::get(std::string_view key) const {
  if (!v_->is_object()) wrongType("an object");
  const auto it = v_->find(key);
  return Reply(doc_, it == v_->end() ? &nullValue() : &*it, child(key));
}

std::vector<Reply> Reply::items() const {
  if (!v_->is_array()) wrongType("an array");
  std::vector<Reply> out;
  out.reserve(v_->size());
  for (size_t i = 0; i < v_->size(); ++i) out.push_back(Reply(doc_, &(*v_)[i], path_ + "[" + std::to_string(i) + "]"));
  return out;
}

std::vector<std::pair<std::string, Reply>> Reply::members() const {
  if (!v_->is_object()) wrongType("an object");
  std::vector<std::pair<std::string, Reply>> out;
  for (auto it = v_->begin(); it != v_->end(); ++it)
    out.emplace_back(it.key(), Reply(doc_, &it.value(), child(it.key())));
  return out;
}

std::string Reply::text() const { return str(*v_); }

uint64_t Reply::count() const {
  if (!v_->is_number_unsigned()) wrongType("a non-negative integer");
  return v_->get<uint64_t>();
}

bool Reply::flag() const {
  if (!v_->is_boolean()) wrongType("true or false");
  return v_->get<bool>();
}

}  // namespace keel::cli
