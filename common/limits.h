/*
 * limits.h - every limit on outside bytes and on our own resources, named once.
 * Each line says why the number is what it is.
 */
#ifndef EMPACT_LIMITS_H
#define EMPACT_LIMITS_H

/* An error sentence: long enough for a path and a reason, short enough for a log line. */
#define ERRCTX_MSG_MAX 512

/* Frame header: 4-byte big-endian payload length + 1 type byte. */
#define FRAME_HEADER_LEN 5

/* Largest frame payload accepted or sent.  A compressed changeset of ~100k rows
 * fits; anything larger is refused before a byte is allocated. */
#define FRAME_MAX (32u * 1024u * 1024u)

/* The first frame of a connection (HELLO) is read with this limit: the peer is
 * not yet known to be a registered site. */
#define HELLO_FRAME_MAX 64u

/* Largest decompressed changeset.  zstd output is bounded by this before
 * allocation; a "bomb" that claims or produces more is refused. */
#define CHANGESET_MAX (256u * 1024u * 1024u)

/* Largest struct buf: the biggest thing we build is a decompressed changeset. */
#define BUF_MAX ((size_t)CHANGESET_MAX)

/* Largest zstd window accepted when decompressing, as a power of two: 8 MiB
 * covers every level up to 19, far above ZSTD_LEVEL; larger windows come only
 * from --long or --ultra settings we never use, so a frame asking for one is
 * refused instead of costing that much memory. */
#define ZCODEC_WINDOW_LOG_MAX 23

/* A row's file name in the git tree: file systems cap a name at 255 bytes, so a
 * longer encoded key is cut to ROW_NAME_KEEP bytes plus '~' and its SHA-256. */
#define ROW_NAME_MAX 200
#define ROW_NAME_KEEP 128

/* A changeset's table header: columns and name length we accept (SQLite's own
 * column limit is 2000 by default; our tables have a dozen). */
#define CHANGESET_COLUMNS_MAX 2000
#define CHANGESET_NAME_MAX 255

/* `empact sync --retry N --backoff`: the first retry waits up to
 * SYNC_RETRY_BASE_MS, each next one up to twice as long, never more than
 * SYNC_RETRY_CAP_MS (a minute: a timer fires again in minutes anyway), with
 * full jitter so sites that lost the hub together do not return together.
 * N is at most SYNC_RETRY_MAX: more would outlast any sensible timer period. */
#define SYNC_RETRY_BASE_MS 1000
#define SYNC_RETRY_CAP_MS 60000
#define SYNC_RETRY_MAX 100

/* Error frame sentence length on the wire. */
#define WIRE_MSG_MAX 400

/* A site id: [a-z0-9][a-z0-9-]*, short enough for a certificate CN and a git author. */
#define SITE_ID_MAX 32

/* A join bundle is three PEM blocks and a few fields; anything bigger is not one. */
#define JOIN_BUNDLE_MAX (64 * 1024)

/* A PEM certificate or key read from disk or a replica. */
#define PEM_MAX (16 * 1024)

/* Counts of people at or above a metric's threshold are published rounded
 * to a multiple of this (client/metrics.c); the hub refuses any other
 * value for such a metric (server/hub.c). */
#define PEOPLE_ROUND_BASE 5

/* TLS handshake must finish within this; a silent peer is dropped. */
#define TLS_HANDSHAKE_TIMEOUT_MS 10000

/* A connection idle (no complete frame) longer than this is dropped. */
#define IDLE_TIMEOUT_MS 30000

/* A site waits this long for the answer to its PUSH: the hub merges and
 * commits a push while other sites' pushes may queue before it for the one
 * writer, and a 100,000-row push into a large hub takes tens of seconds.
 * The hub is known alive (it took the whole frame); a dead one still ends the
 * wait through TCP. */
#define PUSH_REPLY_TIMEOUT_MS 300000

/* The hub drops a connection whose frame has not arrived whole within this
 * long of its first byte (the HELLO: of the handshake's end), plus one second
 * per FRAME_MIN_RATE bytes of its announced length.  The idle timeout alone
 * restarts on every byte, so without this a peer trickling one byte a second
 * (slowloris) would hold a connection and its thread for ever; with it a
 * connection costs its peer at least FRAME_MIN_RATE bytes a second. */
