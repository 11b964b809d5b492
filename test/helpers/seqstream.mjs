// Sequence-numbered UDP streams for loss tests, run inside namespaces with
// `ip netns exec`. Both ends count, so a lost frame is seen, not guessed.
//   sink PORT BIND [echo] counts datagrams (distinct sequence numbers, duplicates);
//                        with echo, sends each one back. On SIGTERM prints
//                        {"received":N,"distinct":N,"dups":N} and exits.
//   send HOST PORT PPS   sends datagrams numbered 0, 1, 2, ... at up to PPS a second
//                        and counts echoes. A sender starved of CPU does not catch
//                        up in a burst (a burst overflows the receiving CPU's
//                        backlog of 1000 frames, a drop of the kernel's, not ours):
//                        what it missed is not sent, and not counted as sent. On SIGTERM stops, waits 500 ms for late echoes,
//                        prints {"sent":N,"echoed":N} and exits.
import dgram from 'node:dgram';

const [mode, a1, a2, a3] = process.argv.slice(2);
const u = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
const done = (o) => process.stdout.write(`${JSON.stringify(o)}\n`, () => process.exit(0));

if (mode === 'sink') {
  const seen = new Set();
  let received = 0;
  const echo = a3 === 'echo';
  u.on('message', (m, r) => {
    received++;
    seen.add(m.readUInt32BE(0));
    if (echo) u.send(m, r.port, r.address);
  });
  u.bind(Number(a1), a2, () => process.stdout.write('listening\n'));
  process.on('SIGTERM', () => done({ received, distinct: seen.size, dups: received - seen.size }));
} else if (mode === 'send') {
  const [host, port, pps] = [a1, Number(a2), Number(a3)];
  let sent = 0;
  const echoed = new Set();
  u.on('message', (m) => echoed.add(m.readUInt32BE(0)));
  u.on('error', () => {}); // ICMP errors while a path is down: the count shows them
  let next = Number(process.hrtime.bigint()) / 1e9; // when the next frame is due
  u.connect(port, host, () => {
    process.stdout.write('sending\n');
    const tick = setInterval(() => {
      const now = Number(process.hrtime.bigint()) / 1e9;
      if (now - next > 0.01) next = now; // more than 10 ms behind: skip, do not burst
      for (; next <= now; next += 1 / pps, sent++) {
        const b = Buffer.alloc(64);
        b.writeUInt32BE(sent, 0);
        u.send(b);
      }
    }, 2);
    process.on('SIGTERM', () => {
      clearInterval(tick);
      setTimeout(() => done({ sent, echoed: echoed.size }), 500);
    });
  });
} else {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(2);
}
