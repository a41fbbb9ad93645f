// SPDX-License-Identifier: Apache-2.0
// The control protocol's error codes, stable for scripts (docs/api.md lists
// them): what keeld answers and keelctl reads, so a header of its own that
// the client includes without the server's interface.
#pragma once

namespace keel::api {

namespace code {
inline constexpr const char* kParseError = "parse_error";        // line is not JSON
inline constexpr const char* kInvalidRequest = "invalid_request";  // envelope wrong
inline constexpr const char* kUnknownMethod = "unknown_method";
inline constexpr const char* kInvalidParams = "invalid_params";  // params wrong
inline constexpr const char* kNotFound = "not_found";            // service/real unknown
inline constexpr const char* kExists = "already_exists";
inline constexpr const char* kInvalidConfig = "invalid_config";  // config.check / reload
inline constexpr const char* kFailed = "failed";                  // backend refused, nothing changed
inline constexpr const char* kLineTooLong = "line_too_long";
inline constexpr const char* kBusy = "busy";                      // connection limit reached
inline constexpr const char* kForbidden = "forbidden";  // a method the read-only socket does not serve
inline constexpr const char* kTryLater = "try_later";  // conn.list: enough table reads running or waiting; retry
inline constexpr const char* kInternal = "internal";
}  // namespace code

}  // namespace keel::api
