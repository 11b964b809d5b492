// Tiny TCP/UDP peers for e2e tests, run inside namespaces with `ip netns exec`.
// Servers tell each client the address they see it from ("from ADDR:PORT").
//   tcp-server PORT [BIND]       one line "from ADDR:PORT" per connection, then echoes
//   udp-server PORT [BIND]       answers every datagram with "from ADDR:PORT"
//   tcp-client HOST PORT [BIND]  prints the server's first line
//   udp-client HOST PORT [BIND]  prints the answer (exit 1 after 3 s without one)
//   tcp-long HOST PORT           one connection: prints the first line, then sends a line
//                                every 100 ms and prints "echo N" per echo; "closed" and
//                                exit 1 if it ever breaks; on SIGTERM "alive N", exit 0
import net from 'node:net';
import dgram from 'node:dgram';

const [mode, a1, a2, a3] = process.argv.slice(2);
const out = (s) => process.stdout.write(`${s}\n`);

if (mode === 'tcp-server') {
  net.createServer((s) => {
    s.on('error', () => {});
    s.write(`from ${s.remoteAddress}:${s.remotePort}\n`);
    s.pipe(s);
  }).listen(Number(a1), a2 ?? '0.0.0.0', () => out('listening'));
} else if (mode === 'udp-server') {
  const u = dgram.createSocket('udp4');
  u.on('message', (_m, r) => u.send(`from ${r.address}:${r.port}\n`, r.port, r.address));
  u.bind(Number(a1), a2 ?? '0.0.0.0', () => out('listening'));
} else if (mode === 'tcp-client') {
  const s = net.connect({ host: a1, port: Number(a2), localAddress: a3 });
  s.setTimeout(3000, () => process.exit(1));
  s.once('data', (d) => {
    process.stdout.write(d.toString().split('\n')[0] + '\n');
    s.destroy();
  });
  s.on('error', (e) => {
    console.error(e.message);
    process.exit(1);
  });
} else if (mode === 'udp-client') {
  const u = dgram.createSocket('udp4');
  setTimeout(() => process.exit(1), 3000);
  u.on('message', (m) => {
    process.stdout.write(m.toString());
    process.exit(0);
  });
  u.bind(0, a3 ?? '0.0.0.0', () => u.send('hello', Number(a2), a1));
} else if (mode === 'tcp-long') {
  const s = net.connect({ host: a1, port: Number(a2) });
  let n = 0;
  let buf = '';
  let first = true;
  s.on('data', (d) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (first) {
        first = false;
        out(line);
      } else out(`echo ${++n}`);
    }
  });
  const timer = setInterval(() => s.write('x\n'), 100);
  const broken = () => {
    out('closed');
    process.exit(1);
  };
  s.on('error', broken).on('close', broken);
  process.on('SIGTERM', () => {
    clearInterval(timer);
    out(`alive ${n}`);
    process.exit(0);
  });
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
