/**
 * The vif hotplug script of the Linux reference firewall: what Qubes' vif-route-qubes does for
 * a client vif (qubes-core-agent-linux network/vif-route-qubes), run by `xl devd` in the
 * firewall domU with `add`/`online` or `remove`/`offline` and XENBUS_PATH set by libxl.
 *
 * On `add`: the vif up in interface group 2 (what the base tables match), stale conntrack state
 * of the client's addresses purged, a permanent neighbour entry with the client's MAC, the
 * (vif, address) pair in the anti-spoofing sets, a host route (metric 32752 - domid, later
 * vifs preferred), the firewall's address on the vif, proxy ARP; then `hotplug-status`, which
 * xen-netback waits for before it connects the vif. A command that fails is printed (devd's
 * output reaches the guest's console) and the status is `error`, so a half set-up vif never
 * looks connected.
 */

export interface FirewallVifScriptOptions {
  /** The firewall's own address, which its clients use as gateway. */
  readonly ownIp: string;
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
step() {
  out=$("$@" 2>&1) || { failed="$failed; $*: $out"; echo "vif-firewall: $vif: FAILED $*: $out"; }
}
case "$1" in
add|online)
  mac=$(xenstore-read "$XENBUS_PATH/mac")
  step ${ip} link set dev "$vif" group 2 up
  for a in $ips; do
    conntrack -D -s "$a" >/dev/null 2>&1
    conntrack -D -d "$a" >/dev/null 2>&1
    step ${ip} neighbour replace "$a" dev "$vif" lladdr "$mac" nud permanent
    step nft add element ip qubes allowed "{ \\"$vif\\" . $a }"
    step nft add element ip qubes downstream "{ $a }"
  done
  for a in $ips; do step ${ip} route replace "$a/32" dev "$vif" metric $((32752 - domid)); done
  step ${ip} addr replace ${o.ownIp}/32 dev "$vif"
  echo 1 > ${proc}/ipv4/conf/$vif/proxy_arp || failed="$failed; proxy_arp"
  if [ -n "$failed" ]; then
    xenstore-write "$XENBUS_PATH/hotplug-status" error
    echo "vif-firewall: $1 $vif $ips: error$failed"
    exit 1
  fi
  xenstore-write "$XENBUS_PATH/hotplug-status" connected
  echo "vif-firewall: $1 $vif $ips"
  ;;
remove|offline)
  for a in $ips; do
    nft delete element ip qubes allowed "{ \\"$vif\\" . $a }" 2>/dev/null
    nft delete element ip qubes downstream "{ $a }" 2>/dev/null
  done
  echo "vif-firewall: $1 $vif"
  ;;
esac
exit 0
`;
}
