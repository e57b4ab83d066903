/**
 * The C xenstored's limits as Xen 4.17 ships them (Debian 12: xen 4.17.5+72-g01140da4e8,
 * tools/xenstore/xenstored_core.c, "int quota_... =" near the top, all changeable with
 * xenstored command-line options). They bind unprivileged domains only, except the path
 * length, which binds everyone.
 */
export interface XenstoredQuotas {
  /** quota_nb_entry_per_domain = 1000: nodes a domain may own (create_node: ENOSPC). */
  entriesPerDomain: number;
  /** quota_nb_watch_per_domain = 128: do_watch refuses with E2BIG once a domain has *more* than this. */
  watchesPerDomain: number;
  /**
   * quota_max_entry_size = 2048: a node's stored record (24-byte header, 8 bytes per
   * permission, value, child names with their NULs) must stay below this (write_node_raw: ENOSPC).
   */
  maxEntrySize: number;
  /** quota_max_transaction = 10: do_transaction_start refuses (ENOSPC) once *more* than this are open. */
  transactionsPerConnection: number;
  /** quota_nb_perms_per_node = 5: do_set_perms refuses more entries with ENOSPC. */
  permsPerNode: number;
  /** quota_trans_nodes = 1024: nodes one transaction may touch (access_node: ENOSPC). */
  nodesPerTransaction: number;
  /**
   * quota_max_path_len = XENSTORE_REL_PATH_MAX (2048): characters after `/local/domain/<id>/`
   * (or of the whole path elsewhere); a longer path is not a valid name (EINVAL), for everyone.
   */
  maxPathLength: number;
  /**
   * quota_memory_per_domain_hard = 2.5 MiB: memory a domain's nodes and watches may use
   * (domain_memory_add). A node write past it fails with EIO (do_tdb_write's ENOMEM becomes
   * EIO in write_node_raw), a watch with ENOMEM, and the C daemon also stops reading the
   * domain's ring while it is over. The sim's accounting (record size + path length per
   * node, path + token per watch) follows do_tdb_write and add_watch but leaves out
   * buffered messages, and it does not stall.
   */
  memoryPerDomain: number;
}

export const XENSTORED_4_17_QUOTAS: Readonly<XenstoredQuotas> = Object.freeze({
  entriesPerDomain: 1000,
  watchesPerDomain: 128,
  maxEntrySize: 2048,
  transactionsPerConnection: 10,
  permsPerNode: 5,
  nodesPerTransaction: 1024,
  maxPathLength: 2048,
  memoryPerDomain: 2 * 1024 * 1024 + 512 * 1024,
});

/** sizeof(struct xs_tdb_record_hdr) on x86-64: u64 generation, 3 × u32, padded to 8 (tools/xenstore/utils.h). */
export const RECORD_HEADER_SIZE = 24;
/** sizeof(struct xs_permissions): u32 id, u32 perms. */
export const PERMISSION_RECORD_SIZE = 8;
/** DOMID_SELF: XS_IS_DOMAIN_INTRODUCED answers T for it. */
export const DOMID_SELF = 0x7ff0;
