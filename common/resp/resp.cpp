#include "resp.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>

namespace kv::resp {

namespace {

// A reply's integer, length or count (parse_value): any decimal text
// from_chars takes, leading zeros too. Requests are read as Redis reads them,
// with parse_long_long.
bool parse_integer(std::string_view text, long long& value)
{
    if (text.empty())
        return false;
    if (text.size() <= 18 && text[0] != '-') // the common case: plain digits or nothing
        return parse_plain_digits(text, value);
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    return error == std::errc() && end == text.data() + text.size();
}

int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

// isspace() in the C locale, as Redis's sdssplitargs splits an inline command.
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; }

// The length of a line whose CRLF has not (all) arrived, as far as it is
// known: a CR at the very end may be the first half of the CRLF. Judging
// "too long" by this, and a complete line by its length before the CRLF,
// gives the same answer however the bytes were split into reads.
std::size_t unterminated_length(std::string_view rest)
{
    return !rest.empty() && rest.back() == '\r' ? rest.size() - 1 : rest.size();
}

// A reply's header line: its type byte, a number, CRLF, formatted on the
// stack (std::to_string built a string of its own to be copied, for every
// GET's reply).
template <typename Number>
void append_line(std::string& out, char type, Number value)
{
    char line[32]; // a type byte, 20 digits and a sign at most, CRLF
    line[0] = type;
    char* end = std::to_chars(line + 1, line + sizeof line - 2, value).ptr;
    end[0] = '\r';
    end[1] = '\n';
    out.append(line, end + 2);
}

} // namespace

void RequestParser::feed(const char* data, std::size_t size)
{
    compact();
    buffer_.append(data, size);
}

void RequestParser::compact()
{
    if (position_ == buffer_.size()) {
        buffer_.clear();
        position_ = 0;
    } else if (position_ > 4096 && position_ * 2 > buffer_.size()) {
        buffer_.erase(0, position_);
        position_ = 0;
    }
}

RequestParser::Status RequestParser::fail(std::string& error, std::string_view why)
{
    failed_ = true;
    error = "Protocol error: ";
    error += why;
    return Status::protocol_error;
}

RequestParser::HeaderLine RequestParser::read_header_line(std::string_view& line)
{
    // A header line is a few bytes ("*3", "$16"): a plain loop over the
    // first few finds its CRLF sooner than find's call to memchr does (that
    // call was 3% of a bucket's CPU on pipelined GETs). Anything longer, or
    // not all there yet, is left to find, from where the loop stopped (a
    // CRLF starting there is not yet ruled out).
    constexpr std::size_t short_line = 24;
    const char* const data = buffer_.data();
    const std::size_t window = std::min(buffer_.size(), position_ + short_line);
    std::size_t end = position_;
    while (end + 1 < window && !(data[end] == '\r' && data[end + 1] == '\n'))
        ++end;
    if (end + 1 >= window)
        end = buffer_.find("\r\n", end);
    if (end == std::string::npos) {
        return unterminated_length(std::string_view(buffer_).substr(position_)) > limits_.max_inline_length
            ? HeaderLine::too_long
            : HeaderLine::incomplete;
    }
    line = std::string_view(buffer_).substr(position_ + 1, end - position_ - 1);
    position_ = end + 2;
    return line.size() + 1 > limits_.max_inline_length ? HeaderLine::too_long : HeaderLine::complete;
}

bool RequestParser::read_short_count(long long& count)
{
    // Up to 18 digits cannot overflow; a sign, a leading zero, a longer or
    // unfinished line, or any other byte is left to read_header_line and
    // parse_long_long, which give the same answer for this line as this does.
    const char* const data = buffer_.data();
    const std::size_t size = buffer_.size();
    const std::size_t first = position_ + 1;
    const std::size_t stop = std::min(size, first + 18);
    std::size_t at = first;
    long long value = 0;
    while (at < stop && data[at] >= '0' && data[at] <= '9')
        value = value * 10 + (data[at++] - '0');
    const std::size_t digits = at - first;
    if (digits == 0 || (digits > 1 && data[first] == '0') || at + 1 >= size || data[at] != '\r' || data[at + 1] != '\n' || digits + 1 > limits_.max_inline_length)
        return false;
    count = value;
    position_ = at + 2;
    return true;
}

