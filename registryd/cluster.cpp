#include "cluster.h"

#include <unistd.h>

#include "log.h"

namespace kv {

namespace {

using Clock = std::chrono::steady_clock;

// The end of a prefix range: the prefix with its last byte incremented.
std::string prefix_end(std::string prefix)
{
    while (!prefix.empty()) {
        if (static_cast<unsigned char>(prefix.back()) != 0xff) {
            prefix.back() = static_cast<char>(static_cast<unsigned char>(prefix.back()) + 1);
            return prefix;
        }
        prefix.pop_back();
    }
    return std::string(1, '\0'); // every key
}

std::string lease_text(long long lease) { return std::to_string(lease); }

// One key's txn: `then` if its create revision is `revision` (0: the key
// does not exist; else the claim that made it still stands), else
// `otherwise` (none if empty). `key` is base64 already.
Json txn_if_created_at(const std::string& key, long long revision, Json then, Json otherwise = Json::array())
{
    Json txn { { "compare", Json::array({ { { "target", "CREATE" }, { "key", key }, { "createRevision", std::to_string(revision) } } }) },
        { "success", Json::array({ std::move(then) }) } };
    if (!otherwise.empty())
        txn["failure"] = Json::array({ std::move(otherwise) });
    return txn;
}

Json put_request(const std::string& key, const Json& value, long long lease)
{
    return { { "requestPut", { { "key", key }, { "value", base64_encode(value.dump()) }, { "lease", lease_text(lease) } } } };
}

Json range_request(const std::string& key) { return { { "requestRange", { { "key", key } } } }; }

Json bucket_value(const ClusterBucket& entry)
{
    return Json { { "node", entry.node }, { "pid", entry.pid }, { "id", entry.id }, { "address", entry.address },
        { "state", entry.state }, { "restart", entry.restart }, { "keep", entry.keep } };
}

std::string text_of(const Json& object, const char* field)
{
    const auto it = object.find(field);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// A key-value of a range or a watch event, as the gateway gives it.
struct KeyValue {
    std::string key;
    std::string value;
    long long create_revision = 0;
    long long lease = 0;
};

KeyValue key_value(const Json& kv)
{
    return KeyValue { json_bytes(kv, "key"), json_bytes(kv, "value"), json_int64(kv, "create_revision"), json_int64(kv, "lease") };
}

bool parse_bucket(const KeyValue& kv, const std::string& name, ClusterBucket& entry)
{
    Json value = Json::parse(kv.value, nullptr, false);
    if (!value.is_object())
        return false;
    entry.name = name;
    entry.node = text_of(value, "node");
    entry.pid = static_cast<pid_t>(json_int64(value, "pid"));
    entry.id = static_cast<unsigned long long>(json_int64(value, "id"));
    entry.address = text_of(value, "address");
    entry.state = text_of(value, "state");
    entry.restart = text_of(value, "restart");
    entry.keep = json_bool(value, "keep");
    entry.revision = kv.create_revision;
    entry.lease = kv.lease;
    return !entry.node.empty();
}

} // namespace

const char* to_string(ClusterState state)
{
    switch (state) {
    case ClusterState::joining: return "joining";
    case ClusterState::joined: return "joined";
    case ClusterState::expired: return "expired";
    }
    return "unknown";
}

Cluster::Cluster(asio::io_context& io, ClusterOptions options, Hooks hooks)
    : io_(io)
    , options_(std::move(options))
    , hooks_(std::move(hooks))
    , etcd_(io, options_.endpoints, options_.call_timeout)
    , keepalive_timer_(io)
    , registration_timer_(io)
    , watch_timer_(io)
    , alive_(std::make_shared<bool>(true))
{
}

Cluster::~Cluster()
{
    *alive_ = false;
    EtcdClient::cancel(watch_);
}

std::chrono::milliseconds Cluster::valid_for() const
{
    if (lease_ == 0)
        return std::chrono::milliseconds(0);
    return std::chrono::milliseconds(std::max<std::int64_t>(0, (valid_until_ns_ - fence_clock_ns()) / 1000000));
}

void Cluster::note_error(const std::string& error)
{
    if (error != last_error_ && !error.empty())
        log_line(LogLevel::warning, "cluster: " + error);
    last_error_ = error;
}

void Cluster::join(std::function<void(const std::string& error)> done)
{
    const auto deadline = Clock::now() + options_.lease_ttl + std::chrono::seconds(2);
    grant([this, done, deadline](const std::string& error) {
        if (!error.empty())
            return done("unable to join the cluster at " + etcd_.endpoints().front().url() + (etcd_.endpoints().size() > 1 ? ",..." : "") + ": " + error);
        // A node of this name whose registryd died keeps its key until its
        // lease expires: wait that long for it, no longer.
        auto attempt = std::make_shared<std::function<void()>>();
        *attempt = [this, done, deadline, attempt, alive = alive_] {
            register_node([this, done, deadline, attempt, alive](const std::string& error) {
                if (!*alive)
                    return;
                if (error.empty()) {
                    state_ = ClusterState::joined;
                    log_line(LogLevel::notice, "joined the cluster as node " + options_.node + " (lease " + lease_text(lease_) + ", TTL "
                        + std::to_string(options_.lease_ttl.count()) + " s)");
                    schedule_keepalive(keepalive_period());
                    load_and_watch();
                    *attempt = nullptr; // the cycle through the capture ends here
                    return done("");
                }
                if (error.rfind("taken:", 0) != 0 || Clock::now() > deadline) {
                    *attempt = nullptr;
                    return done("unable to join the cluster as node " + options_.node + ": "
                        + (error.rfind("taken:", 0) == 0 ? "the name is held by a live node (" + error.substr(7) + ")" : error));
                }
                auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(250));
                timer->async_wait([timer, attempt](const boost::system::error_code&) {
                    if (*attempt)
                        (*attempt)();
                });
            });
        };
        (*attempt)();
    });
}

void Cluster::grant(std::function<void(const std::string& error)> done)
{
    const std::int64_t sent = fence_clock_ns();
    etcd_.call("/v3/lease/grant", Json { { "TTL", options_.lease_ttl.count() } },
        [this, done, sent, alive = alive_](const std::string& error, const Json& reply) {
            if (!*alive)
                return;
            if (error.empty() && (json_int64(reply, "ID") == 0 || json_int64(reply, "TTL") <= 0))
                return done("etcd granted no lease: " + reply.dump());
            if (!error.empty()) {
                last_error_ = error;
                return done(error);
            }
            lease_ = json_int64(reply, "ID");
            valid_until_ns_ = sent + json_int64(reply, "TTL") * 1000000000;
            last_error_.clear();
            done("");
        });
}

void Cluster::register_node(std::function<void(const std::string& error)> done)
{
    const std::string key = base64_encode(node_key());
    const Json value { { "node", options_.node }, { "address", options_.address }, { "pid", ::getpid() },
        { "instance", options_.instance },
        { "started", std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count() } };
    const Json txn = txn_if_created_at(key, 0, put_request(key, value, lease_), range_request(key));
    etcd_.call("/v3/kv/txn", txn, [this, done, alive = alive_](const std::string& error, const Json& reply) {
        if (!*alive)
            return;
        if (!error.empty())
            return done(error);
        if (json_bool(reply, "succeeded"))
            return done("");
        try {
            const KeyValue held = key_value(reply.at("responses").at(0).at("response_range").at("kvs").at(0));
            if (held.lease == lease_)
                return done(""); // ours already (a retried put)
            Json value = Json::parse(held.value, nullptr, false);
            return done("taken: pid " + std::to_string(json_int64(value, "pid")) + ", instance " + printable(text_of(value, "instance")));
        } catch (const std::exception&) {
            return done("taken: by a node whose key vanished meanwhile"); // retried
        }
    });
}

std::chrono::milliseconds Cluster::keepalive_period() const
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(options_.lease_ttl) / 3;
}

