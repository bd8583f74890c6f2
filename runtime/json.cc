// JsonValue accessors, the strict recursive-descent parser and the two serialisers.
#include "runtime/json.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <unordered_set>

namespace edgetrain {

// ---------------------------------------------------------------------------------------------
// JsonValue

JsonValue JsonValue::array() {
  JsonValue v;
  v.type_ = Type::kArray;
  return v;
}

JsonValue JsonValue::object() {
  JsonValue v;
  v.type_ = Type::kObject;
  return v;
}

void JsonValue::set_number(double v) {
  type_ = Type::kNumber;
  number_ = v;
  // Integral doubles in int64 range are also exact integers: "1e3" and "2.0" are ints. The bound
  // is exclusive because 2^63 itself is a double but not an int64.
  is_int_ = std::isfinite(v) && v == std::trunc(v) && v >= -9223372036854775808.0 &&
            v < 9223372036854775808.0;
  int_ = is_int_ ? static_cast<int64_t>(v) : 0;
}

const std::string& JsonValue::as_string() const {
  static const std::string kEmpty;
  return is_string() ? string_ : kEmpty;
}

size_t JsonValue::size() const {
  if (is_array()) return items_.size();
  if (is_object()) return members_.size();
  return 0;
}

const JsonValue* JsonValue::at(size_t i) const {
  return is_array() && i < items_.size() ? &items_[i] : nullptr;
}

const std::vector<JsonValue>& JsonValue::items() const {
  static const std::vector<JsonValue> kEmpty;
  return is_array() ? items_ : kEmpty;
}

JsonValue& JsonValue::push_back(JsonValue v) {
  if (is_null()) type_ = Type::kArray;
  ET_CHECK(is_array());
  items_.push_back(std::move(v));
  return items_.back();
}

const JsonValue* JsonValue::find(std::string_view key) const {
  if (!is_object()) return nullptr;
  for (const JsonMember& m : members_)
    if (m.key == key) return &m.value;
  return nullptr;
}

JsonValue* JsonValue::find(std::string_view key) {
  return const_cast<JsonValue*>(static_cast<const JsonValue*>(this)->find(key));
}

const std::vector<JsonMember>& JsonValue::members() const {
  static const std::vector<JsonMember> kEmpty;
  return is_object() ? members_ : kEmpty;
}

JsonValue& JsonValue::set(std::string key, JsonValue v) {
  if (is_null()) type_ = Type::kObject;
  ET_CHECK(is_object());
  if (JsonValue* existing = find(key)) {
    *existing = std::move(v);
    return *existing;
  }
  members_.push_back(JsonMember{std::move(key), std::move(v)});
  return members_.back().value;
}

std::string JsonValue::get_string(std::string_view key, std::string_view fallback) const {
  const JsonValue* v = find(key);
  return v != nullptr && v->is_string() ? v->string_ : std::string(fallback);
}

double JsonValue::get_double(std::string_view key, double fallback) const {
  const JsonValue* v = find(key);
  return v != nullptr ? v->as_double(fallback) : fallback;
}

int64_t JsonValue::get_int(std::string_view key, int64_t fallback) const {
  const JsonValue* v = find(key);
  return v != nullptr ? v->as_int(fallback) : fallback;
}

bool JsonValue::get_bool(std::string_view key, bool fallback) const {
  const JsonValue* v = find(key);
  return v != nullptr ? v->as_bool(fallback) : fallback;
}

const JsonValue* JsonValue::get_array(std::string_view key) const {
  const JsonValue* v = find(key);
  return v != nullptr && v->is_array() ? v : nullptr;
}

const JsonValue* JsonValue::get_object(std::string_view key) const {
  const JsonValue* v = find(key);
  return v != nullptr && v->is_object() ? v : nullptr;
}

bool JsonValue::operator==(const JsonValue& o) const {
  if (type_ != o.type_) return false;
  switch (type_) {
    case Type::kNull: return true;
    case Type::kBool: return bool_ == o.bool_;
    case Type::kNumber:
      // Two exact integers compare exactly (doubles lose precision beyond 2^53).
      if (is_int_ && o.is_int_) return int_ == o.int_;
      return number_ == o.number_;
    case Type::kString: return string_ == o.string_;
    case Type::kArray: return items_ == o.items_;
    case Type::kObject:
      if (members_.size() != o.members_.size()) return false;
      for (size_t i = 0; i < members_.size(); ++i)
        if (members_[i].key != o.members_[i].key || !(members_[i].value == o.members_[i].value))
          return false;
      return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// UTF-8 helpers shared by the parser (validation) and the serialiser (repair).

// Length of the valid UTF-8 sequence starting at s[0] (1..4), or 0 when the bytes there are not
// valid UTF-8: bad lead byte, truncated sequence, overlong form, surrogate, or above U+10FFFF.
static size_t utf8_sequence_length(const unsigned char* s, size_t avail) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  size_t len;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;  // continuation byte as lead, C0/C1 (always overlong), F5..FF
  }
  if (avail < len) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((s[k] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[k] & 0x3F);
  }
  if (len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return 0;
  if (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return 0;
  return len;
}

static void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// ---------------------------------------------------------------------------------------------
// Parser

class JsonParser {
 public:
  JsonParser(std::string_view text, const JsonParseOptions& options)
      : text_(text), options_(options) {}

  Result<JsonValue> parse_document(size_t* error_offset) {
    JsonValue root;
    skip_whitespace();
    bool ok = parse_value(root, 0);
    if (ok) {
      skip_whitespace();
      if (pos_ != text_.size()) ok = fail("end of document after the top-level value");
    }
    if (ok) return root;
    if (error_offset != nullptr) *error_offset = error_pos_;
    return corrupt_data("json: at byte " + std::to_string(error_pos_) + " (" + line_column() +
                        "): " + error_);
  }

 private:
  // Records "expected <what>, found <the byte at pos_>" as the error. Returns false so callers
  // can `return fail(...)`.
  bool fail(const std::string& what) {
    return fail_at(pos_, "expected " + what + ", found " + found(pos_));
  }
  bool fail_at(size_t pos, std::string message) {
    error_pos_ = pos;
    error_ = std::move(message);
    return false;
  }
  std::string found(size_t pos) const {
    if (pos >= text_.size()) return "the end of the input";
    unsigned char c = static_cast<unsigned char>(text_[pos]);
    if (c >= 0x20 && c < 0x7F) return std::string("'") + static_cast<char>(c) + "'";
    char hex[16];
    std::snprintf(hex, sizeof hex, "byte 0x%02X", c);
    return hex;
  }

  std::string line_column() const {
    size_t line = 1, column = 1;
    for (size_t i = 0; i < error_pos_ && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    return "line " + std::to_string(line) + ", column " + std::to_string(column);
  }

  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return at_end() ? '\0' : text_[pos_]; }

  void skip_whitespace() {
    while (!at_end()) {
      char c = text_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }

  bool consume_literal(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  bool parse_value(JsonValue& out, int depth) {
    switch (peek()) {
      case '{': return parse_object(out, depth + 1);
      case '[': return parse_array(out, depth + 1);
      case '"':
        out.type_ = JsonValue::Type::kString;
        return parse_string(out.string_);
      case 't':
        if (!consume_literal("true")) return fail("a value ('true')");
        out = JsonValue(true);
        return true;
      case 'f':
        if (!consume_literal("false")) return fail("a value ('false')");
        out = JsonValue(false);
        return true;
      case 'n':
        if (!consume_literal("null")) return fail("a value ('null')");
        out = JsonValue();
        return true;
      default:
        if (peek() == '-' || (peek() >= '0' && peek() <= '9')) return parse_number(out);
        return fail("a value (object, array, string, number, true, false or null)");
    }
  }

  bool check_depth(int depth) {
    if (depth <= options_.max_depth) return true;
    return fail_at(pos_, "nesting deeper than the limit of " + std::to_string(options_.max_depth) +
                             " arrays/objects");
  }

  bool parse_array(JsonValue& out, int depth) {
    if (!check_depth(depth)) return false;
    out = JsonValue::array();
    ++pos_;  // '['
    skip_whitespace();
    if (peek() == ']') {
      ++pos_;
      return true;
    }
    while (true) {
      skip_whitespace();
      out.items_.emplace_back();
      if (!parse_value(out.items_.back(), depth)) return false;
      skip_whitespace();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == ']') {
        ++pos_;
        return true;
      }
      return fail("',' or ']' after an array element");
    }
  }

  bool parse_object(JsonValue& out, int depth) {
    if (!check_depth(depth)) return false;
    out = JsonValue::object();
    ++pos_;  // '{'
    skip_whitespace();
    if (peek() == '}') {
      ++pos_;
      return true;
    }
    // Hash set of the keys so far: duplicate detection stays linear even for a header with
    // hundreds of thousands of tensors.
    std::unordered_set<std::string> seen;
    while (true) {
      skip_whitespace();
      if (peek() != '"') return fail("a string key");
      size_t key_pos = pos_;
      std::string key;
      if (!parse_string(key)) return false;
      if (!seen.insert(key).second)
        return fail_at(key_pos, "duplicate object key \"" + key.substr(0, 200) + "\"");
      skip_whitespace();
      if (peek() != ':') return fail("':' after an object key");
      ++pos_;
      skip_whitespace();
      JsonValue value;
      if (!parse_value(value, depth)) return false;
      out.members_.push_back(JsonMember{std::move(key), std::move(value)});
      skip_whitespace();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == '}') {
        ++pos_;
        return true;
      }
      return fail("',' or '}' after an object member");
    }
  }

  static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // Reads the 4 hex digits of a \u escape at pos_ (just after "\u").
  bool parse_hex4(uint32_t& out) {
    out = 0;
    for (int k = 0; k < 4; ++k) {
      int h = pos_ < text_.size() ? hex_value(text_[pos_]) : -1;
      if (h < 0) return fail("4 hex digits after \\u");
      out = (out << 4) | static_cast<uint32_t>(h);
      ++pos_;
    }
    return true;
  }

  bool parse_string(std::string& out) {
    ++pos_;  // opening quote
    while (true) {
      if (at_end()) return fail("'\"' to close the string");
      unsigned char c = static_cast<unsigned char>(text_[pos_]);
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c < 0x20) return fail_at(pos_, "unescaped control character (" + found(pos_) + ") in a string");
      if (c == '\\') {
        size_t escape_pos = pos_;
        ++pos_;
        char e = peek();
        if (!at_end()) ++pos_;
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            uint32_t cp;
            if (!parse_hex4(cp)) return false;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
              return fail_at(escape_pos, "unpaired low surrogate \\u" + hex4(cp) + " in a string");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              // UTF-16 pair: a high surrogate must be followed by an escaped low surrogate.
              if (!consume_literal("\\u"))
                return fail("'\\u' and a low surrogate after the high surrogate \\u" + hex4(cp));
              size_t low_pos = pos_ - 2;
              uint32_t low;
              if (!parse_hex4(low)) return false;
              if (low < 0xDC00 || low > 0xDFFF)
                return fail_at(low_pos, "expected a low surrogate (\\uDC00..\\uDFFF) after \\u" +
                                            hex4(cp) + ", found \\u" + hex4(low));
              cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            }
            append_utf8(out, cp);
            break;
          }
          default:
            pos_ = escape_pos + 1;
            return fail("one of \" \\ / b f n r t u after '\\'");
        }
        continue;
      }
      size_t len = utf8_sequence_length(reinterpret_cast<const unsigned char*>(text_.data()) + pos_,
                                        text_.size() - pos_);
      if (len == 0) return fail_at(pos_, "invalid UTF-8 (" + found(pos_) + ") in a string");
      out.append(text_.data() + pos_, len);
      pos_ += len;
    }
  }

  static std::string hex4(uint32_t v) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04X", v);
    return buf;
  }

  bool digits(size_t& count) {
    count = 0;
    while (!at_end() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      ++pos_;
      ++count;
    }
    return count > 0;
  }

  // number = [ '-' ] int [ frac ] [ exp ]; int = '0' | [1-9][0-9]*
  bool parse_number(JsonValue& out) {
    size_t start = pos_;
    bool negative = false;
    if (peek() == '-') {
      negative = true;
      ++pos_;
    }
    size_t int_start = pos_, n;
    if (peek() == '0') {
      ++pos_;
      if (peek() >= '0' && peek() <= '9') return fail_at(pos_ - 1, "leading zero in a number");
    } else if (!digits(n)) {
      return fail("a digit");
    }
    size_t int_end = pos_;
    bool integral_syntax = true;
    if (peek() == '.') {
      ++pos_;
      integral_syntax = false;
      if (!digits(n)) return fail("a digit after the decimal point");
    }
    int64_t exponent = 0;
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      integral_syntax = false;
      bool exp_negative = false;
      if (peek() == '+' || peek() == '-') exp_negative = text_[pos_++] == '-';
      size_t exp_start = pos_;
      if (!digits(n)) return fail("a digit in the exponent");
      for (size_t i = exp_start; i < pos_ && exponent < 100000; ++i) exponent = exponent * 10 + (text_[i] - '0');
      if (exp_negative) exponent = -exponent;
    }
    const char* first = text_.data() + start;
    const char* last = text_.data() + pos_;

    if (integral_syntax) {
      // Exact int64 when it fits; otherwise fall through to double.
      int64_t v;
      auto [p, ec] = std::from_chars(first, last, v);
      if (ec == std::errc() && p == last) {
        out = JsonValue(v);
        return true;
      }
    }
    double d;
    auto [p, ec] = std::from_chars(first, last, d);
    if (ec == std::errc::result_out_of_range) {
      // Decimal magnitude of the number: position of its first nonzero digit plus the exponent.
      // Above zero it overflowed a double; otherwise it underflowed and rounds to (signed) zero.
      int64_t magnitude = exponent;
      size_t first_nonzero = std::string::npos;
      for (size_t i = int_start; i < pos_ && text_[i] != 'e' && text_[i] != 'E'; ++i)
        if (text_[i] >= '1' && text_[i] <= '9') {
          first_nonzero = i;
          break;
        }
      if (first_nonzero == std::string::npos) {
        magnitude = 0;
      } else if (first_nonzero < int_end) {
        magnitude += static_cast<int64_t>(int_end - first_nonzero);
      } else {
        magnitude -= static_cast<int64_t>(first_nonzero - int_end - 1);
      }
      if (magnitude > 0) return fail_at(start, "number out of the range of a double");
      d = negative ? -0.0 : 0.0;
    } else if (ec != std::errc() || p != last) {
      return fail_at(start, "malformed number");  // not reachable for text the grammar above accepted
    }
    out = JsonValue(d);
    return true;
  }

  std::string_view text_;
  JsonParseOptions options_;
  size_t pos_ = 0;
  size_t error_pos_ = 0;
  std::string error_;
};