RequestParser::HeaderLine RequestParser::read_count(long long& count, bool& parsed)
{
    if (read_short_count(count)) {
        parsed = true;
        return HeaderLine::complete;
    }
    std::string_view line;
    const HeaderLine header = read_header_line(line);
    if (header == HeaderLine::complete)
        parsed = parse_long_long(line, count);
    return header;
}

RequestParser::Status RequestParser::next(Request& out, std::string& error)
{
    if (failed_)
        return fail(error, "connection already failed");
    for (;;) {
        if (!in_multibulk_) {
            if (position_ >= buffer_.size())
                return Status::need_more;
            if (buffer_[position_] != '*') {
                auto status = parse_inline(out, error);
                if (status == Status::request && out.empty())
                    continue; // an empty line is no request
                return status;
            }
            long long count = 0;
            bool parsed = false;
            if (auto header = read_count(count, parsed); header != HeaderLine::complete)
                return header == HeaderLine::incomplete ? Status::need_more : fail(error, "too big multibulk count string");
            // Redis's order: a count it cannot read or past INT_MAX, then the
            // unauthenticated limit; then ours, --max-array-length.
            if (!parsed || count > std::numeric_limits<int>::max())
                return fail(error, "invalid multibulk length");
            if (!authenticated_ && count > static_cast<long long>(unauthenticated_array_length))
                return fail(error, "unauthenticated multibulk length");
            if (count > static_cast<long long>(limits_.max_array_length))
                return fail(error, "invalid multibulk length");
            if (count <= 0)
                continue; // "*0" and "*-1" are empty requests, skipped as Redis does
            in_multibulk_ = true;
            multibulk_remaining_ = count;
            argument_count_ = 0;
        }
        while (multibulk_remaining_ > 0) {
            if (bulk_length_ < 0) {
                if (position_ >= buffer_.size())
                    return Status::need_more;
                if (buffer_[position_] != '$')
                    return fail(error, std::string("expected '$', got '") + buffer_[position_] + "'");
                long long length = 0;
                bool parsed = false;
                if (auto header = read_count(length, parsed); header != HeaderLine::complete)
                    return header == HeaderLine::incomplete ? Status::need_more : fail(error, "too big bulk count string");
                if (!parsed || length < 0
                    || length > static_cast<long long>(limits_.max_bulk_length))
                    return fail(error, "invalid bulk length");
                if (!authenticated_ && length > static_cast<long long>(unauthenticated_bulk_length))
                    return fail(error, "unauthenticated bulk length");
                bulk_length_ = length;
            }
            auto needed = static_cast<std::size_t>(bulk_length_) + 2;
            if (buffered() < needed)
                return Status::need_more;
            if (buffer_[position_ + needed - 2] != '\r' || buffer_[position_ + needed - 1] != '\n')
                return fail(error, "bulk string not terminated by CRLF");
            // Strings left from an earlier request are reused: their storage
            // is kept, so a steady stream of requests allocates nothing.
            if (argument_count_ < arguments_.size())
                arguments_[argument_count_].assign(buffer_.data() + position_, static_cast<std::size_t>(bulk_length_));
            else
                arguments_.emplace_back(buffer_.data() + position_, static_cast<std::size_t>(bulk_length_));
            ++argument_count_;
            position_ += needed;
            bulk_length_ = -1;
            --multibulk_remaining_;
        }
        in_multibulk_ = false;
        arguments_.resize(argument_count_);
        out.swap(arguments_); // `out`'s old strings come back to be reused
        return Status::request;
    }
}

RequestParser::Status RequestParser::parse_inline(Request& out, std::string& error)
{
    auto end = buffer_.find('\n', position_);
    if (end == std::string::npos) {
        if (unterminated_length(std::string_view(buffer_).substr(position_)) > limits_.max_inline_length)
            return fail(error, "too big inline request");
        return Status::need_more;
    }
    std::string_view line = std::string_view(buffer_).substr(position_, end - position_);
    // The limit is on the line before its CRLF (or LF), as for header lines.
    if (unterminated_length(line) > limits_.max_inline_length)
        return fail(error, "too big inline request");
    position_ = end + 1;
    out.clear();
    if (!split_inline(line, out))
        return fail(error, "unbalanced quotes in request");
    return Status::request;
}

