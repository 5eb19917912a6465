#include "text_command.h"

namespace kv::text {

namespace {

// How many bytes of whitespace start `rest` (0: none). UTF-8 sequences of
// the code points String.split/1 divides on; anything else, valid UTF-8 or
// not, is part of a word, as it is for Elixir.
std::size_t whitespace_at(std::string_view rest)
{
    const auto byte = [&rest](std::size_t i) { return static_cast<unsigned char>(rest[i]); };
    const unsigned char first = byte(0);
    if (first == ' ' || (first >= '\t' && first <= '\r'))
        return 1;
    if (first == 0xC2 && rest.size() >= 2 && byte(1) == 0x85) // U+0085 NEXT LINE
        return 2;
    if (rest.size() < 3)
        return 0;
    const unsigned second = byte(1), third = byte(2);
    if (first == 0xE1)
        return second == 0x9A && third == 0x80 ? 3 : 0; // U+1680 OGHAM SPACE MARK
    if (first == 0xE3)
        return second == 0x80 && third == 0x80 ? 3 : 0; // U+3000 IDEOGRAPHIC SPACE
    if (first != 0xE2)
        return 0;
    if (second == 0x80) {
        // U+2000-200A but U+2007 (FIGURE SPACE, no-break); U+2028, U+2029.
        if ((third >= 0x80 && third <= 0x8A && third != 0x87) || third == 0xA8 || third == 0xA9)
            return 3;
        return 0;
    }
    return second == 0x81 && third == 0x9F ? 3 : 0; // U+205F MEDIUM MATHEMATICAL SPACE
}

} // namespace

std::vector<std::string_view> split_words(std::string_view line)
{
    std::vector<std::string_view> words;
    std::size_t start = 0, at = 0;
    while (at < line.size()) {
        if (const std::size_t space = whitespace_at(line.substr(at)); space > 0) {
            if (at > start)
                words.push_back(line.substr(start, at - start));
            at += space;
            start = at;
        } else {
            ++at;
        }
    }
    if (at > start)
        words.push_back(line.substr(start, at - start));
    return words;
}

std::optional<Command> parse(std::string_view line)
{
    const auto words = split_words(line);
    if (words.empty())
        return std::nullopt;
    const std::string_view verb = words[0];
    if (verb == "CREATE" && words.size() == 2)
        return Command { Verb::create, words[1], {}, {} };
    if (verb == "GET" && words.size() == 3)
        return Command { Verb::get, words[1], words[2], {} };
    if (verb == "PUT" && words.size() == 4)
        return Command { Verb::put, words[1], words[2], words[3] };
    if (verb == "DELETE" && words.size() == 3)
        return Command { Verb::del, words[1], words[2], {} };
    return std::nullopt;
}

std::string get_reply(std::string_view value)
{
    std::string reply;
    reply.reserve(value.size() + 6);
    reply.append(value).append("\r\n").append(ok_reply);
    return reply;
}

} // namespace kv::text