Result<JsonValue> parse_json(std::string_view text, const JsonParseOptions& options,
                             size_t* error_offset) {
  return JsonParser(text, options).parse_document(error_offset);
}

// ---------------------------------------------------------------------------------------------
// Serialiser

static void write_string(std::string& out, const std::string& s) {
  out += '"';
  const auto* bytes = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = bytes[i];
    switch (c) {
      case '"': out += "\\\""; ++i; continue;
      case '\\': out += "\\\\"; ++i; continue;
      case '\b': out += "\\b"; ++i; continue;
      case '\f': out += "\\f"; ++i; continue;
      case '\n': out += "\\n"; ++i; continue;
      case '\r': out += "\\r"; ++i; continue;
      case '\t': out += "\\t"; ++i; continue;
      default: break;
    }
    if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04X", c);
      out += buf;
      ++i;
      continue;
    }
    size_t len = utf8_sequence_length(bytes + i, s.size() - i);
    if (len == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER for one invalid byte
      ++i;
      continue;
    }
    out.append(s, i, len);
    i += len;
  }
  out += '"';
}

static void write_number(std::string& out, const JsonValue& v) {
  char buf[32];
  if (v.is_int()) {
    auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v.as_int());
    out.append(buf, p);
    return;
  }
  double d = v.as_double();
  if (!std::isfinite(d)) {
    out += "null";
    return;
  }
  // Shortest representation that reads back to the same double (locale independent).
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, d);
  out.append(buf, p);
}

