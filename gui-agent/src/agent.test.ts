import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import { socketVchanTransport } from '@moat/vchan/socket';
import { SimHypervisor } from '@moat/xen/sim';
import { afterEach, describe, expect, it } from 'vitest';
import { guiDomainFrom, startGuiAgent } from './agent.ts';
import { GuiDaemon } from './daemon/daemon.ts';
import { GuiError } from './errors.ts';
import { type GuiPair, guiPair, nextEvent, testPattern } from './test-pair.ts';
import { MAX_WINDOW_WIDTH, Msg, versionWord } from './wire.ts';

let pair: GuiPair | undefined;
afterEach(async () => {
  await pair?.close();
  pair = undefined;
});

/** Waits until the daemon has processed every message the agent sent so far. */
async function settle(p: GuiPair, _window?: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while (p.daemon.received.length < p.agent.stats.messagesOut) {
    if (Date.now() > deadline) throw new Error('the daemon did not catch up with the agent');
    if (p.daemon.error) throw p.daemon.error;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** The RGB bytes of a PNG our writer made (8-bit RGB, filter 0 on every row). */
function pngPixels(png: Uint8Array, width: number, height: number): Uint8Array {
  const view = new DataView(png.buffer, png.byteOffset);
  let at = 8;
  const idat: Uint8Array[] = [];
  for (;;) {
    const length = view.getUint32(at);
    const type = new TextDecoder().decode(png.subarray(at + 4, at + 8));
    if (type === 'IDAT') idat.push(png.subarray(at + 8, at + 8 + length));
    if (type === 'IEND') break;
    at += 12 + length;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const out = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const s = y * (width * 3 + 1) + 1 + x * 3;
      out.set([raw[s]!, raw[s + 1]!, raw[s + 2]!, 255], (y * width + x) * 4);
    }
  }
  return out;
}

describe('GUI agent against the lab daemon (unix-socket vchan, sim grants)', () => {
  it('negotiates 1.7 with a 1.8 daemon and learns the screen from xconf', async () => {
    pair = await guiPair({ daemon: { screen: { width: 2560, height: 1440 } } });
    expect(pair.agent.version).toBe(versionWord(1, 7));
    expect(pair.daemon.agentVersion).toBe(versionWord(1, 7));
    expect(pair.agent.screen).toEqual({ w: 2560, h: 1440, depth: 24, mem: 14401 });
    expect(pair.agent.monitors).toEqual([{ x: 0, y: 0, width: 2560, height: 1440 }]);
  });

  it('a drawn test pattern reaches the daemon pixel for pixel, and its PNG has the same pixels', async () => {
    pair = await guiPair();
    const window = pair.agent.openWindow({ title: 'pattern', width: 160, height: 90 });
    const pattern = testPattern(160, 90);
    window.draw(pattern);
    await settle(pair, window.id);
    const seen = pair.daemon.window(window.id);
    expect(seen).toMatchObject({ width: 160, height: 90, mapped: true, title: 'pattern', resClass: 'moat' });
    expect(pair.daemon.rgba(window.id)).toEqual(pattern);
    expect(pngPixels(pair.daemon.png(window.id), 160, 90)).toEqual(pattern);
    expect(pair.daemon.warnings).toEqual([]);
  });

  it('pixels already in BGRX are copied as they are', async () => {
    pair = await guiPair();
    const window = pair.agent.openWindow({ title: 'bgrx', width: 20, height: 10 });
    const rgba = testPattern(20, 10, 4);
    const bgrx = rgba.slice();
    for (let i = 0; i < bgrx.length; i += 4) [bgrx[i], bgrx[i + 2]] = [rgba[i + 2]!, rgba[i]!];
    window.draw(bgrx, undefined, { format: 'bgrx' });
    window.draw(bgrx.subarray(0, 5 * 4 * 2), { x: 3, y: 4, width: 5, height: 2 }, { format: 'bgrx' });
    await settle(pair);
    const expected = rgba.slice();
    for (let row = 0; row < 2; row++)
      expected.set(rgba.subarray(row * 5 * 4, row * 5 * 4 + 20), ((4 + row) * 20 + 3) * 4);
    expect(pair.daemon.rgba(window.id)).toEqual(expected);
  });

  it('hide unmaps (the daemon lets go of the buffer) and show maps and redraws it', async () => {
    pair = await guiPair();
    const window = pair.agent.openWindow({ title: 'peekaboo', width: 30, height: 30 });
    window.draw(testPattern(30, 30, 8));
    window.hide();
    await settle(pair);
    expect(pair.daemon.window(window.id)).toMatchObject({ mapped: false, mapping: undefined });
    window.show();
    await settle(pair);
    expect(pair.daemon.window(window.id).mapped).toBe(true);
    expect(pair.daemon.rgba(window.id)).toEqual(testPattern(30, 30, 8));
    expect(window.sharedPages).toBe(Math.ceil((30 * 30 * 4) / 4096));
    await window.close();
    expect(pair.agent.sharedPages).toBe(0);
  });

  it('a damage update changes exactly the damaged pixels', async () => {
    pair = await guiPair();
    const window = pair.agent.openWindow({ title: 'damage', width: 64, height: 48 });
    const before = testPattern(64, 48, 1);
    window.draw(before);
    await settle(pair, window.id);
    const patch = testPattern(10, 7, 99);
    window.draw(patch, { x: 20, y: 30, width: 10, height: 7 });
    await settle(pair, window.id);
    const after = pair.daemon.rgba(window.id);
    for (let y = 0; y < 48; y++) {
      for (let x = 0; x < 64; x++) {
        const i = (y * 64 + x) * 4;
        const inside = x >= 20 && x < 30 && y >= 30 && y < 37;
        const expected = inside
          ? patch.subarray(((y - 30) * 10 + (x - 20)) * 4, ((y - 30) * 10 + (x - 20)) * 4 + 4)
          : before.subarray(i, i + 4);
        expect([...after.subarray(i, i + 4)], `pixel ${x},${y}`).toEqual([...expected]);
      }
    }
  });

  it('a resize from dom0 reaches the application, is acknowledged, and the old grants go once the daemon is done', async () => {
    pair = await guiPair();
    const window = pair.agent.openWindow({ title: 'resize', width: 100, height: 100 });
    const events = window[Symbol.asyncIterator]();
    await settle(pair, window.id);
    const pagesBefore = window.sharedPages;
    expect(pagesBefore).toBe(10); // 100×100×4 bytes in 4 KiB pages
    const since = pair.daemon.received.length;
    pair.daemon.configure(window.id, { x: 10, y: 20, width: 300, height: 200 });
    expect(await nextEvent(events)).toEqual({ type: 'resize', width: 300, height: 200 });
    expect(await nextEvent(events)).toEqual({ type: 'move', x: 10, y: 20 });
    const ack = await pair.daemon.waitFor('configure', (m) => m.window === window.id, { since });
    expect(ack).toMatchObject({ x: 10, y: 20, width: 300, height: 200 });
    await pair.daemon.waitFor('window-dump', (m) => m.window === window.id && m.width === 300, { since });
    window.draw(testPattern(300, 200));
    await settle(pair, window.id);
    expect(pair.daemon.window(window.id).queuedConfigure).toBe(false);
    expect(pair.daemon.rgba(window.id)).toEqual(testPattern(300, 200));
    // After the ack for the new dump, only the new buffer is shared.
    expect(window.sharedPages).toBe(Math.ceil((300 * 200 * 4) / 4096));
  });

  it('a resize from dom0 beyond what gntalloc can share keeps the old image and is still acknowledged', async () => {
    pair = await guiPair({ gntallocLimit: 40 });
    const window = pair.agent.openWindow({ title: 'big', width: 100, height: 100 });
    await settle(pair);
    const since = pair.daemon.received.length;
    pair.daemon.configure(window.id, { x: 0, y: 0, width: 4000, height: 3000 });
    await pair.daemon.waitFor('configure', (m) => m.width === 4000, { since });
    expect(pair.agent.stats.shareFailures).toBe(1);
    expect(window.width).toBe(100);
    expect(pair.daemon.window(window.id).queuedConfigure).toBe(false);
    window.draw(testPattern(100, 100));
    await settle(pair);
    expect(pair.daemon.error).toBeUndefined();
  });

  it('an application resize re-shares the buffer and the daemon follows', async () => {
    pair = await guiPair();
    const window = pair.agent.openWindow({ title: 'grow', width: 50, height: 50 });
    window.resize(80, 40);
    window.draw(testPattern(80, 40, 5));
    await settle(pair, window.id);
    expect(pair.daemon.window(window.id)).toMatchObject({
      width: 80,
      height: 40,
      imageWidth: 80,
      imageHeight: 40,
    });
    expect(pair.daemon.rgba(window.id)).toEqual(testPattern(80, 40, 5));
    expect(() => window.resize(MAX_WINDOW_WIDTH + 1, 10)).toThrow(GuiError);
  });

  it('keys, buttons, the wheel, motion, crossing and focus reach the window as events', async () => {
    pair = await guiPair({ agent: { keyboardLayout: 'de+nodeadkeys+' } });
    const window = pair.agent.openWindow({ title: 'input', width: 40, height: 40 });
    const events = window[Symbol.asyncIterator]();
    await settle(pair, window.id);
    const id = window.id;
    pair.daemon.focus(id, true);
    expect(await nextEvent(events)).toEqual({ type: 'focus', focused: true });
    pair.daemon.key(id, 29, true); // the key right of T: y on a US keyboard, z on a German one
    expect(await nextEvent(events)).toMatchObject({
      type: 'key',
      pressed: true,
      keycode: 29,
      keysym: 'z',
      text: 'z',
    });
    pair.daemon.key(id, 29, false);
    expect(await nextEvent(events)).toMatchObject({ type: 'key', pressed: false, keysym: 'z', text: '' });
    pair.daemon.key(id, 35, true, 1); // shift + the key left of Return: asterisk on de
    expect(await nextEvent(events)).toMatchObject({ keysym: 'asterisk', text: '*' });
    pair.daemon.button(id, 1, true, { x: 5, y: 6 });
    expect(await nextEvent(events)).toEqual({
      type: 'button',
      pressed: true,
      button: 1,
      x: 5,
      y: 6,
      state: 0,
    });
    pair.daemon.wheel(id, 'down', { x: 7, y: 8 });
    expect(await nextEvent(events)).toEqual({ type: 'wheel', dx: 0, dy: 1, x: 7, y: 8, state: 0 });
    pair.daemon.motion(id, { x: -3, y: 50 });
    expect(await nextEvent(events)).toEqual({ type: 'motion', x: -3, y: 50, state: 0 });
    pair.daemon.crossing(id, false, { x: 41, y: 0 });
    expect(await nextEvent(events)).toEqual({ type: 'leave', x: 41, y: 0, state: 0 });
    pair.daemon.focus(id, false);
    expect(await nextEvent(events)).toEqual({ type: 'focus', focused: false });
  });

  it('a close request reaches the application, and closing releases every grant after the destroy echo', async () => {
    pair = await guiPair();
    const window = pair.agent.openWindow({ title: 'close me', width: 64, height: 64 });
    const events = window[Symbol.asyncIterator]();
    await settle(pair, window.id);
    pair.daemon.close(window.id);
    expect(await nextEvent(events)).toEqual({ type: 'close-request' });
    await window.close();
    expect(window.sharedPages).toBe(0);
    expect(pair.agent.sharedPages).toBe(0);
    expect(pair.daemon.windows.has(window.id)).toBe(false);
    expect(pair.daemon.mappedPages).toBe(0);
    expect((await events.next()).done).toBe(true);
  });

  it('clipboard requests are answered with empty data; pastes are ignored', async () => {
    pair = await guiPair();
    const window = pair.agent.openWindow({ title: 'clip', width: 8, height: 8 });
    pair.daemon.requestClipboard(window.id);
    const data = await pair.daemon.waitFor('clipboard-data');
    expect(data.data.length).toBe(0);
    expect(pair.agent.stats.clipboardRequestsRefused).toBe(1);
    expect(pair.daemon.warnings).toEqual([]);
  });

  it('several windows, one override-redirect and transient, keep their own images and titles', async () => {
    pair = await guiPair();
    const main = pair.agent.openWindow({ title: 'main', width: 30, height: 20, className: 'Viewer' });
    const popup = pair.agent.openWindow({
      title: 'menu',
      width: 10,
      height: 12,
      x: 5,
      y: 5,
      overrideRedirect: true,
      transientFor: main,
    });
    main.draw(testPattern(30, 20, 2));
    popup.draw(testPattern(10, 12, 3));
    await settle(pair, main.id);
    await settle(pair, popup.id);
    expect(pair.daemon.window(popup.id)).toMatchObject({
      overrideRedirect: true,
      transientFor: main.id,
      x: 5,
      y: 5,
    });
    expect(pair.daemon.window(main.id)).toMatchObject({ resClass: 'Viewer', overrideRedirect: false });
    expect(pair.daemon.rgba(main.id)).toEqual(testPattern(30, 20, 2));
    expect(pair.daemon.rgba(popup.id)).toEqual(testPattern(10, 12, 3));
  });

  it('titles go out as the daemon accepts them: control characters replaced, long ones cut at a character with …', async () => {
    pair = await guiPair();
    const window = pair.agent.openWindow({ title: 'tab\there\u0007', width: 8, height: 8 });
    await settle(pair, window.id);
    expect(pair.daemon.window(window.id).title).toBe('tab_here_');
    const long = 'ü'.repeat(100); // 200 bytes of UTF-8
    window.setTitle(long);
    await pair.daemon.waitFor('wmname', (m) => m.data[0] === 0xc3 && m.window === window.id);
    const title = pair.daemon.window(window.id).title;
    expect(title).toBe(`${'ü'.repeat(62)}\u2026`);
    expect(new TextEncoder().encode(title).length).toBeLessThanOrEqual(127);
    expect(pair.daemon.warnings).toEqual([]);
  });

  it('100 open/close cycles leave no grants behind on either side', async () => {
    // A small gntalloc limit: a leak of one 10-page buffer per cycle would hit it long before 100.
    pair = await guiPair({ gntallocLimit: 64 });
    for (let i = 0; i < 100; i++) {
      const window = pair.agent.openWindow({ title: `cycle ${i}`, width: 100, height: 100 });
      window.draw(testPattern(100, 100, i));
      if (i % 10 === 0) window.resize(90, 110);
      await window.close();
    }
    expect(pair.agent.sharedPages).toBe(0);
    expect(pair.agent.windows).toEqual([]);
    expect(pair.daemon.windows.size).toBe(0);
    expect(pair.daemon.mappedPages).toBe(0);
    expect(pair.daemon.error).toBeUndefined();
  });

  it('against a 1.5 daemon (no dump acks) replaced buffers stay until the window goes, and cycles leave no grants', async () => {
    pair = await guiPair({ daemon: { version: versionWord(1, 5) }, gntallocLimit: 64 });
    expect(pair.agent.version).toBe(versionWord(1, 5));
    for (let i = 0; i < 20; i++) {
      if (pair.daemon.error) throw pair.daemon.error;
      const window = pair.agent.openWindow({ title: `old ${i}`, width: 100, height: 100 });
      window.resize(120, 100);
      expect(window.sharedPages).toBe(12 + 10);
      await window.close();
    }
    expect(pair.agent.sharedPages).toBe(0);
    await settle(pair);
    expect(pair.daemon.mappedPages).toBe(0);
  });

  it('when the daemon goes away, the agent waits for the next one and announces its windows again', async () => {
    pair = await guiPair();
    const window = pair.agent.openWindow({ title: 'survivor', width: 40, height: 30, className: 'Viewer' });
    window.draw(testPattern(40, 30, 6));
    window.resize(50, 30);
    window.draw(testPattern(50, 30, 6));
    await settle(pair);
    pair.daemon.disconnect();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(pair.agent.connected).toBe(false);
    window.draw(testPattern(50, 30, 9)); // while nobody listens: kept in the buffer, sent later
    const hidden = pair.agent.openWindow({ title: 'opened meanwhile', width: 8, height: 8 });
    hidden.hide();
    const next = await GuiDaemon.connect({
      transport: socketVchanTransport({ directory: pair.directory, localDomain: 0 }),
      vmDomain: pair.vm.domid,
      grants: pair.hv.dom0.grantMapper,
    });
    await next.waitFor('shmimage', (m) => m.window === window.id && m.width === 50, { since: 0 });
    await next.waitFor('window-dump', (m) => m.window === hidden.id, { since: 0 });
    expect(pair.agent.stats.reconnects).toBe(1);
    expect(next.window(window.id)).toMatchObject({
      title: 'survivor',
      resClass: 'Viewer',
      width: 50,
      mapped: true,
    });
    expect(next.rgba(window.id)).toEqual(testPattern(50, 30, 9));
    expect(next.window(hidden.id)).toMatchObject({ title: 'opened meanwhile', mapped: false });
    // Only the current buffers stay shared: the old daemon's mappings went with it.
    expect(pair.agent.sharedPages).toBe(window.sharedPages + hidden.sharedPages);
    expect(window.sharedPages).toBe(Math.ceil((50 * 30 * 4) / 4096));
    await window.close();
    expect(next.error).toBeUndefined();
    next.disconnect();
  });

  it('monitors from qubes.SetMonitorLayout replace the screen-sized default', async () => {
    pair = await guiPair();
    pair.agent.setMonitors([
      { x: 0, y: 0, width: 1920, height: 1080 },
      { x: 1920, y: 0, width: 1280, height: 1024 },
    ]);
    expect(pair.agent.monitors.map((m) => m.width)).toEqual([1920, 1280]);
  });

  it('the daemon sees messages in the order the C agent sends them on create', async () => {
    pair = await guiPair();
    const since = pair.daemon.received.length;
    const window = pair.agent.openWindow({ title: 'order', width: 16, height: 16 });
    await settle(pair, window.id);
    const kinds = pair.daemon.received.slice(since, since + 8).map((m) => m.kind);
    expect(kinds).toEqual([
      'create',
      'window-hints',
      'wmname',
      'wmclass',
      'configure',
      'window-dump',
      'map',
      'shmimage',
    ]);
    expect(Msg.CREATE).toBe(130);
  });
});

describe('settings from QubesDB', () => {
  it('reads /qubes-gui-domain-xid (dom0 when absent) and refuses what is not a domain id', () => {
    expect(guiDomainFrom(undefined)).toBe(0);
    expect(guiDomainFrom('')).toBe(0);
    expect(guiDomainFrom('3')).toBe(3);
    expect(() => guiDomainFrom('-1')).toThrow(GuiError);
    expect(() => guiDomainFrom('0x3')).toThrow(GuiError);
    expect(() => guiDomainFrom('70000')).toThrow(GuiError);
  });

  it('serves the GUI domain QubesDB names, and follows /keyboard-layout', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'gui-qdb-'));
    const hv = new SimHypervisor();
    const guivm = hv.createDomain({ name: 'sys-gui' });
    const vm = hv.createDomain({ name: 'viewer' });
    const keys = new Map([
      ['/qubes-gui-domain-xid', String(guivm.domid)],
      ['/keyboard-layout', 'fr++'],
    ]);
    let listener: ((changedPath: string) => void) | undefined;
    const qubesdb = {
      read: (path: string) => keys.get(path),
      watch: (_path: string, l: (changedPath: string) => void) => {
        listener = l;
        return () => {
          listener = undefined;
        };
      },
    };
    const started = startGuiAgent({
      transport: socketVchanTransport({ directory, localDomain: vm.domid }),
      grants: vm.grantSharer,
      qubesdb,
    });
    const daemon = await GuiDaemon.connect({
      transport: socketVchanTransport({ directory, localDomain: guivm.domid }),
      vmDomain: vm.domid,
      grants: guivm.grantMapper,
    });
    const agent = await started;
    expect(agent.keyboardLayout).toBe('fr');
    keys.set('/keyboard-layout', 'de+nodeadkeys+');
    listener?.('/keyboard-layout');
    expect(agent.keyboardLayout).toBe('de(nodeadkeys)');
    const window = agent.openWindow({ title: 'on sys-gui', width: 20, height: 20 });
    window.draw(testPattern(20, 20));
    await daemon.waitFor('shmimage', (m) => m.window === window.id && m.width === 20, { since: 0 });
    agent.close();
    await agent.ended;
    expect(listener).toBeUndefined();
    daemon.disconnect();
    rmSync(directory, { recursive: true, force: true });
  });
});
