// SPDX-License-Identifier: Apache-2.0
// What keeld answered, read with care. The socket is the caller's to name
// (--socket, KEELCTL_SOCKET), so the peer may be no keeld, or a broken one
// (security review L2): keelctl reaches a reply's values only through
// Reply, which names the member that is missing or of another type than
// keelctl reads (ReplyError, said once by main(): exit 1, or 3 for the
// answer to a change, which keeld may have applied), and prints its
// text only through visibleText() or visibleMessage(), so nothing in it can
// drive the terminal.
// (How deep a reply may nest is bounded before it is parsed: ApiClient.)
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace keel::cli {

using nlohmann::json;

// A value `s` (a name, a state, a drain reason) as a terminal may show it:
// every byte of a character a terminal acts on or that makes the line read
// as other text is written \xHH, as keeld quotes values in its messages
// (printable() of common/text.h): the C0 controls (ESC among them), DEL,
// the C1 controls (U+0080..U+009F: CSI, NEL), the line and paragraph
// separators and the bidirectional marks, overrides and isolates, the set
// keeld refuses in a drain reason (isValidDrainReason, input review L3),
// the zero-width characters (isZeroWidthCodePoint: "web" and "web" with a
// U+200B after it would print alike) and any byte of no valid UTF-8
// sequence. A `\` is written `\\`, so what is shown reads back one way: a
// reason of the four characters `\x1b` shows `\\x1b`, never like an
// escaped ESC. Other text, non-ASCII letters too, is kept as it is (-o json
// has every value exactly).
std::string visibleText(std::string_view s);

// Text whose backslashes are already its own escapes, as visibleText()
// but for `\`, kept: keeld's messages (an error's message and details, a
// warning), which quote the values they name through printable() (`\\`,
// `\"`, `\xHH`), JSON text, and keelctl's own messages made of values
// already through visibleText(). Escaping those again would write keeld's
// `got "w\xc3\xa9b"` as `got "w\\xc3\\xa9b"`.
std::string visibleMessage(std::string_view s);

// `v` as -o json prints it (nlohmann's dump, invalid UTF-8 replaced). dump
// escapes the C0 controls in strings but writes DEL, the C1 controls and
// the rest of visibleText()'s set (the zero-width characters too) as they
// are: those are written \uXXXX, the same string to a JSON reader, so -o
// json on a terminal is as safe, and as plain, as a table.
std::string jsonText(const json& v, int indent);

// A JSON value as text: a string through visibleText(), a number or
// boolean as JSON writes it (an object or array too, through
// visibleMessage(): its strings are JSON's), null as "".
std::string str(const json& v);
// The same for a message (visibleMessage()): a string is keeld's text.
std::string messageStr(const json& v);

// A reply of a shape keelctl does not read: what() is the whole message,
// "unexpected reply from keeld to daemon.status: result.config.path:
// missing".
class ReplyError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A value of one of keeld's replies and where in it it is
// ("result.services[2].port"), for the error. Holds the reply alive, so it
// can be kept (stats --rate keeps the last sample).
class Reply {
 public:
  // The whole of `value`, which answered `method`, at `path` ("" for the
  // response line, "result" for a result made apart).
  Reply(json value, std::string method, std::string path = "");

  // A member keelctl needs: a ReplyError when this is no object or it is
  // absent (one there as null is there: isNull()).
  Reply operator[](std::string_view key) const;
  // A member that may be absent (an older keeld's reply): null then. A
  // ReplyError when this is no object.
  Reply get(std::string_view key) const;
  // The member `key` if this is an object whose `key` is an object, else an
  // empty object: a counter group's previous sample, which is all zeros
  // when the group appeared since (or this is no object at all).
  Reply objectOr(std::string_view key) const;
  // Whether this is an object that has `key` (json::contains).
  bool has(std::string_view key) const { return v_->is_object() && v_->contains(key); }

  // An array's elements; a ReplyError for anything else.
  std::vector<Reply> items() const;
  // An object's members, in its order; a ReplyError for anything else. A
  // key is as sent: print it through visibleText().
  std::vector<std::pair<std::string, Reply>> members() const;

  // The value as text (str()): a string through visibleText(), a number or
  // boolean as JSON writes it, null as "".
  std::string text() const;
  // The value as a message of keeld's (an error, a warning: messageStr()):
  // its `\` kept, as keeld's own escapes.
  std::string message() const;
  // A count, port or id: a non-negative integer, else a ReplyError.
  uint64_t count() const;
  // count(), or `absent` for null (an absent member: get()).
  uint64_t countOr(uint64_t absent) const { return v_->is_null() ? absent : count(); }
  // true or false, else a ReplyError.
  bool flag() const;
  bool flagOr(bool absent) const { return v_->is_null() ? absent : flag(); }

  bool isNull() const { return v_->is_null(); }
  bool isObject() const { return v_->is_object(); }
  bool isArray() const { return v_->is_array(); }
  bool isString() const { return v_->is_string(); }
  bool empty() const { return v_->empty(); }
  // The value itself, for -o json and for what takes any value (countText).
  const json& value() const { return *v_; }

 private:
  // A ReplyError naming this value: "PATH: WHAT".
  [[noreturn]] void fail(const std::string& what) const;
  struct Doc {
    json value;
    std::string method;
  };
  Reply(std::shared_ptr<const Doc> doc, const json* v, std::string path)
      : doc_(std::move(doc)), v_(v), path_(std::move(path)) {}
  std::string child(std::string_view key) const;
  // "expected an object, got an array".
  [[noreturn]] void wrongType(const char* expected) const;

  std::shared_ptr<const Doc> doc_;
  const json* v_;
  std::string path_;
};

}  // namespace keel::cli