void Cluster::schedule_keepalive(std::chrono::milliseconds after)
{
    keepalive_timer_.expires_after(after);
    keepalive_timer_.async_wait([this](const boost::system::error_code& error) {
        if (!error && !leaving_)
            keep_alive();
    });
}

void Cluster::keep_alive()
{
    const std::int64_t sent = fence_clock_ns();
    const auto period = keepalive_period();
    etcd_.call("/v3/lease/keepalive", Json { { "ID", lease_text(lease_) } },
        [this, sent, period, alive = alive_](const std::string& error, const Json& reply) {
            if (!*alive || leaving_)
                return;
            if (!error.empty()) {
                keepalive_failed_ = true;
                note_error("lease keepalive failed: " + error);
                if (state_ == ClusterState::joined && fence_clock_ns() >= valid_until_ns_) {
                    state_ = ClusterState::expired;
                    log_line(LogLevel::error, "cluster: lease " + lease_text(lease_) + " not confirmed for its whole TTL: this node's names may now be another node's");
                }
                // Quicker than the period while etcd is away, to be back soon.
                schedule_keepalive(std::min(period, std::chrono::milliseconds(500)));
                return;
            }
            const long long ttl = json_int64(reply, "TTL");
            if (ttl <= 0) {
                lease_gone();
                return;
            }
            if (state_ != ClusterState::joined)
                log_line(LogLevel::notice, "cluster: lease " + lease_text(lease_) + " confirmed again");
            // etcd was unreachable: the watch may have been cut off without
            // its connection ever being reset (a partition), so the copy is
            // loaded afresh and watched again.
            if (std::exchange(keepalive_failed_, false))
                load_and_watch();
            state_ = ClusterState::joined;
            valid_until_ns_ = sent + ttl * 1000000000;
            last_error_.clear();
            schedule_keepalive(period);
            if (hooks_.validity_extended)
                hooks_.validity_extended();
        });
}

