import { describe, expect, it } from 'vitest';
import {
  decodeExtraInfo,
  decodeRxRequest,
  decodeRxResponse,
  decodeTxRequest,
  decodeTxResponse,
  encodeGsoExtra,
  encodeRxRequest,
  encodeRxResponse,
  encodeTxRequest,
  encodeTxResponse,
  NETRXF_csum_blank,
  NETRXF_data_validated,
  NETTXF_csum_blank,
  NETTXF_data_validated,
  NETTXF_more_data,
  needsNotify,
  parseXenbusState,
  RX_RING_SIZE,
  slotOffset,
  TX_RING_SIZE,
  TX_SLOT_SIZE,
} from './wire.ts';

const view = (bytes: number[]) => new DataView(new Uint8Array(bytes).buffer);

describe('netif wire layouts (netif.h)', () => {
  it('decodes and re-encodes a TX request: gref, offset, flags, id, size', () => {
    // gref 0x12345678, offset 256, csum_blank|more_data, id 7, size 1514 (little-endian)
    const bytes = [0x78, 0x56, 0x34, 0x12, 0x00, 0x01, 0x05, 0x00, 0x07, 0x00, 0xea, 0x05];
    const r = decodeTxRequest(view(bytes), 0);
    expect(r).toEqual({
      gref: 0x12345678,
      offset: 256,
      flags: NETTXF_csum_blank | NETTXF_more_data,
      id: 7,
      size: 1514,
    });
    const out = new DataView(new ArrayBuffer(12));
    encodeTxRequest(out, 0, r);
    expect([...new Uint8Array(out.buffer)]).toEqual(bytes);
  });

  it('decodes a TX response with a negative status', () => {
    const bytes = [0x09, 0x00, 0xff, 0xff]; // id 9, NETIF_RSP_ERROR
    expect(decodeTxResponse(view(bytes), 0)).toEqual({ id: 9, status: -1 });
    const out = new DataView(new ArrayBuffer(4));
    encodeTxResponse(out, 0, { id: 9, status: -1 });
    expect([...new Uint8Array(out.buffer)]).toEqual(bytes);
  });

  it('decodes and re-encodes RX requests and responses', () => {
    const req = [0x03, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x00, 0x00]; // id 3, gref 42
    expect(decodeRxRequest(view(req), 0)).toEqual({ id: 3, gref: 42 });
    const out = new DataView(new ArrayBuffer(8));
    encodeRxRequest(out, 0, { id: 3, gref: 42 });
    expect([...new Uint8Array(out.buffer)]).toEqual(req);
    const rsp = [0x03, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x10]; // id 3, offset 0, validated|csum_blank, 4096 bytes
    expect(decodeRxResponse(view(rsp), 0)).toEqual({
      id: 3,
      offset: 0,
      flags: NETRXF_data_validated | NETRXF_csum_blank,
      status: 4096,
    });
    encodeRxResponse(out, 0, { id: 3, offset: 0, flags: 3, status: 4096 });
    expect([...new Uint8Array(out.buffer)]).toEqual(rsp);
  });

  it('keeps the TX/RX swap of the checksum bits', () => {
    expect([NETTXF_csum_blank, NETTXF_data_validated]).toEqual([1, 2]);
    expect([NETRXF_data_validated, NETRXF_csum_blank]).toEqual([1, 2]);
  });

  it('writes a GSO extra-info slot: type 1, MSS at 2, GSO type at 4', () => {
    const out = new DataView(new ArrayBuffer(8));
    encodeGsoExtra(out, 0, 1, 1448);
    expect([...new Uint8Array(out.buffer)]).toEqual([0x01, 0x00, 0xa8, 0x05, 0x01, 0x00, 0x00, 0x00]);
    expect(decodeExtraInfo(out, 0)).toEqual({ type: 1, more: false, size: 1448, gsoType: 1, features: 0 });
  });

  it('has 256-slot rings after the 64-byte header', () => {
    expect(TX_RING_SIZE).toBe(256);
    expect(RX_RING_SIZE).toBe(256);
    expect(slotOffset(0, TX_SLOT_SIZE, TX_RING_SIZE)).toBe(64);
    expect(slotOffset(257, TX_SLOT_SIZE, TX_RING_SIZE)).toBe(64 + 12);
    expect(64 + 256 * 12).toBeLessThanOrEqual(4096);
  });

  it('notifies only when the event index lies in what was just pushed (uint32 wrap included)', () => {
    expect(needsNotify(0, 1, 1)).toBe(true);
    expect(needsNotify(0, 1, 2)).toBe(false);
    expect(needsNotify(0, 10, 5)).toBe(true);
    expect(needsNotify(5, 10, 5)).toBe(false);
    expect(needsNotify(0xffffffff, 1, 0)).toBe(true);
    expect(needsNotify(0xfffffff0, 0xfffffff8, 1)).toBe(false);
  });

  it('parses xenbus states strictly', () => {
    expect(parseXenbusState('4')).toBe(4);
    expect(parseXenbusState(' 2\n')).toBe(2);
    for (const bad of [undefined, '', '9', '44', 'x', '-1']) expect(parseXenbusState(bad)).toBeUndefined();
  });
});
