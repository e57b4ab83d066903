/**
 * Plugs @moat/vchan's transports (libxenvchan on Xen, vchan-socket unix sockets on a host)
 * into qrexec's `VchanEndpoint`:
 *
 *   const vchan = vchanEndpoint(xenVchanTransport(domain));          // in a VM or the lab dom0
 *   const vchan = vchanEndpoint(socketVchanTransport({ directory, localDomain: 3 })); // host tests
 */
import type { VchanTransport } from '@moat/vchan';
import type { VchanEndpoint } from './transport.ts';

export function vchanEndpoint(transport: VchanTransport): VchanEndpoint {
  return {
    async listen(remote, port, rings) {
      const stream = await transport.listen({
        peer: remote,
        port,
        readMin: rings.read,
        writeMin: rings.write,
      });
      const accepted = stream.whenConnected().then(() => stream);
      accepted.catch(() => undefined); // a listener closed before use is not an unhandled rejection
      return {
        accepted,
        close: () => {
          // Withdraw a server nobody connected to; a connected stream is the caller's to close.
          if (stream.state === 'waiting') stream.destroy();
        },
      };
    },
    connect: (remote, port, timeoutMs) => transport.connect({ peer: remote, port, timeoutMs }),
  };
}