void Cluster::lease_gone()
{
    ++leases_lost_;
    state_ = ClusterState::joining;
    log_line(LogLevel::error, "cluster: lease " + lease_text(lease_) + " expired: this node's names were released; taking a new lease to claim them again");
    lease_ = 0;
    replace_lease();
}

void Cluster::replace_lease()
{
    grant([this, alive = alive_](const std::string& error) {
        if (!*alive || leaving_)
            return;
        if (!error.empty()) {
            note_error("unable to take a new lease: " + error);
            keepalive_timer_.expires_after(std::chrono::milliseconds(500));
            keepalive_timer_.async_wait([this](const boost::system::error_code& error) {
                if (!error && !leaving_)
                    replace_lease(); // the same lost lease: counted once
            });
            return;
        }
        register_node([this, alive, lease = lease_](const std::string& error) {
            if (!*alive || leaving_)
                return;
            // The names are claimed again all the same (the node's key says
            // only where the node is); the key is registered later.
            if (!error.empty()) {
                log_line(LogLevel::error, "cluster: unable to register node " + options_.node + " again: " + error + "; trying again every 500 ms");
                register_again_later(lease);
            }
            state_ = ClusterState::joined;
            log_line(LogLevel::notice, "cluster: new lease " + lease_text(lease_));
            schedule_keepalive(keepalive_period());
            if (hooks_.lease_renewed)
                hooks_.lease_renewed();
        });
    });
}

void Cluster::register_again_later(long long lease)
{
    // As a lease etcd did not grant is asked for again (replace_lease).
    registration_timer_.expires_after(std::chrono::milliseconds(500));
    registration_timer_.async_wait([this, lease](const boost::system::error_code& cancelled) {
        if (cancelled || leaving_ || lease_ != lease)
            return; // a later lease registers the node itself
        register_node([this, lease, alive = alive_](const std::string& error) {
            if (!*alive || leaving_ || lease_ != lease)
                return;
            if (!error.empty()) {
                if (error != registration_error_) // logged once while it stays the same
                    log_line(LogLevel::warning, "cluster: unable to register node " + options_.node + " again: " + error);
                registration_error_ = error;
                register_again_later(lease);
                return;
            }
            registration_error_.clear();
            log_line(LogLevel::notice, "cluster: node " + options_.node + " registered again (lease " + lease_text(lease) + ")");
        });
    });
}