#define FRAME_DEADLINE_MS 30000

/* The slowest link a site may push over, in bytes per second (128 kbit/s):
 * a FRAME_MAX push is given FRAME_DEADLINE_MS + 2048 s. */
#define FRAME_MIN_RATE (16u * 1024u)

/* Concurrent connections served by one hub; more wait in the listen backlog. */
#define HUB_MAX_CONNS 256

/* Concurrent connections the hub serves from one IP address: one address
 * cannot take every worker, yet several sites behind one NAT still sync at
 * once.  Connections over it are closed at once, with a log line. */
#define MAX_CONN_PER_IP 32

/* Pause after a failed accept() (e.g. out of file descriptors). */
#define ACCEPT_BACKOFF_MS 100

/* Versions sent in one pull reply before the client asks again. */
#define PULL_BATCH_MAX 1000

/* A new site's join snapshot (SNAP_DATA frames): the hub cuts the rows into
 * changesets of about SNAPSHOT_CHUNK_RAW bytes (1 MiB: big enough that frame
 * and zstd overheads vanish, small enough that neither side holds more than
 * a few MiB of it at once); a chunk is cut after the row that crosses it, so
 * one row over FRAME_MAX-sized is the only way past it, and a received chunk
 * announcing more than SNAPSHOT_CHUNK_MAX is refused before decompression. */
#define SNAPSHOT_CHUNK_RAW (1u * 1024u * 1024u)
#define SNAPSHOT_CHUNK_MAX (SNAPSHOT_CHUNK_RAW + FRAME_MAX)

/* Zstd level for changesets: level 3 is zstd's default speed/ratio balance. */
#define ZSTD_LEVEL 3

/* Compression dictionaries (`empact-hub train-dict`): the size trained by
 * default, the largest one accepted from a file or the wire (a DICT frame),
 * and the fewest sample rows worth training on (zdict needs a few hundred
 * samples to find anything; fewer gives a useless or failed dictionary). */
#define ZDICT_SIZE_DEFAULT (16u * 1024u)
#define ZDICT_SIZE_MAX (112u * 1024u)
#define ZDICT_SIZE_MIN 256u
#define ZDICT_MIN_SAMPLES 100
#define ZDICT_SAMPLES_PER_TABLE 4000

/* Certificate lifetimes in days. */
#define CA_DAYS 3650
#define CERT_DAYS 825

/* The hub folds history.git's small packs after every this many versions
 * (each version writes its objects as one pack, undeltified; folding merges
 * them geometrically and delta-compresses, see server/gitpack.c). */
#define HUB_PACK_EVERY 100

/* The most libgit2 keeps of parsed objects (commits; trees and blobs are
 * not cached), per process. */
#define GIT_CACHE_BYTES (4 * 1024 * 1024)

/* malloc arenas the serving hub lets glibc make (M_ARENA_MAX). */
#define HUB_MALLOC_ARENAS 4

/* Group commit: the pushes waiting for the hub's writer are applied
 * together, each its own version, in one transaction with one pack and one
 * set of fsyncs: at most this many, and this many bytes of changesets
 * (unless the first alone is larger), so a batch's pack stays well inside
 * BUF_MAX and one slow batch does not hold many sites. */
#define PUSH_BATCH_MAX 64
#define PUSH_BATCH_BYTES (16u * 1024u * 1024u)

/* Refusals kept for `empact-hub status`: rows older than this many days
 * are dropped, at most this many per site are kept (a revoked laptop that
 * keeps dialling cannot grow hub.db), and a reason is cut to this length. */
#define REFUSAL_KEEP_DAYS 30
#define REFUSAL_KEEP_MAX 1000
#define REFUSAL_REASON_MAX 300

/* `empact-hub status`: a site whose last sync is older than this is stale. */
#define STALE_HOURS_DEFAULT 24
#define STALE_HOURS_MAX (24 * 3650)

#endif
