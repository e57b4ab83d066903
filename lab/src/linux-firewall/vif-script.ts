/**
 * The vif hotplug script of the Linux reference firewall: what Qubes' vif-route-qubes does for
 * a client vif (qubes-core-agent-linux network/vif-route-qubes), run by `xl devd` in the
 * firewall domU with `add`/`online` or `remove`/`offline` and XENBUS_PATH set by libxl.
 *
 * On `add`: the vif up in interface group 2 (what the base tables match), a permanent
 * neighbour entry with the client's MAC, a host route (metric 32752 - domid, later vifs
 * preferred), the firewall's address on the vif, the (vif, address) pair in the anti-spoofing
 * sets, proxy ARP; for each IPv6 address in the vif's `ip` key the same in the `ip6` sets and
 * a /128 route, and the firewall's IPv6 address (`/qubes-netvm-gateway6`) on the vif with
 * proxy NDP, when it has one; then `hotplug-status`, which xen-netback waits for before it connects the
 * vif, and last the purge of stale conntrack state of the client's addresses. A command that
 * fails is printed (devd's output reaches the guest's console) and the status is `error`, so
 * a half set-up vif never looks connected.
 */

export interface FirewallVifScriptOptions {
  /** The firewall's own address, which its clients use as gateway. */
  readonly ownIp: string;
  /** Its IPv6 address, its clients' IPv6 gateway (Qubes' `ipv6` feature). */
  readonly ownIp6?: string;
  /**
   * iproute2's `ip`, by absolute path: the script runs under busybox sh, which runs its own
   * `ip` applet ahead of any PATH entry for a bare `ip` (Debian's busybox-static is built with
   * FEATURE_PREFER_APPLETS), and that applet knows neither `group` nor `neighbour replace`.
   */
  readonly ipCommand: string;
  /** Where /proc/sys/net is (a test points it elsewhere). */
  readonly procSysNet?: string;
}

/** Where the lab's Linux image keeps iproute2 (linux-image.ts puts the disk's userland in /mnt/bin). */
export const LAB_IP_COMMAND = '/mnt/bin/ip';

export function firewallVifScript(o: FirewallVifScriptOptions): string {
  if (!o.ipCommand.startsWith('/'))
    throw new RangeError(
      `ipCommand "${o.ipCommand}" must be an absolute path (busybox sh prefers its applet)`,
    );
  if (!/^\d+\.\d+\.\d+\.\d+$/.test(o.ownIp)) throw new RangeError(`"${o.ownIp}" is not an IPv4 address`);
  if (o.ownIp6 !== undefined && !/^[0-9a-f:]+$/.test(o.ownIp6))
    throw new RangeError(`"${o.ownIp6}" is not an IPv6 address`);
  // DAD would hold the address tentative for a second or more (Qubes' script leaves it on);
  // the address is the firewall's own on a point-to-point link, so nothing can duplicate it.
  const own6 = o.ownIp6 ? `\\naddr replace ${o.ownIp6}/128 dev %s nodad` : '';
  const ip = o.ipCommand;
  const proc = o.procSysNet ?? '/proc/sys/net';
  return `#!/bin/sh
# XENBUS_PATH ends in backend/vif/<frontend domid>/<devid>; netback names the device vif<domid>.<devid>.
dev=\${XENBUS_PATH##*/}
rest=\${XENBUS_PATH%/*}
domid=\${rest##*/}
vif=vif$domid.$dev
# Gone already (libxl gave up on the device and removed it): writing a status would leave a
# stale backend node behind, which libxl then waits 10 s for in vain.
ips=$(xenstore-read "$XENBUS_PATH/ip") || { echo "vif-firewall: $1 $vif: $XENBUS_PATH is gone"; exit 0; }
failed=
case "$1" in
add|online)
  # In the background: libxl kills the script itself after 40 s (LIBXL_HOTPLUG_TIMEOUT), and at
  # load 18 (2026-12-06) even the two-program set-up below overran it for one of three vifs
  # arriving at once; netback waits for hotplug-status however long it takes.
  {
  mac=$(xenstore-read "$XENBUS_PATH/mac")
  # One ip and one nft process: under emulation on a loaded machine each program start takes
  # seconds, and libxl kills a hotplug script after 40 s (LIBXL_HOTPLUG_TIMEOUT); ten separate
  # commands for three vifs at once overran it (2026-12-06, load 19).
  routes=
  neighbours=
  elements=
  for a in $ips; do
    case $a in *:*) family=ip6 len=128 ;; *) family=ip len=32 ;; esac
    neighbours="$neighbours
neighbour replace $a dev $vif lladdr $mac nud permanent"
    routes="$routes
route replace $a/$len dev $vif metric $((32752 - domid))"
    elements="$elements
add element $family qubes allowed { \\"$vif\\" . $a }
add element $family qubes downstream { $a }"
  done
  out=$(printf 'link set dev %s group 2 up%s%s\naddr replace %s/32 dev %s${own6}\n' "$vif" "$neighbours" "$routes" ${o.ownIp} "$vif"${o.ownIp6 ? ' "$vif"' : ''} | ${ip} -force -batch - 2>&1) || failed="$failed; ip: $out"
  out=$(printf '%s\n' "$elements" | nft -f - 2>&1) || failed="$failed; nft: $out"
  echo 1 > ${proc}/ipv4/conf/$vif/proxy_arp || failed="$failed; proxy_arp"${
    o.ownIp6
      ? `
  echo 1 > ${proc}/ipv6/conf/$vif/proxy_ndp || failed="$failed; proxy_ndp"`
      : ''
  }
  if [ -n "$failed" ]; then
    xenstore-write "$XENBUS_PATH/hotplug-status" error
    echo "vif-firewall: $1 $vif $ips: FAILED$failed"
    exit 1
  fi
  xenstore-write "$XENBUS_PATH/hotplug-status" connected
  echo "vif-firewall: $1 $vif $ips"
  # Stale connection state of a former owner of the addresses; after the status, so a slow
  # conntrack never holds the vif back.
  for a in $ips; do
    conntrack -D -s "$a" >/dev/null 2>&1
    conntrack -D -d "$a" >/dev/null 2>&1
  done
  } &
  ;;
remove|offline)
  elements=
  for a in $ips; do
    case $a in *:*) family=ip6 ;; *) family=ip ;; esac
    elements="$elements
delete element $family qubes allowed { \\"$vif\\" . $a }
delete element $family qubes downstream { $a }"
  done
  printf '%s\n' "$elements" | nft -f - >/dev/null 2>&1
  echo "vif-firewall: $1 $vif"
  ;;
esac
exit 0
`;
}