// Redis's sdssplitargs (sds.c): blanks between arguments are isspace()
// (is_space); an unquoted argument ends at a space, tab, CR or LF only, and a
// quote inside it opens a quoted part of the same argument; a closing quote
// must be followed by a blank or the end. One difference: a NUL is a byte of
// its argument here, where Redis's C-string search never finds the line's end
// past it (and waits for more).
bool split_inline(std::string_view line, Request& out)
{
    enum class Quote : unsigned char { none, double_quote, single_quote };
    const std::size_t size = line.size();
    std::size_t i = 0;
    for (;;) {
        while (i < size && is_space(line[i]))
            ++i;
        if (i == size)
            return true;
        std::string argument;
        Quote quote = Quote::none;
        for (bool done = false; !done;) {
            if (quote != Quote::none && i >= size)
                return false; // unbalanced quotes
            const char c = i < size ? line[i] : '\0';
            if (quote == Quote::double_quote) {
                if (c == '\\' && i + 3 < size && line[i + 1] == 'x' && hex_digit(line[i + 2]) >= 0 && hex_digit(line[i + 3]) >= 0) {
                    argument += static_cast<char>(hex_digit(line[i + 2]) * 16 + hex_digit(line[i + 3]));
                    i += 3;
                } else if (c == '\\' && i + 1 < size) {
                    switch (line[++i]) {
                    case 'n': argument += '\n'; break;
                    case 'r': argument += '\r'; break;
                    case 't': argument += '\t'; break;
                    case 'b': argument += '\b'; break;
                    case 'a': argument += '\a'; break;
                    default: argument += line[i]; break;
                    }
                } else if (c == '"') {
                    if (i + 1 < size && !is_space(line[i + 1]))
                        return false; // a closing quote must be followed by a blank or the end
                    done = true;
                } else {
                    argument += c;
                }
            } else if (quote == Quote::single_quote) {
                if (c == '\\' && i + 1 < size && line[i + 1] == '\'') {
                    argument += '\'';
                    ++i;
                } else if (c == '\'') {
                    if (i + 1 < size && !is_space(line[i + 1]))
                        return false;
                    done = true;
                } else {
                    argument += c;
                }
            } else if (i >= size || c == ' ' || c == '\n' || c == '\r' || c == '\t') {
                done = true;
            } else if (c == '"') {
                quote = Quote::double_quote;
            } else if (c == '\'') {
                quote = Quote::single_quote;
            } else {
                argument += c;
            }
            if (i < size)
                ++i;
        }
        out.push_back(std::move(argument));
    }
}

void append_simple(std::string& out, std::string_view text)
{
    out += '+';
    out += text;
    out += "\r\n";
}

void append_error(std::string& out, std::string_view text)
{
    out += '-';
    // An error line cannot carry CR or LF: fold them so the reply stays one line.
    for (char c : text)
        out += (c == '\r' || c == '\n') ? ' ' : c;
    out += "\r\n";
}

void append_integer(std::string& out, long long value)
{
    append_line(out, ':', value);
}

void append_bulk(std::string& out, std::string_view value)
{
    append_line(out, '$', value.size());
    out += value;
    out += "\r\n";
}

void append_null(std::string& out, Protocol protocol) { out += protocol == Protocol::resp3 ? "_\r\n" : "$-1\r\n"; }

void append_null_array(std::string& out, Protocol protocol) { out += protocol == Protocol::resp3 ? "_\r\n" : "*-1\r\n"; }

void append_map_header(std::string& out, std::size_t pairs, Protocol protocol)
{
    if (protocol == Protocol::resp3) {
        append_line(out, '%', pairs);
    } else {
        append_array_header(out, pairs * 2);
    }
}

void append_set_header(std::string& out, std::size_t count, Protocol protocol)
{
    if (protocol == Protocol::resp3) {
        append_line(out, '~', count);
    } else {
        append_array_header(out, count);
    }
}

void append_verbatim(std::string& out, std::string_view text, Protocol protocol)
{
    if (protocol != Protocol::resp3) {
        append_bulk(out, text);
        return;
    }
    append_line(out, '=', text.size() + 4);
    out += "txt:";
    out += text;
    out += "\r\n";
}

void append_boolean(std::string& out, bool value, Protocol protocol)
{
    if (protocol == Protocol::resp3)
        out += value ? "#t\r\n" : "#f\r\n";
    else
        out += value ? ":1\r\n" : ":0\r\n";
}

void append_array_header(std::string& out, std::size_t count)
{
    append_line(out, '*', count);
}