void Cluster::load_and_watch()
{
    EtcdClient::cancel(watch_);
    watch_.reset();
    const Json range { { "key", base64_encode(options_.prefix) }, { "range_end", base64_encode(prefix_end(options_.prefix)) } };
    etcd_.call("/v3/kv/range", range, [this, alive = alive_](const std::string& error, const Json& reply) {
        if (!*alive || leaving_)
            return;
        auto retry = [this] {
            watch_timer_.expires_after(std::chrono::seconds(1));
            watch_timer_.async_wait([this](const boost::system::error_code& error) {
                if (!error && !leaving_)
                    load_and_watch();
            });
        };
        if (!error.empty()) {
            note_error("unable to read the cluster's names: " + error);
            return retry();
        }
        // Replace the copy: what is gone since the last load goes too.
        auto old_names = std::exchange(names_, {});
        nodes_.clear();
        if (auto kvs = reply.find("kvs"); kvs != reply.end() && kvs->is_array())
            for (const auto& kv : *kvs) {
                const KeyValue entry = key_value(kv);
                apply(entry.key, entry.value, false, entry.create_revision, entry.lease);
            }
        for (const auto& [name, bucket] : old_names)
            if (!names_.count(name) && hooks_.name_changed)
                hooks_.name_changed(name);
        const long long revision = json_int64(reply.value("header", Json::object()), "revision");
        copy_revision_ = revision;
        const Json create { { "key", base64_encode(options_.prefix) }, { "range_end", base64_encode(prefix_end(options_.prefix)) },
            { "start_revision", std::to_string(revision + 1) } };
        watch_ = etcd_.watch(create,
            [this, alive, retry](const Json& result) {
                if (!*alive)
                    return;
                if (json_bool(result, "canceled")) {
                    note_error("the watch on the cluster's names was cancelled: " + printable(text_of(result, "cancel_reason")));
                    EtcdClient::cancel(watch_);
                    retry(); // a second later, not in a loop as fast as etcd cancels
                    return;
                }
                // Events come in revision order: once one is applied, the
                // copy is up to date with its revision (the header's may be
                // ahead of events still to come, so it is not used).
                if (auto events = result.find("events"); events != result.end() && events->is_array())
                    for (const auto& event : *events) {
                        const Json& kv = event.value("kv", Json::object());
                        const KeyValue entry = key_value(kv);
                        apply(entry.key, entry.value, text_of(event, "type") == "DELETE", entry.create_revision, entry.lease);
                        copy_revision_ = std::max(copy_revision_, json_int64(kv, "mod_revision"));
                    }
            },
            [this, alive, retry](const std::string& why) {
                if (!*alive || leaving_)
                    return;
                note_error(why);
                retry();
            });
    });
}

void Cluster::apply(const std::string& key, const std::string& value, bool deleted, long long create_revision, long long lease)
{
    const std::string names = options_.prefix + "names/";
    const std::string nodes = options_.prefix + "nodes/";
    if (key.rfind(names, 0) == 0) {
        const std::string name = key.substr(names.size());
        ClusterBucket entry;
        if (deleted || !parse_bucket(KeyValue { key, value, create_revision, lease }, name, entry))
            names_.erase(name);
        else
            names_[name] = std::move(entry);
        if (hooks_.name_changed)
            hooks_.name_changed(name);
    } else if (key.rfind(nodes, 0) == 0) {
        const std::string node = key.substr(nodes.size());
        Json parsed = deleted ? Json() : Json::parse(value, nullptr, false);
        if (!parsed.is_object()) {
            nodes_.erase(node);
            return;
        }
        nodes_[node] = ClusterNode { node, text_of(parsed, "address"), static_cast<pid_t>(json_int64(parsed, "pid")),
            text_of(parsed, "instance"), json_int64(parsed, "started") };
    }
}

void Cluster::claim(const ClusterBucket& entry, std::function<void(const Claim&)> done)
{
    if (auto releasing = releasing_.find(entry.name); releasing != releasing_.end()) {
        log_line(LogLevel::debug, "cluster: the claim of bucket " + printable(entry.name) + " waits for the release of its last claim");
        releasing->second.push_back([this, entry, done, alive = alive_] {
            if (*alive)
                claim(entry, done);
        });
        return;
    }
    if (state() != ClusterState::joined || lease_ == 0) {
        Claim claim;
        claim.error = std::string("this node's cluster lease is ") + (state() == ClusterState::expired ? "expired" : "not granted yet")
            + (last_error_.empty() ? "" : " (" + last_error_ + ")");
        return done(claim);
    }
    const std::string key = base64_encode(name_key(entry.name));
    const Json txn = txn_if_created_at(key, 0, put_request(key, bucket_value(entry), lease_), range_request(key));
    etcd_.call("/v3/kv/txn", txn, [this, entry, done, lease = lease_, alive = alive_](const std::string& error, const Json& reply) {
        if (!*alive)
            return;
        Claim claim;
        if (!error.empty()) {
            claim.error = error;
            return done(claim);
        }
        claim.as_of = json_int64(reply.value("header", Json::object()), "revision");
        if (json_bool(reply, "succeeded")) {
            claim.outcome = Claim::Outcome::claimed;
            claim.owner = entry;
            claim.owner.revision = json_int64(reply.value("header", Json::object()), "revision");
            claim.owner.lease = lease;
            return done(claim);
        }
        const Json* kvs = nullptr;
        try {
            kvs = &reply.at("responses").at(0).at("response_range").at("kvs");
        } catch (const std::exception&) {
        }
        if (!kvs || !kvs->is_array() || kvs->empty()) {
            // Released between the compare and the read: try again.
            asio::post(io_, [this, entry, done, alive] {
                if (*alive)
                    this->claim(entry, done);
            });
            return;
        }
        const KeyValue held = key_value(kvs->at(0));
        if (!parse_bucket(held, entry.name, claim.owner)) {
            claim.error = "the cluster's entry for this name is not kv's";
            return done(claim);
        }
        // Ours under this very lease (a release that did not reach etcd):
        // the claim stands, under its first revision.
        claim.outcome = held.lease == lease && claim.owner.node == options_.node ? Claim::Outcome::claimed : Claim::Outcome::taken;
        done(claim);
    });
}

