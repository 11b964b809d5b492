// Spoofing with real containers (namespaces) on one bridge: an attacker takes
// a victim's IPv4 address (gratuitous ARP with arping, pings from it) and its
// MAC. With `attach --lock` the attacker's frames are dropped and counted and
// the victim's traffic flows; without it the same attacks work, which is what
// lets these tests fail.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { cleanup, cliIn, inNs, netns, nsMac, sh, sleep, slow, veth } from '../helpers/sys.js';

const NET = '10.89.0';
const VICTIM = `${NET}.12`;
const ATTACKER = `${NET}.13`;
const OBSERVER = `${NET}.14`;

interface FdbRow { mac: string; port: string | null }
interface StatsJson { interfaces: Array<{ iface: string | null; drops: Record<string, number> }> }

const ping = (ns: string, ip: string, extra: string[] = []) => inNs(ns, 'ping', ['-c', '3', '-i', '0.05', '-W', '1', ...extra, ip]);
/** ICMP echo requests a namespace's stack has received (/proc/net/snmp, read inside it). */
function echosIn(ns: string): number {
  const lines = sh('ip', ['netns', 'exec', ns, 'cat', '/proc/net/snmp']).split('\n').filter((l) => l.startsWith('Icmp:'));
  const [names, values] = lines.map((l) => l.split(/\s+/));
  return Number(values[names.indexOf('InEchos')]);
}
/** The MAC a namespace's neighbour table has for an address (undefined: none). */
function neighbour(ns: string, ip: string): string | undefined {
  const [n] = JSON.parse(sh('ip', ['-n', ns, '-j', 'neigh', 'show', ip])) as Array<{ lladdr?: string }>;
  return n?.lladdr;
}

