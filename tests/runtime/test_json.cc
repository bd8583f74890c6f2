// runtime/json: strict parsing (with error offsets), escapes, serialisation and round trips.
#include "runtime/json.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

namespace edgetrain {
namespace {

JsonValue parse_ok(std::string_view text) {
  Result<JsonValue> r = parse_json(text);
  EXPECT_TRUE(r.is_ok()) << "input: " << text << "\n" << r.status().to_string();
  return r.is_ok() ? r.value() : JsonValue();
}

// Parses text expecting failure; returns the reported byte offset.
size_t parse_error_offset(std::string_view text, std::string* message = nullptr,
                          const JsonParseOptions& options = {}) {
  size_t offset = static_cast<size_t>(-1);
  Result<JsonValue> r = parse_json(text, options, &offset);
  EXPECT_FALSE(r.is_ok()) << "accepted: " << text;
  if (!r.is_ok()) {
    EXPECT_EQ(r.status().code(), StatusCode::kCorruptData);
    if (message != nullptr) *message = r.status().message();
  }
  return offset;
}

TEST(Json, ParsesEveryValueType) {
  JsonValue v = parse_ok(R"( {"n": null, "t": true, "f": false, "i": -42, "d": 2.5e-3,
                              "s": "hi", "a": [1, [2], {}], "o": {"k": "v"}} )");
  ASSERT_TRUE(v.is_object());
  EXPECT_EQ(v.size(), 8u);
  EXPECT_TRUE(v.find("n")->is_null());
  EXPECT_TRUE(v.get_bool("t"));
  EXPECT_FALSE(v.get_bool("f", true));
  EXPECT_TRUE(v.find("i")->is_int());
  EXPECT_EQ(v.get_int("i"), -42);
  EXPECT_FALSE(v.find("d")->is_int());
  EXPECT_DOUBLE_EQ(v.get_double("d"), 2.5e-3);
  EXPECT_EQ(v.get_string("s"), "hi");
  const JsonValue* a = v.get_array("a");
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->size(), 3u);
  EXPECT_EQ(a->at(0)->as_int(), 1);
  EXPECT_EQ(a->at(1)->at(0)->as_int(), 2);
  EXPECT_TRUE(a->at(2)->is_object());
  EXPECT_EQ(a->at(3), nullptr);
  EXPECT_EQ(v.get_object("o")->get_string("k"), "v");
}

TEST(Json, GettersReturnFallbacksWhenAbsentOrOfAnotherType) {
  JsonValue v = parse_ok(R"({"s": "text", "n": 3})");
  EXPECT_EQ(v.find("missing"), nullptr);
  EXPECT_EQ(v.get_string("missing", "dflt"), "dflt");
  EXPECT_EQ(v.get_string("n", "dflt"), "dflt");
  EXPECT_EQ(v.get_int("s", 7), 7);
  EXPECT_DOUBLE_EQ(v.get_double("missing", 1.5), 1.5);
  EXPECT_EQ(v.get_array("s"), nullptr);
  EXPECT_EQ(v.get_object("n"), nullptr);
  // Accessors on the wrong kind of value are harmless.
  JsonValue num(3);
  EXPECT_EQ(num.find("x"), nullptr);
  EXPECT_EQ(num.at(0), nullptr);
  EXPECT_EQ(num.size(), 0u);
  EXPECT_EQ(num.as_string(), "");
  EXPECT_TRUE(num.items().empty());
  EXPECT_TRUE(num.members().empty());
}

TEST(Json, ObjectsKeepInsertionOrder) {
  JsonValue v = parse_ok(R"({"zeta": 1, "alpha": 2, "mid": 3})");
  ASSERT_EQ(v.members().size(), 3u);
  EXPECT_EQ(v.members()[0].key, "zeta");
  EXPECT_EQ(v.members()[1].key, "alpha");
  EXPECT_EQ(v.members()[2].key, "mid");
  EXPECT_EQ(to_json(v), R"({"zeta":1,"alpha":2,"mid":3})");
  // set() replaces in place, keeping the position.
  v.set("alpha", "two");
  v.set("new", nullptr);
  EXPECT_EQ(to_json(v), R"({"zeta":1,"alpha":"two","mid":3,"new":null})");
}

