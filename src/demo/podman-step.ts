// `make demo`'s podman step: a real podman container on an xdpnet network
// (the CNI plugin), in the demo's host namespace: it reaches the outside
// server through masquerade, and the outside reaches its web page through
// `-p 8080:80`. Skipped, saying why, where podman cannot run.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { IMAGE, podman, podmanMissing, RUN_FLAGS } from './podman.js';

const PLUGIN = fileURLToPath(new URL('../../xdpnet-cni.js', import.meta.url));

export function podmanStep(host: string, outside: { ns: string; host: string; server: string }, show: (args: string[]) => void): void {
  const why = podmanMissing();
  if (why) {
    console.log(`skipped: podman cannot run here (${why})`);
    return;
  }
  const pod = podman(host, PLUGIN);
  try {
    pod.conflist('xnet', [{
      type: 'xdpnet', bridge: 'xn0', isGateway: true, ipMasq: true, mtu: 1500, hook: 'tc',
      ipam: { type: 'host-local', ranges: [[{ subnet: '10.89.0.0/24' }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: `${pod.dir}/ipam` },
      capabilities: { portMappings: true },
    }]);
    console.log(`$ podman run -d --name web --network xnet -p 8080:80 ${IMAGE} httpd -f -p 80 -h /www`);
    pod.run(['run', '-d', '--name', 'web', '--network', 'xnet', ...RUN_FLAGS, '-p', '8080:80', IMAGE, 'httpd', '-f', '-p', '80', '-h', '/www']);
    console.log(`container web: ${pod.ip('web', 'xnet')} on xdpnet bridge xn0`);
    console.log(`$ podman exec web ping -c 1 ${outside.server}`);
    console.log(pod.run(['exec', 'web', 'ping', '-c', '1', '-W', '2', outside.server]).split('\n').find((l) => /packets/.test(l)));
    const page = execFileSync('ip', ['netns', 'exec', outside.ns, process.execPath, '-e',
      `fetch('http://${outside.host}:8080/').then(r => r.text()).then(t => process.stdout.write(t))`], { encoding: 'utf8' });
    console.log(`outside -> ${outside.host}:8080 (mapped to web:80): ${page.trim()}`);
    show(['fdb', 'show', '--bridge', 'xn0']);
    show(['nat', 'portmap', 'show']);
    console.log('$ podman rm -f web   (the plugin\'s DEL: port, FDB entry, mapping, veth and bridge go)');
    pod.run(['rm', '-f', '-t', '0', 'web']);
    show(['status']);
  } finally {
    pod.close();
  }
}
