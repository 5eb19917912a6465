// The bucket's string and keyspace commands, as Redis 7.0 answers them
// (t_string.c, db.c, expire.c): SET with all its options, SETNX, GETSET, GETDEL, MGET,
// MSET, MSETNX, INCR, DECR, INCRBY, DECRBY, INCRBYFLOAT, APPEND, STRLEN,
// GETRANGE, SETRANGE, UNLINK, TYPE, RENAME, RENAMENX, RANDOMKEY, FLUSHDB,
// FLUSHALL, TIME, SCAN. They are registered in bucket_commands.cpp's table,
// which checks verb and arity; each handler checks its own options.
//
// Every value is a string: lists, hashes, sets and sorted sets are not kept
// (their commands are unknown commands). A key may have an expiry time (SET
// EX/PX/EXAT/PXAT, SETEX, PSETEX, GETEX, EXPIRE and its kin; TTL and its
// kin read it, PERSIST removes it); see BucketMap for how expired keys go.
// Commands that replace a value keep the key's time as Redis's do (APPEND,
// SETRANGE, INCR...), SET and its kin drop it (unless KEEPTTL), RENAME moves
// it. Changes to several keys (MSET, MSETNX, RENAME) land in one write
// window of the table (BucketMap::Batch), so a direct reader sees all of
// them or none, and a bucket that fills up in the middle of one keeps
// nothing of it; FLUSHDB is one window of its own (BucketMap::clear), and
// GETDEL, GETSET, INCR, EXPIRE... change one key, so one window each.
// Inside an open batch (a transaction's EXEC) every handler here joins it.
#pragma once

#include <string>

#include "bucket_commands.h"

namespace kv::data_commands {

void set(BucketContext& context, const resp::Request& request, std::string& out);
void setnx(BucketContext& context, const resp::Request& request, std::string& out);
void getset(BucketContext& context, const resp::Request& request, std::string& out);
void getdel(BucketContext& context, const resp::Request& request, std::string& out);
void mget(BucketContext& context, const resp::Request& request, std::string& out);
void mset(BucketContext& context, const resp::Request& request, std::string& out);
void msetnx(BucketContext& context, const resp::Request& request, std::string& out);
void incr(BucketContext& context, const resp::Request& request, std::string& out);
void decr(BucketContext& context, const resp::Request& request, std::string& out);
void incrby(BucketContext& context, const resp::Request& request, std::string& out);
void decrby(BucketContext& context, const resp::Request& request, std::string& out);
void incrbyfloat(BucketContext& context, const resp::Request& request, std::string& out);
void append(BucketContext& context, const resp::Request& request, std::string& out);
void strlen(BucketContext& context, const resp::Request& request, std::string& out);
void getrange(BucketContext& context, const resp::Request& request, std::string& out);
void setrange(BucketContext& context, const resp::Request& request, std::string& out);
void unlink(BucketContext& context, const resp::Request& request, std::string& out);
void type(BucketContext& context, const resp::Request& request, std::string& out);
void rename(BucketContext& context, const resp::Request& request, std::string& out);
void renamenx(BucketContext& context, const resp::Request& request, std::string& out);
void randomkey(BucketContext& context, const resp::Request& request, std::string& out);
void flushdb(BucketContext& context, const resp::Request& request, std::string& out);
void time(BucketContext& context, const resp::Request& request, std::string& out);
void scan(BucketContext& context, const resp::Request& request, std::string& out);
// Expiry (README "Expiry").
void setex(BucketContext& context, const resp::Request& request, std::string& out);
void psetex(BucketContext& context, const resp::Request& request, std::string& out);
void getex(BucketContext& context, const resp::Request& request, std::string& out);
void expire(BucketContext& context, const resp::Request& request, std::string& out);
void pexpire(BucketContext& context, const resp::Request& request, std::string& out);
void expireat(BucketContext& context, const resp::Request& request, std::string& out);
void pexpireat(BucketContext& context, const resp::Request& request, std::string& out);
void ttl(BucketContext& context, const resp::Request& request, std::string& out);
void pttl(BucketContext& context, const resp::Request& request, std::string& out);
void expiretime(BucketContext& context, const resp::Request& request, std::string& out);
void pexpiretime(BucketContext& context, const resp::Request& request, std::string& out);
void persist(BucketContext& context, const resp::Request& request, std::string& out);
void touch(BucketContext& context, const resp::Request& request, std::string& out);

// "bucket is full: ..." (FULL), the one reply for a change that does not fit.
void append_full(std::string& out, std::size_t bytes);

} // namespace kv::data_commands
