// The launch contract: what registryd encodes is what bucketd decodes, and
// the readiness line means one thing on both sides.
#include "bucket_launch.h"

#include <map>

#include <gtest/gtest.h>

namespace {

// An environment made of what encode() wrote, read through decode's lookup.
struct Environment {
    explicit Environment(const kv::BucketEnvironment& environment)
    {
        for (const auto& [name, value] : kv::encode(environment))
            variables[name] = value;
    }
    const char* operator()(const char* name) const
    {
        auto it = variables.find(name);
        return it == variables.end() ? nullptr : it->second.c_str();
    }
    std::map<std::string, std::string> variables;
};

kv::BucketEnvironment sample()
{
    kv::BucketEnvironment environment;
    environment.instance = "0123456789abcdef";
    environment.segment_name = "/kv.0123456789abcdef.b7.fedcba9876543210";
    environment.segment_fd = 5;
    environment.socket_path = "/run/kv/buckets/7.0123456789abcdef.sock";
    environment.listen_fd = 6;
    environment.notify_fd = 7;
    environment.bucket_size = 1ULL << 33;
    environment.server_config.max_connections = 3;
    environment.server_config.allowed_uids = { 1000, 1001 };
    environment.debug_command_enabled = true;
    environment.log_level = kv::LogLevel::debug;
    return environment;
}

} // namespace

TEST(BucketLaunch, WhatRegistrydEncodesBucketdDecodes)
{
    auto written = sample();
    Environment environment(written);
    auto read = kv::decode_bucket_environment(std::ref(environment));
    EXPECT_EQ(read.instance, written.instance);
    EXPECT_EQ(read.segment_name, written.segment_name);
    EXPECT_EQ(read.segment_fd, 5);
    EXPECT_EQ(read.socket_path, written.socket_path);
    EXPECT_EQ(read.listen_fd, 6);
    EXPECT_EQ(read.notify_fd, 7);
    EXPECT_EQ(read.bucket_size, 1ULL << 33);
    EXPECT_EQ(read.server_config.encode(), written.server_config.encode());
    EXPECT_TRUE(read.debug_command_enabled);
    EXPECT_EQ(read.log_level, kv::LogLevel::debug) << "buckets log at registryd's --log-level";
    EXPECT_EQ(environment.variables.at("KV_INSTANCE"), "0123456789abcdef") << "how leftovers are found";
}

TEST(BucketLaunch, TcpListenerAndPasswordDescriptorAreHandedDownOnlyWithListenTcp)
{
    auto without = sample();
    Environment plain(without);
    EXPECT_EQ(kv::decode_bucket_environment(std::ref(plain)).tcp_listen_fd, -1) << "no TCP unless registryd binds one";
    EXPECT_EQ(plain.variables.at("KV_TCP_LISTEN_FD"), "") << "written empty, so an inherited one cannot leak in";

    auto written = sample();
    written.tcp_listen_fd = 8;
    written.tcp_address = "127.0.0.1:40001";
    written.password_fd = 9;
    Environment environment(written);
    auto read = kv::decode_bucket_environment(std::ref(environment));
    EXPECT_EQ(read.tcp_listen_fd, 8);
    EXPECT_EQ(read.tcp_address, "127.0.0.1:40001");
    EXPECT_EQ(read.password_fd, 9);

    environment.variables.erase("KV_PASSWORD_FD");
    EXPECT_THROW(kv::decode_bucket_environment(std::ref(environment)), std::invalid_argument)
        << "a TCP listener without its password is never served";
}