TEST(Json, IntegersStayExactBeyondDoublePrecision) {
  JsonValue v = parse_ok("[9007199254740993, -9223372036854775808, 9223372036854775807]");
  EXPECT_EQ(v.at(0)->as_int(), 9007199254740993LL);  // 2^53 + 1: not a double
  EXPECT_EQ(v.at(1)->as_int(), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(v.at(2)->as_int(), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(to_json(v), "[9007199254740993,-9223372036854775808,9223372036854775807]");
  // Beyond int64: a double, not an int.
  JsonValue big = parse_ok("9223372036854775808");
  EXPECT_FALSE(big.is_int());
  EXPECT_DOUBLE_EQ(big.as_double(), 9223372036854775808.0);
  // Integral values written with exponent or fraction are ints too.
  EXPECT_TRUE(parse_ok("1e3").is_int());
  EXPECT_EQ(parse_ok("1e3").as_int(), 1000);
  EXPECT_EQ(parse_ok("2.0").as_int(), 2);
  EXPECT_FALSE(parse_ok("2.5").is_int());
  EXPECT_EQ(parse_ok("2.5").as_int(-1), -1);
}

TEST(Json, NumbersAtTheEdgesOfDoubleRange) {
  EXPECT_DOUBLE_EQ(parse_ok("1.7976931348623157e308").as_double(), 1.7976931348623157e308);
  EXPECT_EQ(parse_ok("4.9e-324").as_double(), 4.9e-324);  // smallest subnormal
  EXPECT_EQ(parse_ok("1e-400").as_double(), 0.0);          // underflow rounds to zero
  EXPECT_TRUE(std::signbit(parse_ok("-1e-400").as_double()));
  EXPECT_EQ(parse_ok("0.0000e99999").as_double(), 0.0);
  std::string msg;
  EXPECT_EQ(parse_error_offset("[1, 1e400]", &msg), 4u);  // overflow is an error, not inf
  EXPECT_NE(msg.find("range"), std::string::npos) << msg;
  EXPECT_EQ(parse_error_offset("-123.4e309"), 0u);
}

TEST(Json, DecodesEveryEscape) {
  JsonValue v = parse_ok(R"("q\" b\\ s\/ \b\f\n\r\t \u0041\u00e9\u20AC \ud83d\ude00 \u0000end")");
  std::string expected = "q\" b\\ s/ \b\f\n\r\t A\xC3\xA9\xE2\x82\xAC \xF0\x9F\x98\x80 ";
  expected += '\0';
  expected += "end";
  EXPECT_EQ(v.as_string(), expected);
}

TEST(Json, RawUtf8PassesThroughAndInvalidUtf8IsRejected) {
  EXPECT_EQ(parse_ok("\"gr\xC3\xBC\xC3\x9F \xF0\x9F\x98\x80\"").as_string(), "gr\xC3\xBC\xC3\x9F \xF0\x9F\x98\x80");
  EXPECT_EQ(parse_error_offset("\"ab\xFF\""), 3u);          // not a UTF-8 byte
  EXPECT_EQ(parse_error_offset("\"ab\xC3\""), 3u);          // truncated sequence
  EXPECT_EQ(parse_error_offset("\"\xC0\xAF\""), 1u);        // overlong '/'
  EXPECT_EQ(parse_error_offset("\"x\xED\xA0\x80\""), 2u);   // UTF-8-encoded surrogate
}

TEST(Json, SurrogatesMustPair) {
  std::string msg;
  EXPECT_EQ(parse_error_offset(R"("ab\ude00")", &msg), 3u);  // lone low surrogate
  EXPECT_NE(msg.find("surrogate"), std::string::npos) << msg;
  EXPECT_EQ(parse_error_offset(R"("\ud83d")"), 7u);          // high surrogate then end of string
  EXPECT_EQ(parse_error_offset(R"("\ud83dx")"), 7u);
  EXPECT_EQ(parse_error_offset(R"("\ud83d\u0041")"), 7u);    // followed by a non-surrogate
  EXPECT_EQ(parse_error_offset(R"("\ud83d\ud83d")"), 7u);    // two highs
  EXPECT_EQ(parse_error_offset(R"("\u12G4")"), 5u);          // bad hex digit
}

TEST(Json, ErrorsReportTheOffsetAndWhatWasExpected) {
  std::string msg;
  EXPECT_EQ(parse_error_offset(R"({"a": 1 "b": 2})", &msg), 8u);
  EXPECT_NE(msg.find("at byte 8"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected ',' or '}'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("found '\"'"), std::string::npos) << msg;

  EXPECT_EQ(parse_error_offset("{\n  \"a\": tru\n}", &msg), 9u);
  EXPECT_NE(msg.find("line 2, column 8"), std::string::npos) << msg;

  EXPECT_EQ(parse_error_offset("[1, 2", &msg), 5u);
  EXPECT_NE(msg.find("found the end of the input"), std::string::npos) << msg;
}

TEST(Json, RejectsTrailingGarbage) {
  std::string msg;
  EXPECT_EQ(parse_error_offset("{} x", &msg), 3u);
  EXPECT_NE(msg.find("end of document"), std::string::npos) << msg;
  EXPECT_EQ(parse_error_offset("[1] [2]"), 4u);
  EXPECT_EQ(parse_error_offset("1 2"), 2u);
  EXPECT_EQ(parse_error_offset(std::string_view("{}\0", 3)), 2u);  // an embedded NUL
  parse_ok(" \t\r\n{} \t\r\n");  // surrounding whitespace is fine
}

TEST(Json, DuplicateKeysAreRejected) {
  std::string msg;
  EXPECT_EQ(parse_error_offset(R"({"w": 1, "b": 2, "w": 3})", &msg), 17u);
  EXPECT_NE(msg.find("duplicate object key \"w\""), std::string::npos) << msg;
}

TEST(Json, DepthLimitStopsDeepNesting) {
  JsonParseOptions options;
  options.max_depth = 4;
  EXPECT_TRUE(parse_json("[[[[1]]]]", options).is_ok());
  std::string msg;
  EXPECT_EQ(parse_error_offset("[[[[[1]]]]]", &msg, options), 4u);
  EXPECT_NE(msg.find("nesting deeper than the limit of 4"), std::string::npos) << msg;
  // The default limit keeps a hostile document from overflowing the stack.
  std::string deep(100000, '[');
  EXPECT_EQ(parse_error_offset(deep), 128u);
  std::string deep_objects;
  for (int i = 0; i < 100000; ++i) deep_objects += "{\"a\":";
  EXPECT_FALSE(parse_json(deep_objects).is_ok());
}

TEST(Json, MalformedDocumentsAreRejectedWithoutCrashing) {
  const char* bad[] = {
      "",                    // empty input
      "   ",                 // only whitespace
      "{",                   // unterminated object
      "[1, 2,]",             // trailing comma
      "{\"a\": 1,}",         // trailing comma in object
      "{a: 1}",              // unquoted key
      "{'a': 1}",            // single quotes
      "[01]",                // leading zero
      "[+1]",                // leading plus
      "[.5]",                // no integer part
      "[1.]",                // no fraction digits
      "[1e]",                // no exponent digits
      "[-]",                 // lone minus
      "[NaN]",               // not JSON
      "[Infinity]",          // not JSON
      "[nul]",               // truncated literal
      "[True]",              // wrong case
      "\"abc",               // unterminated string
      "\"a\tb\"",            // raw control character in a string
      "\"\\x41\"",           // unknown escape
      "\"\\u12\"",           // short \u escape
      "[1 2]",               // missing comma
      "{\"a\" 1}",           // missing colon
      "// comment\n{}",      // comments are not JSON
      "[1]]",                // extra bracket
      "{\"a\":1}}",          // extra brace
      "\"\\",                // escape at the end of the input
  };
  for (const char* text : bad) {
    size_t offset = static_cast<size_t>(-1);
    Result<JsonValue> r = parse_json(text, {}, &offset);
    EXPECT_FALSE(r.is_ok()) << "accepted: " << text;
    EXPECT_LE(offset, std::string_view(text).size()) << text;
    EXPECT_NE(r.status().message().find("json: at byte"), std::string::npos) << text;
  }
}

TEST(Json, CompactSerialisationEscapesCorrectly) {
  JsonValue s(std::string("a\"b\\c\n\t\x01\x1f\x7f/\xC3\xA9"));
  EXPECT_EQ(to_json(s), "\"a\\\"b\\\\c\\n\\t\\u0001\\u001F\\u007F/\xC3\xA9\"");
  std::string with_nul("x");
  with_nul += '\0';
  EXPECT_EQ(to_json(JsonValue(with_nul)), "\"x\\u0000\"");
  // Invalid UTF-8 cannot be written as JSON: it becomes U+FFFD, and the output parses.
  std::string out = to_json(JsonValue(std::string("bad\xFFz")));
  EXPECT_EQ(out, "\"bad\xEF\xBF\xBDz\"");
  EXPECT_TRUE(parse_json(out).is_ok());
}

TEST(Json, NonFiniteNumbersBecomeNull) {
  JsonValue a = JsonValue::array();
  a.push_back(std::numeric_limits<double>::quiet_NaN());
  a.push_back(std::numeric_limits<double>::infinity());
  a.push_back(-std::numeric_limits<float>::infinity());
  a.push_back(1.5f);
  EXPECT_EQ(to_json(a), "[null,null,null,1.5]");
}

TEST(Json, NumbersSerialiseShortestAndReadBackExactly) {
  const double values[] = {0.1, 1.0 / 3.0, -2.5e-308, 1e300, 123456789.125, 5e-324, 0.5};
  for (double d : values) {
    std::string text = to_json(JsonValue(d));
    Result<JsonValue> back = parse_json(text);
    ASSERT_TRUE(back.is_ok()) << text;
    EXPECT_EQ(back->as_double(), d) << text;
  }
  EXPECT_EQ(to_json(JsonValue(0.1)), "0.1");
  EXPECT_EQ(to_json(JsonValue(3.0)), "3");
  EXPECT_EQ(to_json(JsonValue(int64_t{-7})), "-7");
  // Above INT64_MAX an unsigned value is a double (2^64 after rounding), written without exponent.
  JsonValue huge(uint64_t{18446744073709551615ULL});
  EXPECT_FALSE(huge.is_int());
  EXPECT_EQ(parse_json(to_json(huge))->as_double(), 18446744073709551616.0);
}

TEST(Json, PrettySerialisationIsStable) {
  JsonValue v = JsonValue::object();
  v.set("name", "resnet18");
  v.set("empty_list", JsonValue::array());
  v.set("empty_obj", JsonValue::object());
  JsonValue& shape = v.set("shape", JsonValue::array());
  shape.push_back(64);
  shape.push_back(3);
  v.set("nested", JsonValue::object()).set("ok", true);
  const char* expected =
      "{\n"
      "  \"name\": \"resnet18\",\n"
      "  \"empty_list\": [],\n"
      "  \"empty_obj\": {},\n"
      "  \"shape\": [\n"
      "    64,\n"
      "    3\n"
      "  ],\n"
      "  \"nested\": {\n"
      "    \"ok\": true\n"
      "  }\n"
      "}";
  EXPECT_EQ(to_json_pretty(v), expected);
  EXPECT_EQ(to_json(v),
            R"({"name":"resnet18","empty_list":[],"empty_obj":{},"shape":[64,3],"nested":{"ok":true}})");
}

TEST(Json, RoundTripsThroughBothSerialisers) {
  const char* docs[] = {
      R"({"a":[1,2.5,-3e-7,true,false,null,"x\ny"],"b":{"c":{}},"d":[]})",
      R"([{"__metadata__":{"format":"pt"}},"\u00e9\ud83d\ude00",-0.0,1e-300])",
      R"("just a string")",
      "42",
      "null",
  };
  for (const char* doc : docs) {
    JsonValue v = parse_ok(doc);
    Result<JsonValue> compact = parse_json(to_json(v));
    Result<JsonValue> pretty = parse_json(to_json_pretty(v, 3));
    ASSERT_TRUE(compact.is_ok()) << to_json(v);
    ASSERT_TRUE(pretty.is_ok()) << to_json_pretty(v, 3);
    EXPECT_EQ(compact.value(), v) << doc;
    EXPECT_EQ(pretty.value(), v) << doc;
    // Serialising is a fixed point: text -> value -> text -> value -> text gives the same text.
    EXPECT_EQ(to_json(compact.value()), to_json(v));
  }
}

TEST(Json, EqualityComparesStructure) {
  EXPECT_EQ(parse_ok("[1, 2.0]"), parse_ok("[1.0, 2]"));
  EXPECT_FALSE(parse_ok(R"({"a":1,"b":2})") == parse_ok(R"({"b":2,"a":1})"));  // order matters
  EXPECT_FALSE(parse_ok("[9007199254740993]") == parse_ok("[9007199254740992]"));
  EXPECT_FALSE(parse_ok("\"1\"") == parse_ok("1"));
}

}  // namespace
}  // namespace edgetrain
