/**
 * The `bridge` role's vif hotplug script (`xl devd` runs it in the bridge domU with `add` /
 * `online` / `remove` / `offline` and XENBUS_PATH = backend/vif/<frontend domid>/<devid>):
 * the client's vif joins br0, as Xen's vif-bridge does.
 *
 * First the vif gets a MAC of its own. Linux's netback gives every vif fe:ff:ff:ff:ff:ff
 * (drivers/net/xen-netback/interface.c, xenvif_alloc, torvalds/linux @ v6.1), and the netvm
 * upstream answers for the client's gateway with its own vif's MAC, the same fe:ff:ff:ff:ff:ff
 * (Qubes' netvm does too). A bridge holds each port's MAC as a local address and delivers
 * frames for it to itself: every frame the client sent to its gateway ended in br0 with no
 * address, so the client's ping went unanswered (`./moat bench netif`, 2026-12-06: the ARP
 * reply reached the client, its echo requests never left the bridge).
 */
export function bridgeVifScript(): string {
  return `#!/bin/sh
dev=\${XENBUS_PATH##*/}
rest=\${XENBUS_PATH%/*}
domid=\${rest##*/}
vif=vif$domid.$dev
case "$1" in
add|online)
  ip link set "$vif" address $(printf 'fe:ff:fe:%02x:%02x:%02x' $((domid >> 8)) $((domid & 255)) $((dev & 255)))
  ip link set "$vif" master br0
  ip link set "$vif" up
  xenstore-write "$XENBUS_PATH/hotplug-status" connected
  echo "vif-moat-bridge: $1 $vif"
  ;;
remove|offline)
  echo "vif-moat-bridge: $1 $vif"
  ;;
esac
exit 0
`;
}
