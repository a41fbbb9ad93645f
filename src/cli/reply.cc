// SPDX-License-Identifier: Apache-2.0
#include "cli/reply.h"

#include <algorithm>
#include <cstdio>

#include "common/text.h"

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

// What keelctl shows escaped, in tables and in -o json alike.
bool escapedOnDisplay(char32_t cp) { return isHiddenCodePoint(cp) || isZeroWidthCodePoint(cp); }

// visibleText() and visibleMessage(), which differ only in `\`.
std::string visible(std::string_view s, bool escapeBackslash) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    char32_t cp = 0;
    const size_t n = decodeUtf8(s, i, cp);
    if (n == 1 && cp == '\\' && escapeBackslash) {
      out += "\\\\";
    } else if (n && !escapedOnDisplay(cp)) {
      out.append(s, i, n);
    } else {
      for (size_t k = 0; k < std::max<size_t>(n, 1); ++k) appendHexEscape(out, static_cast<unsigned char>(s[i + k]));
    }
    i += std::max<size_t>(n, 1);
  }
  return out;
}

}  // namespace

std::string visibleText(std::string_view s) { return visible(s, true); }

std::string visibleMessage(std::string_view s) { return visible(s, false); }

std::string jsonText(const json& v, int indent) {
  const std::string dumped = v.dump(indent, ' ', false, json::error_handler_t::replace);
  std::string out;
  out.reserve(dumped.size());
  for (size_t i = 0; i < dumped.size();) {
    // dump writes valid UTF-8 (invalid bytes replaced) and escapes the C0
    // controls of strings, so those left are its own layout (indent's
    // newlines). Any byte of 0x7f and up is inside a string, where \uXXXX
    // is the same character (U+007F..U+FFFF: one escape, no surrogates).
    char32_t cp = 0;
    const size_t n = decodeUtf8(dumped, i, cp);
    if (n && cp >= 0x7f && escapedOnDisplay(cp)) {
      char escape[12];
      std::snprintf(escape, sizeof escape, "\\u%04x", static_cast<unsigned>(cp));
      out += escape;
    } else {
      out.append(dumped, i, std::max<size_t>(n, 1));
    }
    i += std::max<size_t>(n, 1);
  }
  return out;
}

std::string str(const json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return visibleText(v.get_ref<const std::string&>());
  return visibleMessage(v.dump(-1, ' ', false, json::error_handler_t::replace));
}

std::string messageStr(const json& v) {
  return v.is_string() ? visibleMessage(v.get_ref<const std::string&>()) : str(v);
}

Reply::Reply(json value, std::string method, std::string path) : v_(nullptr), path_(std::move(path)) {
  auto doc = std::make_shared<Doc>(Doc{std::move(value), std::move(method)});
  v_ = &doc->value;
  doc_ = std::move(doc);
}

std::string Reply::child(std::string_view key) const {
  return (path_.empty() ? "" : path_ + ".") + visibleText(key);
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

Reply Reply::objectOr(std::string_view key) const {
  static const json kEmpty = json::object();
  const auto it = v_->is_object() ? v_->find(key) : v_->end();
  return Reply(doc_, v_->is_object() && it != v_->end() && it->is_object() ? &*it : &kEmpty, child(key));
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

std::string Reply::message() const { return messageStr(*v_); }

uint64_t Reply::count() const {
  if (!v_->is_number_unsigned()) wrongType("a non-negative integer");
  return v_->get<uint64_t>();
}

bool Reply::flag() const {
  if (!v_->is_boolean()) wrongType("true or false");
  return v_->get<bool>();
}

}  // namespace keel::cli
