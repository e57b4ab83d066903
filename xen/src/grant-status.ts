/** Grant-table operation status codes (xen/include/public/grant_table.h, GNTST_*). */
export const GNTST = {
  okay: 0,
  general_error: -1,
  bad_domain: -2,
  bad_gntref: -3,
  bad_handle: -4,
  bad_virt_addr: -5,
  bad_dev_addr: -6,
  no_device_space: -7,
  permission_denied: -8,
  bad_page: -9,
  bad_copy_arg: -10,
  address_too_big: -11,
  eagain: -12,
  no_space: -13,
} as const;

const names = new Map<number, string>(Object.entries(GNTST).map(([k, v]) => [v, `GNTST_${k}`]));

export function grantStatusName(status: number): string {
  return names.get(status) ?? `GNTST ${status}`;
}