describe('port lock against a container spoofing its neighbours', () => {
  let h: string;
  const c = {} as Record<'victim' | 'attacker' | 'observer', string>;
  const mac = {} as Record<'victim' | 'attacker', string>;
  const cli = cliIn(() => h);
  const drops = (port: string) => cli.okJson<StatsJson>('stats').interfaces.find((i) => i.iface === port)?.drops ?? {};
  const fdbPort = (m: string) => cli.okJson<FdbRow[]>('fdb', 'show', '--bridge', 'br0').find((r) => r.mac === m)?.port;

  beforeAll(() => {
    h = netns('host');
    for (const [who, port, ip] of [['victim', 'vv', VICTIM], ['attacker', 'va', ATTACKER], ['observer', 'vo', OBSERVER]] as const) {
      c[who] = netns(who);
      // IPv4 only: a lock passes IPv4 and ARP, and IPv6 autoconfiguration would add port-lock-proto drops to the counts
      sh('ip', ['netns', 'exec', c[who], 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
      veth(h, port, c[who], 'eth0', undefined, `${ip}/24`);
    }
    mac.victim = nsMac(c.victim);
    mac.attacker = nsMac(c.attacker);
    cli.ok('bridge', 'add', 'br0', '--address', `${NET}.1/24`);
    cli.ok('attach', 'vv', '--bridge', 'br0', '--lock', '--lock-ip', VICTIM); // the MAC: eth0's behind vv
    cli.ok('attach', 'vo', '--bridge', 'br0', '--lock', '--lock-ip', OBSERVER);
  }, slow(180_000));
  afterAll(() => cleanup(), 180_000);

  /** The attacker as it came: its own address and MAC, nobody's neighbour entries, the victim known to the observer. */
  function reset(): void {
    sh('ip', ['-n', c.attacker, 'addr', 'flush', 'dev', 'eth0']);
    sh('ip', ['-n', c.attacker, 'link', 'set', 'eth0', 'address', mac.attacker]);
    sh('ip', ['-n', c.attacker, 'addr', 'add', `${ATTACKER}/24`, 'dev', 'eth0']);
    for (const ns of Object.values(c)) sh('ip', ['-n', ns, 'neigh', 'flush', 'dev', 'eth0']);
    const r = ping(c.observer, VICTIM);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(neighbour(c.observer, VICTIM)).toBe(mac.victim);
    settle();
  }

  /**
   * Waits until the victim and the observer have confirmed their neighbours:
   * an entry a ping used probes its MAC by unicast ARP ~5 s later, and the
   * victim's answer, sent from its port, would teach the FDB the victim's MAC
   * there again in the middle of an attack.
   */
  function settle(): void {
    const busy = () => [c.victim, c.observer].some((ns) => (JSON.parse(sh('ip', ['-n', ns, '-j', 'neigh', 'show', 'dev', 'eth0'])) as Array<{ state?: string[] }>)
      .some((n) => n.state?.some((st) => st === 'DELAY' || st === 'PROBE' || st === 'INCOMPLETE')));
    for (let i = 0; i < 100 && busy(); i++) sleep(100);
  }

  /** Takes the victim's address: adds it, then announces it with gratuitous ARP (request and reply forms). */
  function takeAddress(): void {
    sh('ip', ['-n', c.attacker, 'addr', 'add', `${VICTIM}/32`, 'dev', 'eth0']);
    sleep(1100); // past the observer's ARP locktime (1 s), so an announcement may override its entry
    inNs(c.attacker, 'arping', ['-U', '-c', '2', '-w', '2', '-I', 'eth0', '-s', VICTIM, VICTIM]);
    inNs(c.attacker, 'arping', ['-A', '-c', '2', '-w', '2', '-I', 'eth0', '-s', VICTIM, VICTIM]);
  }

  /** Pings the observer from the victim's address (the observer's MAC given, so no ARP is needed first). */
  function pingFromVictimAddress(): void {
    sh('ip', ['-n', c.attacker, 'addr', 'add', `${VICTIM}/32`, 'dev', 'eth0']);
    sh('ip', ['-n', c.attacker, 'neigh', 'replace', OBSERVER, 'lladdr', nsMac(c.observer), 'dev', 'eth0', 'nud', 'permanent']);
    ping(c.attacker, OBSERVER, ['-I', VICTIM]);
  }

  /** Takes the victim's MAC and sends from it. */
  function takeMac(): void {
    sh('ip', ['-n', c.attacker, 'link', 'set', 'eth0', 'address', mac.victim]);
    inNs(c.attacker, 'arping', ['-c', '2', '-w', '2', '-I', 'eth0', OBSERVER]);
    ping(c.attacker, `${NET}.255`, ['-b']);
  }

  describe('the attacker\'s port locked (attach --lock --lock-ip its address)', () => {
    beforeAll(() => cli.ok('attach', 'va', '--bridge', 'br0', '--lock', '--lock-ip', ATTACKER));
    afterAll(() => cli.ok('detach', 'va'));
    beforeEach(reset);

    it('locked ports carry their own traffic: containers ping each other and the bridge', () => {
      for (const [from, to] of [['attacker', VICTIM], ['victim', OBSERVER], ['observer', ATTACKER]] as const) {
        const r = ping(c[from], to);
        expect(r.status, `${from} -> ${to}: ${r.stdout}${r.stderr}`).toBe(0);
      }
      expect(ping(c.attacker, `${NET}.1`).status).toBe(0);
      for (const p of ['va', 'vv', 'vo']) expect(drops(p), p).toEqual({});
    });

    it('gratuitous ARP for the victim\'s address changes no neighbour entry, and is counted', () => {
      takeAddress();
      expect(neighbour(c.observer, VICTIM)).toBe(mac.victim);
      expect(drops('va')['port-lock-arp']).toBeGreaterThanOrEqual(4);
      expect(ping(c.observer, VICTIM).status).toBe(0); // the victim's traffic flows
    });

    it('IPv4 from the victim\'s address never reaches the observer, and is counted', () => {
      const before = echosIn(c.observer);
      const counted = drops('va')['port-lock-ip'] ?? 0;
      pingFromVictimAddress();
      expect(echosIn(c.observer) - before).toBe(0);
      expect(drops('va')['port-lock-ip'] - counted).toBe(3);
    });

    it('frames from the victim\'s MAC are dropped and counted; the FDB keeps the victim behind its port', () => {
      expect(fdbPort(mac.victim)).toBe('vv');
      takeMac();
      expect(drops('va')['port-lock-mac']).toBeGreaterThanOrEqual(5);
      expect(fdbPort(mac.victim)).toBe('vv');
      expect(ping(c.observer, VICTIM).status).toBe(0);
    });
  });

  describe('the same attacks without --lock succeed (what makes the tests above able to fail)', () => {
    beforeAll(() => cli.ok('attach', 'va', '--bridge', 'br0'));
    afterAll(() => cli.ok('detach', 'va'));
    beforeEach(reset);

    it('gratuitous ARP takes over the observer\'s entry for the victim\'s address', () => {
      takeAddress();
      expect(neighbour(c.observer, VICTIM)).toBe(mac.attacker);
    });

    it('IPv4 from the victim\'s address reaches the observer', () => {
      const before = echosIn(c.observer);
      pingFromVictimAddress();
      expect(echosIn(c.observer) - before).toBe(3);
    });

    it('a frame from the victim\'s MAC moves the victim\'s FDB entry to the attacker\'s port', () => {
      const before = drops('va'); // (drop counters outlive a detach: the locked run's are still there)
      takeMac();
      expect(fdbPort(mac.victim)).toBe('va');
      expect(drops('va')).toEqual(before);
    });
  });
});
