/**
 * The advisory lock keys (docs/ARCHITECTURE.md "Advisory locks and NOTIFY
 * channels"). PostgreSQL has one advisory lock space per database, shared by
 * every application: each key here is a namespace of its own (ASCII "tri?"
 * for the two-key locks), so no two of Tributary's locks, and few of anyone
 * else's, can collide.
 *
 * A two-key lock (namespace, hashtext(name)) shows in pg_locks as
 * locktype 'advisory', classid = namespace, objid = hashtext(name) as an
 * unsigned 32-bit oid, objsubid = 2. A one-key (bigint) lock shows as
 * classid = its high 32 bits, objid = its low 32 bits, objsubid = 1.
 *
 * Any role that can connect may take these locks (outside the trust
 * boundary): holding one is a denial of service, never a forgery.
 */

/**
 * 0x74726962 "trib": (RELAY_LOCK, hashtext(slot)), session lock on the active
 * relay's lock connection (invariant 5). Standbys poll it with
 * pg_try_advisory_lock.
 */
export const RELAY_LOCK = 0x7472_6962;

/**
 * 0x74726963 "tric": (RELAY_CANDIDATE_LOCK, hashtext(slot)), shared session
 * lock every relay session of the slot takes on its lock connection before
 * it polls RELAY_LOCK. A holder that does not also hold RELAY_LOCK is a
 * standby: `tributary status` counts them from pg_locks.
 */
export const RELAY_CANDIDATE_LOCK = 0x7472_6963;

/**
 * 0x74726967 "trig": (GROUP_LOCK, hashtext(group)), transaction lock around
 * every change of a consumer group's membership, assignment or offsets reset
 * (invariant 8), so rebalances never interleave.
 */
export const GROUP_LOCK = 0x7472_6967;

/**
 * 0x74726971 "triq": (QUEUE_FIFO_LOCK, hashtext(queue)), transaction lock of
 * tributary.claim on a FIFO queue (migrations 0003, 0004): FIFO claims of one
 * queue run one at a time (invariant 10). Taken in SQL only; listed here so
 * no other key takes its namespace.
 */
export const QUEUE_FIFO_LOCK = 0x7472_6971;

/**
 * 0x74727176 "trqv": (QUEUE_VACUUM_LOCK, 0), session lock a queue worker
 * tries (never waits for) around its VACUUM of tributary.queue_messages: one
 * VACUUM at a time across the database's workers.
 */
export const QUEUE_VACUUM_LOCK = 0x7472_7176;

/**
 * 7310112201: a one-key session lock held by `migrate` while it applies
 * migrations, so two migrators never apply the same file. In pg_locks:
 * classid 1, objid 3015144905, objsubid 1.
 */
export const MIGRATE_LOCK = 7_310_112_201;
