// SharedTable: a hash table in a shared-memory segment with one writer and
// any number of readers in other processes that read it without a system
// call and without a lock.
//
// This header only gathers the pieces, so that a user includes one file:
//   table_layout.h         the segment's layout, which both sides agree on to
//                          the byte: the header page (at a fixed place, so
//                          readers never touch Boost's segment manager),
//                          slots, entries, the hash
//   shared_table_writer.h  the owner's side: formats the segment, writes it
//   shared_table_reader.h  a reader in another process
//   segment_file.h         a segment's name in /dev/shm: created O_EXCL,
//                          removed only while it is still the creator's
//   table_header.h         registryd's look at a table's header page
// (mapping.h, mapped_table.h and fault_guard.h are what these are made of.)
//
// The read protocol is a seqlock over data that is safe to read while it
// changes (see README "Direct reads"):
//  - the writer makes `sequence` odd, changes slots and counters, makes it
//    even again (release); new entries are written before they are linked,
//    old ones freed only after they are unlinked;
//  - a reader loads `sequence` (acquire), retries while it is odd, reads,
//    then checks that `sequence` has not moved; every offset and length it
//    follows is loaded once (atomically, relaxed) and checked first against
//    the limit of the pages the writer reserved (`reserved_limit`, never past
//    the segment's size), offsets for alignment too, so a reader racing a
//    writer can read garbage but never leave the mapping, touch a page
//    nobody reserved (a SIGBUS with /dev/shm full), or loop forever, and the
//    sequence check makes it throw that garbage away;
//  - readers write nothing, hold nothing: one killed at any instant blocks nobody;
//  - `alive` is 1 while the owner serves; the owner clears it when it exits,
//    and registryd clears it when it reaps an owner that died without doing so.
//
// Trust: /dev/shm is world-writable and shared by every user, so a reader
// takes nothing there on faith. It opens a segment only if it is a regular
// file (not a symlink: O_NOFOLLOW; not a FIFO), owned by the uid it expects,
// with no permission for group or others, holding a table of this layout,
// version, size and kind, whose owner process (pid AND start time, see
// process_identity.h) is still running; anything else is absent. A segment
// that shrinks under a reader (its owner's uid can truncate it) makes reads
// return `gone` instead of killing the reader with SIGBUS (fault_guard.h).
// A writer creates its segment with O_EXCL and never removes a name that no
// longer refers to the object it created.
#pragma once

#include "process_identity.h"
#include "segment_file.h"
#include "shared_table_reader.h"
#include "shared_table_writer.h"
#include "table_header.h"
#include "table_layout.h"
#include "unique_fd.h"