static void write_value(std::string& out, const JsonValue& v, int indent, int level) {
  auto newline = [&](int lvl) {
    if (indent <= 0) return;
    out += '\n';
    out.append(static_cast<size_t>(indent) * static_cast<size_t>(lvl), ' ');
  };
  switch (v.type()) {
    case JsonValue::Type::kNull: out += "null"; return;
    case JsonValue::Type::kBool: out += v.as_bool() ? "true" : "false"; return;
    case JsonValue::Type::kNumber: write_number(out, v); return;
    case JsonValue::Type::kString: write_string(out, v.as_string()); return;
    case JsonValue::Type::kArray: {
      if (v.size() == 0) {
        out += "[]";
        return;
      }
      out += '[';
      bool first = true;
      for (const JsonValue& item : v.items()) {
        if (!first) out += ',';
        first = false;
        newline(level + 1);
        write_value(out, item, indent, level + 1);
      }
      newline(level);
      out += ']';
      return;
    }
    case JsonValue::Type::kObject: {
      if (v.size() == 0) {
        out += "{}";
        return;
      }
      out += '{';
      bool first = true;
      for (const JsonMember& m : v.members()) {
        if (!first) out += ',';
        first = false;
        newline(level + 1);
        write_string(out, m.key);
        out += indent > 0 ? ": " : ":";
        write_value(out, m.value, indent, level + 1);
      }
      newline(level);
      out += '}';
      return;
    }
  }
}

std::string to_json(const JsonValue& value) {
  std::string out;
  write_value(out, value, 0, 0);
  return out;
}

std::string to_json_pretty(const JsonValue& value, int indent) {
  std::string out;
  write_value(out, value, indent < 1 ? 1 : indent, 0);
  return out;
}

}  // namespace edgetrain