std::string encode_command(const std::vector<std::string>& arguments)
{
    std::string out;
    append_array_header(out, arguments.size());
    for (const auto& argument : arguments)
        append_bulk(out, argument);
    return out;
}

const Value* Value::field(std::string_view name) const
{
    if (type != Type::array && type != Type::map)
        return nullptr;
    for (std::size_t i = 0; i + 1 < elements.size(); i += 2) {
        if (elements[i].text == name)
            return &elements[i + 1];
    }
    return nullptr;
}

bool Value::text_field(std::string_view field, std::string& out) const
{
    const Value* value = this->field(field);
    if (!value || value->type != Type::bulk)
        return false;
    out = value->text;
    return true;
}

namespace {

ParseResult parse_at(std::string_view buffer, std::size_t& position, Value& out, const Limits& limits, int depth)
{
    if (depth > 8)
        return ParseResult::invalid;
    if (position >= buffer.size())
        return ParseResult::incomplete;
    auto end = buffer.find("\r\n", position);
    if (end == std::string_view::npos)
        return unterminated_length(buffer.substr(position)) > limits.max_inline_length ? ParseResult::invalid : ParseResult::incomplete;
    if (end - position > limits.max_inline_length)
        return ParseResult::invalid; // as it would be had it come in pieces
    char kind = buffer[position];
    std::string_view line = buffer.substr(position + 1, end - position - 1);
    position = end + 2;
    switch (kind) {
    case '+':
        out.type = Value::Type::simple;
        out.text = line;
        return ParseResult::complete;
    case '-':
        out.type = Value::Type::error;
        out.text = line;
        return ParseResult::complete;
    case ':':
        out.type = Value::Type::integer;
        return parse_integer(line, out.integer) ? ParseResult::complete : ParseResult::invalid;
    case '_':
        out.type = Value::Type::null;
        return line.empty() ? ParseResult::complete : ParseResult::invalid;
    case '#':
        out.type = Value::Type::boolean;
        out.integer = line == "t";
        return line == "t" || line == "f" ? ParseResult::complete : ParseResult::invalid;
    case ',':
        out.type = Value::Type::double_number;
        out.text = line;
        return ParseResult::complete;
    case '(':
        out.type = Value::Type::big_number;
        out.text = line;
        return ParseResult::complete;
    case '=':
    case '$': {
        long long length;
        if (!parse_integer(line, length) || length > static_cast<long long>(limits.max_bulk_length))
            return ParseResult::invalid;
        if (length < 0) {
            out.type = Value::Type::null;
            return ParseResult::complete;
        }
        auto size = static_cast<std::size_t>(length);
        if (buffer.size() - position < size + 2)
            return ParseResult::incomplete;
        if (buffer.substr(position + size, 2) != "\r\n")
            return ParseResult::invalid;
        out.type = Value::Type::bulk;
        out.text = buffer.substr(position, size);
        position += size + 2;
        if (kind == '=') { // "txt:" or "mkd:", then the text
            if (out.text.size() < 4 || out.text[3] != ':')
                return ParseResult::invalid;
            out.type = Value::Type::verbatim;
            out.text.erase(0, 4);
        }
        return ParseResult::complete;
    }
    case '*':
    case '%':
    case '~': {
        long long count;
        if (!parse_integer(line, count) || count > static_cast<long long>(limits.max_array_length))
            return ParseResult::invalid;
        if (count < 0) {
            out.type = Value::Type::null;
            return kind == '*' ? ParseResult::complete : ParseResult::invalid;
        }
        out.type = kind == '%' ? Value::Type::map : kind == '~' ? Value::Type::set : Value::Type::array;
        if (kind == '%')
            count *= 2; // keys and values in turn
        out.elements.clear();
        for (long long i = 0; i < count; ++i) {
            Value element;
            auto result = parse_at(buffer, position, element, limits, depth + 1);
            if (result != ParseResult::complete)
                return result;
            out.elements.push_back(std::move(element));
        }
        return ParseResult::complete;
    }
    default:
        return ParseResult::invalid;
    }
}

} // namespace

ParseResult parse_value(std::string_view buffer, std::size_t& consumed, Value& out, const Limits& limits)
{
    std::size_t position = 0;
    auto result = parse_at(buffer, position, out, limits, 0);
    if (result == ParseResult::complete)
        consumed = position;
    return result;
}

} // namespace kv::resp
