/**
 * Records every byte crossing a `VchanTransport`'s streams, for transcripts of sessions with
 * Qubes' own C peers (qrexec/fixtures/ were captured this way) and for debugging in the lab.
 */
import type { VchanStream } from './stream.ts';
import type { VchanTransport } from './transport.ts';

export interface TranscriptEvent {
  /**
   * Which vchan: `listen 0:513 #2` (we are server for remote 0, port 513; the 2nd channel this
   * transport opened) or `connect 0:512 #1`. Ports are reused, the number is not.
   */
  channel: string;
  /** `out` = we wrote into the ring, `in` = we read from it, `eof` = the peer ended. */
  direction: 'in' | 'out' | 'eof';
  hex: string;
}

/** `inner` with every stream it makes tapped (`VchanStream.tap`); the streams are `inner`'s own. */
export function recordingVchanTransport(
  inner: VchanTransport,
  onEvent: (event: TranscriptEvent) => void,
): VchanTransport {
  let opened = 0;
  const record = (stream: VchanStream, name: string) => {
    const channel = `${name} #${++opened}`;
    stream.tap(({ direction, bytes }) =>
      onEvent({ channel, direction, hex: Buffer.from(bytes).toString('hex') }),
    );
    return stream;
  };
  return {
    localDomain: inner.localDomain,
    listen: async (options) => record(await inner.listen(options), `listen ${options.peer}:${options.port}`),
    connect: async (options) =>
      record(await inner.connect(options), `connect ${options.peer}:${options.port}`),
  };
}
