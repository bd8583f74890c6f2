// A small strict JSON value, parser and serialiser (RFC 8259): safetensors headers, the CLI's
// `--json` summaries and the planner's reports.
//
// Strict means: one value per document and nothing after it but whitespace; no comments, no
// trailing commas, no NaN/Infinity literals, no leading zeros or '+'; strings must be valid UTF-8
// with control characters escaped; \uXXXX surrogates must pair; duplicate object keys are
// rejected (a safetensors header with two tensors of one name is ambiguous, not "last wins").
// Objects keep their members in insertion order, so serialising is deterministic.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "runtime/status.h"

namespace edgetrain {

struct JsonMember;

class JsonValue {
 public:
  enum class Type : uint8_t { kNull, kBool, kNumber, kString, kArray, kObject };

  JsonValue() = default;  // null
  JsonValue(std::nullptr_t) {}  // NOLINT: implicit, so `obj.set("x", nullptr)` reads naturally
  JsonValue(bool b) : type_(Type::kBool), bool_(b) {}  // NOLINT
  // Any integer type: kept exactly (int64), also available as a double. Unsigned values above
  // INT64_MAX become plain doubles.
  template <std::integral I>
    requires(!std::same_as<I, bool>)
  JsonValue(I v) {  // NOLINT
    if constexpr (std::is_unsigned_v<I>) {
      if (static_cast<uint64_t>(v) > static_cast<uint64_t>(INT64_MAX)) {
        set_number(static_cast<double>(v));
        return;
      }
    }
    set_int(static_cast<int64_t>(v));
  }
  template <std::floating_point F>
  JsonValue(F v) {  // NOLINT
    set_number(static_cast<double>(v));
  }
  // Without these a string literal would silently convert to bool.
  JsonValue(const char* s) : type_(Type::kString), string_(s) {}  // NOLINT
  JsonValue(std::string_view s) : type_(Type::kString), string_(s) {}  // NOLINT
  JsonValue(std::string s) : type_(Type::kString), string_(std::move(s)) {}  // NOLINT

  static JsonValue array();
  static JsonValue object();

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_number() const { return type_ == Type::kNumber; }
  // A number with an integral value that int64 holds exactly ("3", "-7", "1e3", "2.0").
  bool is_int() const { return type_ == Type::kNumber && is_int_; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }

  // Typed reads; the default comes back when the value has another type.
  bool as_bool(bool fallback = false) const { return is_bool() ? bool_ : fallback; }
  double as_double(double fallback = 0.0) const { return is_number() ? number_ : fallback; }
  // Exact for integers written without fraction or exponent, even beyond 2^53.
  int64_t as_int(int64_t fallback = 0) const { return is_int() ? int_ : fallback; }
  // An empty string when this is not a string.
  const std::string& as_string() const;

  // Arrays and objects: number of elements / members; 0 for anything else.
  size_t size() const;
  // Array element i, or nullptr when this is not an array or i is out of range.
  const JsonValue* at(size_t i) const;
  // Elements of an array (empty for anything else).
  const std::vector<JsonValue>& items() const;
  // Appends to an array (a null value becomes an empty array first). Returns the new element.
  JsonValue& push_back(JsonValue v);

  // Object member by key, or nullptr when absent or this is not an object. Linear search:
  // objects here are small, and order matters more than lookup speed.
  const JsonValue* find(std::string_view key) const;
  JsonValue* find(std::string_view key);
  // Members of an object in insertion order (empty for anything else).
  const std::vector<JsonMember>& members() const;
  // Sets a member: replaces the value of an existing key in place, otherwise appends. A null
  // value becomes an empty object first. Returns the stored value.
  JsonValue& set(std::string key, JsonValue v);

  // Convenience getters for objects: the member's value, or the fallback when the member is
  // absent or has another type.
  std::string get_string(std::string_view key, std::string_view fallback = {}) const;
  double get_double(std::string_view key, double fallback = 0.0) const;
  int64_t get_int(std::string_view key, int64_t fallback = 0) const;
  bool get_bool(std::string_view key, bool fallback = false) const;
  const JsonValue* get_array(std::string_view key) const;   // nullptr unless an array
  const JsonValue* get_object(std::string_view key) const;  // nullptr unless an object

  // Structural equality; numbers compare by value (so 1 == 1.0), objects member by member in
  // order.
  bool operator==(const JsonValue& other) const;

 private:
  void set_int(int64_t v) {
    type_ = Type::kNumber;
    int_ = v;
    number_ = static_cast<double>(v);
    is_int_ = true;
  }
  void set_number(double v);
  friend class JsonParser;

  Type type_ = Type::kNull;
  bool bool_ = false;
  bool is_int_ = false;
  int64_t int_ = 0;
  double number_ = 0.0;
  std::string string_;
  std::vector<JsonValue> items_;     // arrays
  std::vector<JsonMember> members_;  // objects
};

struct JsonMember {
  std::string key;
  JsonValue value;
};

struct JsonParseOptions {
  // Deepest nesting of arrays/objects accepted: bounds the parser's recursion, so a hostile
  // "[[[[..." cannot overflow the stack.
  int max_depth = 128;
};

// Parses one JSON document. Errors are kCorruptData with a message like
// "json: at byte 17 (line 2, column 5): expected ',' or '}' after an object member";
// when error_offset is given it receives that byte offset (the position where the document
// stopped being valid JSON).
Result<JsonValue> parse_json(std::string_view text, const JsonParseOptions& options = {},
                             size_t* error_offset = nullptr);

// Compact serialisation: no whitespace at all. Deterministic: members in insertion order,
// numbers in the shortest form that reads back to the same double, integers exactly. NaN and
// infinities (which JSON cannot express) become null. Strings are escaped as needed ('"', '\\',
// control characters); invalid UTF-8 bytes become U+FFFD so the output is always valid JSON.
std::string to_json(const JsonValue& value);
// Pretty serialisation: `indent` spaces per level, one element/member per line, "key": value,
// empty arrays and objects as [] and {}. No trailing newline.
std::string to_json_pretty(const JsonValue& value, int indent = 2);

}  // namespace edgetrain