void Cluster::update(const ClusterBucket& entry)
{
    if (lease_ == 0)
        return;
    const std::string key = base64_encode(name_key(entry.name));
    const Json txn = txn_if_created_at(key, entry.revision, put_request(key, bucket_value(entry), lease_));
    latest_updates_[entry.name] = entry;
    etcd_.call("/v3/kv/txn", txn, [this, entry, lease = lease_, alive = alive_](const std::string& error, const Json& reply) {
        if (!*alive)
            return;
        auto latest = latest_updates_.find(entry.name);
        const bool newest = latest != latest_updates_.end() && latest->second.id == entry.id && latest->second.state == entry.state;
        if (error.empty()) {
            if (newest)
                latest_updates_.erase(latest);
            if (!json_bool(reply, "succeeded"))
                log_line(LogLevel::warning, "cluster: bucket " + printable(entry.name) + " is no longer this node's claim; not updated");
            return;
        }
        note_error("unable to update bucket " + printable(entry.name) + " in the cluster: " + error);
        // Other nodes wait for a starting bucket to be ready: the update is
        // sent again (its newest version) while the lease lasts.
        auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(250));
        timer->async_wait([this, timer, entry, lease, newest, alive](const boost::system::error_code&) {
            if (!*alive || leaving_ || lease_ != lease || !newest)
                return;
            auto latest = latest_updates_.find(entry.name);
            if (latest != latest_updates_.end() && latest->second.id == entry.id && latest->second.state == entry.state)
                update(entry);
        });
    });
}

void Cluster::release(const std::string& name, long long revision)
{
    latest_updates_.erase(name);
    if (revision == 0 || lease_ == 0)
        return;
    releasing_.try_emplace(name);
    const std::string key = base64_encode(name_key(name));
    const Json txn = txn_if_created_at(key, revision, Json { { "requestDeleteRange", { { "key", key } } } });
    etcd_.call("/v3/kv/txn", txn, [this, name, revision, lease = lease_, alive = alive_](const std::string& error, const Json&) {
        if (!*alive)
            return;
        if (error.empty())
            return released(name);
        note_error("unable to release bucket " + printable(name) + " in the cluster: " + error);
        // Again while the lease lasts (after it, etcd releases the name
        // itself); a claim of the name waits until then.
        auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(500));
        timer->async_wait([this, timer, name, revision, lease, alive](const boost::system::error_code&) {
            if (!*alive)
                return;
            if (!leaving_ && lease_ == lease && state() == ClusterState::joined)
                release(name, revision);
            else
                released(name); // the lease is gone or going: so is the key, or a claim adopts it
        });
    });
}

void Cluster::released(const std::string& name)
{
    auto it = releasing_.find(name);
    if (it == releasing_.end())
        return;
    auto waiting = std::move(it->second);
    releasing_.erase(it);
    for (auto& claim : waiting)
        claim();
}

void Cluster::leave(std::function<void()> done)
{
    leaving_ = true;
    keepalive_timer_.cancel();
    registration_timer_.cancel();
    watch_timer_.cancel();
    EtcdClient::cancel(watch_);
    watch_.reset();
    if (lease_ == 0)
        return done();
    etcd_.call("/v3/lease/revoke", Json { { "ID", lease_text(lease_) } }, [this, done, alive = alive_](const std::string& error, const Json&) {
        if (!*alive)
            return;
        if (!error.empty())
            log_line(LogLevel::warning, "cluster: unable to revoke lease " + lease_text(lease_) + " (its names are freed when it expires): " + error);
        else
            log_line(LogLevel::notice, "left the cluster: lease " + lease_text(lease_) + " revoked, every name of node " + options_.node + " released");
        lease_ = 0;
        done();
    });
}

const ClusterBucket* Cluster::find(const std::string& name) const
{
    auto it = names_.find(name);
    return it == names_.end() ? nullptr : &it->second;
}

} // namespace kv