TEST(BucketLaunch, WhatRegistrydEncodesTextdDecodesWithAPasswordDescriptorOnlyWithPasswordFile)
{
    kv::TextServerEnvironment written;
    written.instance = "0123456789abcdef";
    written.listen_fd = 5;
    written.notify_fd = 6;
    written.run_dir = "/run/kv";
    written.server_config.max_connections = 3;
    written.log_level = kv::LogLevel::debug;
    for (const int password_fd : { -1, 8 }) {
        written.password_fd = password_fd;
        std::map<std::string, std::string> variables;
        for (const auto& [name, value] : kv::encode(written))
            variables[name] = value;
        // Written even when empty, so registryd's own environment cannot lend one.
        EXPECT_EQ(variables.at("KV_PASSWORD_FD"), password_fd < 0 ? "" : "8");
        const auto read = kv::decode_text_server_environment([&variables](const char* name) {
            auto it = variables.find(name);
            return it == variables.end() ? nullptr : it->second.c_str();
        });
        EXPECT_EQ(read.instance, written.instance);
        EXPECT_EQ(read.listen_fd, 5);
        EXPECT_EQ(read.notify_fd, 6);
        EXPECT_EQ(read.run_dir, "/run/kv");
        EXPECT_EQ(read.server_config.encode(), written.server_config.encode());
        EXPECT_EQ(read.log_level, kv::LogLevel::debug);
        EXPECT_EQ(read.password_fd, password_fd);
    }
}

TEST(BucketLaunch, BucketdRefusesAnEnvironmentRegistrydWouldNotWrite)
{
    Environment environment(sample());
    environment.variables.erase("KV_SEGMENT_FD");
    try {
        kv::decode_bucket_environment(std::ref(environment));
        ADD_FAILURE() << "decoded without KV_SEGMENT_FD";
    } catch (const std::invalid_argument& error) {
        EXPECT_STREQ(error.what(), "missing KV_SEGMENT_FD (started by registryd)");
    }
    Environment bad_size(sample());
    bad_size.variables["KV_BUCKET_SIZE"] = "12x";
    EXPECT_THROW(kv::decode_bucket_environment(std::ref(bad_size)), std::invalid_argument);
    Environment bad_descriptor(sample());
    bad_descriptor.variables["KV_LISTEN_FD"] = "-1";
    EXPECT_THROW(kv::decode_bucket_environment(std::ref(bad_descriptor)), std::invalid_argument);
    Environment debug_off(sample());
    debug_off.variables.erase("KV_DEBUG_COMMAND");
    EXPECT_FALSE(kv::decode_bucket_environment(std::ref(debug_off)).debug_command_enabled);
    Environment bad_level(sample());
    bad_level.variables["KV_LOG_LEVEL"] = "loud";
    EXPECT_THROW(kv::decode_bucket_environment(std::ref(bad_level)), std::invalid_argument);
}

TEST(BucketLaunch, ReadinessIsANewlineAndAFailureIsOneLine)
{
    std::string why;
    EXPECT_EQ(kv::parse_readiness("", false, why), kv::Readiness::waiting);
    EXPECT_EQ(kv::parse_readiness(kv::ready_line, false, why), kv::Readiness::ready);
    EXPECT_EQ(kv::parse_readiness("", true, why), kv::Readiness::closed);
    EXPECT_EQ(kv::parse_readiness("unable to map", false, why), kv::Readiness::waiting);
    EXPECT_EQ(kv::parse_readiness("unable to map", true, why), kv::Readiness::closed);

    auto line = kv::failure_line("unable to reserve segment /kv.x: No space\nleft on device");
    EXPECT_EQ(line, "unable to reserve segment /kv.x: No space left on device\n");
    EXPECT_EQ(kv::parse_readiness(line, false, why), kv::Readiness::failed);
    EXPECT_EQ(why, "unable to reserve segment /kv.x: No space left on device");
    EXPECT_EQ(kv::failure_line(""), "failed without saying why\n");

    // A line that never ends is a failure with what arrived, not a wait forever.
    auto endless = std::string(kv::longest_readiness_line, 'x');
    EXPECT_EQ(kv::parse_readiness(endless, false, why), kv::Readiness::failed);
    EXPECT_EQ(kv::failure_line(std::string(10000, 'y')).size(), kv::longest_readiness_line - 1);
}
