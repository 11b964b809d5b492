// libbpf (Debian's libbpf.so.1, 1.1.x) through koffi. Everything above this
// module works with BpfObject / BpfMap / BpfProgram and typed errors; nothing
// else imports koffi except sys/libc.ts.
// Over 500 lines because it is the one FFI binding of libbpf (only src/sys talks
// FFI): declarations, object, map and program wrappers belong together.
import koffi from 'koffi';
import { existsSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { constants } from 'node:os';
import { BpfError, VerifierError, XdpnetError } from '../errors.js';
import { close as closeFd, vformat } from './libc.js';

const { EEXIST, EINTR, EINVAL, ENODEV, ENOENT, EOPNOTSUPP } = constants.errno;
/** The kernel's internal ENOTSUPP (include/linux/errno.h), which BPF syscalls can leak; not a POSIX errno, so not in os.constants. */
const ENOTSUPP = 524;

// Kernel constants not in Debian 12's 6.1 uapi headers are spelled out here.
export const BPF_XDP = 37;
export const BPF_TCX_INGRESS = 46;
export const BPF_TCX_EGRESS = 47;
export const XDP_FLAGS_SKB_MODE = 1 << 1;
export const XDP_FLAGS_DRV_MODE = 1 << 2;
export const BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1;
export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;
export const LINK_TYPE = { 6: 'xdp', 11: 'tcx' } as Record<number, string>;
export const PERCPU_MAP_TYPES = new Set([5, 6, 10, 21]); // PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH, PERCPU_CGROUP_STORAGE
const DEVMAP_TYPES = new Set([14, 16, 25]); // DEVMAP, CPUMAP, DEVMAP_HASH
const BPF_F_RDONLY_PROG = 1 << 7;

type Ptr = bigint | null;

function bind() {
  let so: ReturnType<typeof koffi.load>;
  try {
    so = koffi.load('libbpf.so.1');
  } catch {
    throw new XdpnetError('cannot load libbpf.so.1', 'install it: apt-get install libbpf1');
  }
  const OpenOpts = koffi.struct('xn_bpf_object_open_opts', {
    sz: 'size_t',
    object_name: 'const char *',
    relaxed_maps: 'bool',
    pin_root_path: 'const char *',
    _removed: 'uint32_t',
    kconfig: 'const char *',
    btf_custom_path: 'const char *',
    kernel_log_buf: 'void *',
    kernel_log_size: 'size_t',
    kernel_log_level: 'uint32_t',
  });
  const TestRunOpts = koffi.struct('xn_bpf_test_run_opts', {
    sz: 'size_t',
    data_in: 'void *',
    data_out: 'void *',
    data_size_in: 'uint32_t',
    data_size_out: 'uint32_t',
    ctx_in: 'void *',
    ctx_out: 'void *',
    ctx_size_in: 'uint32_t',
    ctx_size_out: 'uint32_t',
    retval: 'uint32_t',
    repeat: 'int',
    duration: 'uint32_t',
    flags: 'uint32_t',
    cpu: 'uint32_t',
    batch_size: 'uint32_t',
  });
  // Only the leading fields we set; libbpf accepts a shorter sz.
  const LinkCreateOpts = koffi.struct('xn_bpf_link_create_opts', { sz: 'size_t', flags: 'uint32_t' });
  const BatchOpts = koffi.struct('xn_bpf_map_batch_opts', { sz: 'size_t', elem_flags: 'uint64_t', flags: 'uint64_t' });
  // The classic tc path (clsact qdisc + direct-action cls_bpf filter), libbpf's netlink helpers.
  const TcHook = koffi.struct('xn_bpf_tc_hook', { sz: 'size_t', ifindex: 'int', attach_point: 'int', parent: 'uint32_t' });
  const TcOpts = koffi.struct('xn_bpf_tc_opts', {
    sz: 'size_t', prog_fd: 'int', flags: 'uint32_t', prog_id: 'uint32_t', handle: 'uint32_t', priority: 'uint32_t',
  });
  // Leading fields of bpf_map_create_opts, up to map_flags.
  const MapCreateOpts = koffi.struct('xn_bpf_map_create_opts', {
    sz: 'size_t', btf_fd: 'uint32_t', btf_key_type_id: 'uint32_t', btf_value_type_id: 'uint32_t',
    btf_vmlinux_value_type_id: 'uint32_t', inner_map_fd: 'uint32_t', map_flags: 'uint32_t',
  });
  // bpf_iter_attach_opts; link_info points at union bpf_iter_link_info (for a map element iterator: the map's fd).
  const IterAttachOpts = koffi.struct('xn_bpf_iter_attach_opts', { sz: 'size_t', link_info: 'void *', link_info_len: 'uint32_t' });
  const PrintFn = koffi.proto('int xn_libbpf_print_fn(int level, const char *fmt, void *ap)');
  const SampleFn = koffi.proto('int xn_ring_buffer_sample_fn(void *ctx, void *data, size_t size)');
  return {
    OpenOpts,
    TestRunOpts,
    LinkCreateOpts,
    BatchOpts,
    TcHook,
    TcOpts,
    MapCreateOpts,
    IterAttachOpts,
    PrintFn,
    SampleFn,
    map_set_pin_path: so.func('int bpf_map__set_pin_path(void *map, const char *path)'),
    ring_buffer_new: so.func('void *ring_buffer__new(int map_fd, xn_ring_buffer_sample_fn *cb, void *ctx, void *opts)'),
    ring_buffer_poll: so.func('int ring_buffer__poll(void *rb, int timeout_ms)'),
    ring_buffer_free: so.func('void ring_buffer__free(void *rb)'),
    raw_tracepoint_open: so.func('int bpf_raw_tracepoint_open(const char *name, int prog_fd)'),
    enable_stats: so.func('int bpf_enable_stats(int type)'),
    prog_get_fd_by_id: so.func('int bpf_prog_get_fd_by_id(uint32_t id)'),
    set_print: so.func('void *libbpf_set_print(xn_libbpf_print_fn *fn)'),
    num_possible_cpus: so.func('int libbpf_num_possible_cpus(void)'),
    object_open_file: so.func('void *bpf_object__open_file(const char *path, xn_bpf_object_open_opts *opts)'),
    object_load: so.func('int bpf_object__load(void *obj)'),
    object_close: so.func('void bpf_object__close(void *obj)'),
    object_btf: so.func('void *bpf_object__btf(void *obj)'),
    object_next_program: so.func('void *bpf_object__next_program(void *obj, void *prev)'),
    object_next_map: so.func('void *bpf_object__next_map(void *obj, void *prev)'),
    program_name: so.func('const char *bpf_program__name(void *prog)'),
    program_fd: so.func('int bpf_program__fd(void *prog)'),
    program_set_autoload: so.func('int bpf_program__set_autoload(void *prog, bool autoload)'),
    map_name: so.func('const char *bpf_map__name(void *map)'),
    map_fd: so.func('int bpf_map__fd(void *map)'),
    map_initial_value: so.func('void *bpf_map__initial_value(void *map, _Out_ size_t *psize)'),
    map_set_max_entries: so.func('int bpf_map__set_max_entries(void *map, uint32_t max)'),
    map_max_entries: so.func('uint32_t bpf_map__max_entries(void *map)'),
    map_type: so.func('int bpf_map__type(void *map)'),
    map_flags: so.func('uint32_t bpf_map__map_flags(void *map)'),
    map_set_flags: so.func('int bpf_map__set_map_flags(void *map, uint32_t flags)'),
    map_set_type: so.func('int bpf_map__set_type(void *map, int type)'),
    btf_raw_data: so.func('void *btf__raw_data(void *btf, _Out_ uint32_t *size)'),
    obj_pin: so.func('int bpf_obj_pin(int fd, const char *path)'),
    obj_get: so.func('int bpf_obj_get(const char *path)'),
    obj_get_info_by_fd: so.func('int bpf_obj_get_info_by_fd(int fd, void *info, _Inout_ uint32_t *len)'),
    map_lookup_elem: so.func('int bpf_map_lookup_elem(int fd, const void *key, void *value)'),
    map_update_elem: so.func('int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)'),
    map_delete_elem: so.func('int bpf_map_delete_elem(int fd, const void *key)'),
    map_get_next_key: so.func('int bpf_map_get_next_key(int fd, const void *key, void *next)'),
    map_lookup_batch: so.func(
      'int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, _Inout_ uint32_t *count, xn_bpf_map_batch_opts *opts)',
    ),
    map_update_batch: so.func(
      'int bpf_map_update_batch(int fd, const void *keys, const void *values, _Inout_ uint32_t *count, xn_bpf_map_batch_opts *opts)',
    ),
    map_delete_batch: so.func(
      'int bpf_map_delete_batch(int fd, const void *keys, _Inout_ uint32_t *count, xn_bpf_map_batch_opts *opts)',
    ),
    prog_test_run_opts: so.func('int bpf_prog_test_run_opts(int fd, _Inout_ xn_bpf_test_run_opts *opts)'),
    prog_test_run_raw: so.func('int bpf_prog_test_run_opts(int fd, void *opts)'), // FrameRunner: opts already in C memory
    tc_hook_create: so.func('int bpf_tc_hook_create(xn_bpf_tc_hook *hook)'),
    tc_hook_destroy: so.func('int bpf_tc_hook_destroy(xn_bpf_tc_hook *hook)'),
    tc_attach: so.func('int bpf_tc_attach(xn_bpf_tc_hook *hook, _Inout_ xn_bpf_tc_opts *opts)'),
    tc_detach: so.func('int bpf_tc_detach(xn_bpf_tc_hook *hook, xn_bpf_tc_opts *opts)'),
    tc_query: so.func('int bpf_tc_query(xn_bpf_tc_hook *hook, _Inout_ xn_bpf_tc_opts *opts)'),
    probe_prog_type: so.func('int libbpf_probe_bpf_prog_type(int prog_type, void *opts)'),
    probe_map_type: so.func('int libbpf_probe_bpf_map_type(int map_type, void *opts)'),
    probe_helper: so.func('int libbpf_probe_bpf_helper(int prog_type, int helper_id, void *opts)'),
    map_create: so.func(
      'int bpf_map_create(int map_type, const char *name, uint32_t key_size, uint32_t value_size, uint32_t max_entries, xn_bpf_map_create_opts *opts)',
    ),
    program_attach_iter: so.func('void *bpf_program__attach_iter(void *prog, xn_bpf_iter_attach_opts *opts)'),
    link_fd: so.func('int bpf_link__fd(void *link)'),
    link_destroy: so.func('int bpf_link__destroy(void *link)'),
    iter_create: so.func('int bpf_iter_create(int link_fd)'),
    link_create: so.func('int bpf_link_create(int prog_fd, int target_fd, int attach_type, xn_bpf_link_create_opts *opts)'),
    link_update: so.func('int bpf_link_update(int link_fd, int new_prog_fd, void *opts)'),
    map_key_size: so.func('uint32_t bpf_map__key_size(void *map)'),
    map_value_size: so.func('uint32_t bpf_map__value_size(void *map)'),
    map_btf_key_type_id: so.func('uint32_t bpf_map__btf_key_type_id(void *map)'),
    map_btf_value_type_id: so.func('uint32_t bpf_map__btf_value_type_id(void *map)'),
    map_pin_path: so.func('const char *bpf_map__pin_path(void *map)'),
  };
}

let L: ReturnType<typeof bind> | undefined;
const libbpfMessages: string[] = [];

/** Loads libbpf on first use and routes its messages into a buffer (shown with --verbose). */
function lib(): ReturnType<typeof bind> {
  if (L) return L;
  L = bind();
  const cb = koffi.register((_level: number, fmt: string, ap: unknown) => {
    libbpfMessages.push(vformat(fmt, ap).trimEnd());
    if (libbpfMessages.length > 200) libbpfMessages.shift();
    return 0;
  }, koffi.pointer(L.PrintFn));
  L.set_print(cb as never);
  return L;
}

/** libbpf's recent diagnostics (warnings and errors), oldest first. */
export function libbpfLog(): string[] {
  return [...libbpfMessages];
}

function errno(): number {
  return koffi.errno();
}

/** Throws BpfError for a libbpf int return (negative errno in libbpf 1.x). */
function check(ret: number, op: string, target: string, hint?: string): number {
  if (ret < 0) throw new BpfError(op, target, -ret, hint);
  return ret;
}

export function numPossibleCpus(): number {
  return lib().num_possible_cpus() as number;
}

export interface OpenOptions {
  /** Maps marked LIBBPF_PIN_BY_NAME are pinned (or adopted) under this directory. */
  pinRoot?: string;
  /** Only these programs are loaded (all when omitted). */
  programs?: string[];
}

/** A .bpf.o file: open → configure (consts, map sizes) → load → use. */
export class BpfObject {
  private logBuf = Buffer.alloc(1 << 20);
  private loaded = false;

  private constructor(
    private handle: Ptr,
    readonly path: string,
  ) {}

  static open(path: string, opts: OpenOptions = {}): BpfObject {
    if (!existsSync(path)) throw new XdpnetError(`object file missing: ${path}`, 'build it with `make`');
    const l = lib();
    const o = new BpfObject(null, path);
    const handle = l.object_open_file(path, {
      sz: koffi.sizeof(l.OpenOpts),
      object_name: null,
      relaxed_maps: false,
      pin_root_path: opts.pinRoot ?? null,
      _removed: 0,
      kconfig: null,
      btf_custom_path: null,
      kernel_log_buf: o.logBuf,
      kernel_log_size: o.logBuf.length,
      kernel_log_level: 0, // libbpf retries with a log only when the load fails
    }) as Ptr;
    if (!handle) throw new BpfError('open object', path, errno());
    o.handle = handle;
    if (opts.programs) {
      for (const p of o.programHandles()) {
        l.program_set_autoload(p.handle, opts.programs.includes(p.name));
      }
    }
    if (opts.pinRoot) o.matchPinnedDevmaps(opts.pinRoot);
    if (opts.pinRoot) o.pinSectionMaps(opts.pinRoot);
    return o;
  }

  /**
   * A global in a section of its own (".data.NAME", e.g. the monitor switch
   * xn_mon) is a one-entry array map the datapath reads with a single load.
   * Pinned as NAME, every object of the instance shares it.
   */
  private pinSectionMaps(pinRoot: string): void {
    const l = lib();
    for (const { name, handle } of this.mapHandles()) {
      if (name.startsWith('.data.')) check(l.map_set_pin_path(handle, join(pinRoot, name.slice(6))), 'set pin path of map', name);
    }
  }

  /**
   * The kernel adds BPF_F_RDONLY_PROG to every devmap/cpumap it creates (and
   * refuses it at creation), and libbpf 1.1 then finds the pin's flags differ
   * from the definition's and will not adopt it. Matching the flags only when a
   * pin exists lets the next object reuse it (newer libbpf does the same).
   */
  private matchPinnedDevmaps(pinRoot: string): void {
    const l = lib();
    for (const { name, handle } of this.mapHandles()) {
      if (DEVMAP_TYPES.has(l.map_type(handle) as number) && existsSync(join(pinRoot, name))) {
        l.map_set_flags(handle, (l.map_flags(handle) as number) | BPF_F_RDONLY_PROG);
      }
    }
  }

  private get h(): Ptr {
    if (!this.handle) throw new XdpnetError(`object ${this.path} is closed`);
    return this.handle;
  }

  private *programHandles(): Generator<{ name: string; handle: Ptr }> {
    const l = lib();
    for (let p = l.object_next_program(this.h, null) as Ptr; p; p = l.object_next_program(this.h, p) as Ptr) {
      yield { name: l.program_name(p) as string, handle: p };
    }
  }

  private *mapHandles(): Generator<{ name: string; handle: Ptr }> {
    const l = lib();
    for (let m = l.object_next_map(this.h, null) as Ptr; m; m = l.object_next_map(this.h, m) as Ptr) {
      yield { name: l.map_name(m) as string, handle: m };
    }
  }

  private mapHandle(name: string): Ptr {
    for (const m of this.mapHandles()) if (m.name === name) return m.handle;
    throw new XdpnetError(`map ${name} not found in ${this.path}`);
  }

  /** Raw BTF of the opened object (datasec sizes and offsets fixed up by libbpf). */
  btf(): Buffer {
    const l = lib();
    const btf = l.object_btf(this.h) as Ptr;
    if (!btf) throw new XdpnetError(`${this.path} has no BTF (build with -g)`);
    const size = [0];
    const p = l.btf_raw_data(btf, size) as Ptr;
    return Buffer.from(koffi.view(p, size[0]).slice(0));
  }

  /** Overwrites bytes of the .rodata section before load (see objects/btf.ts for offsets). */
  writeRodata(offset: number, bytes: Buffer): void {
    if (this.loaded) throw new XdpnetError('rodata can only be set before load');
    const l = lib();
    const rodata = [...this.mapNames()].find((n) => n.endsWith('.rodata'));
    if (!rodata) throw new XdpnetError(`${this.path} has no .rodata section`);
    const size = [0];
    const p = l.map_initial_value(this.mapHandle(rodata), size) as Ptr;
    if (!p || offset + bytes.length > size[0]) throw new XdpnetError(`rodata write out of range in ${this.path}`);
    Buffer.from(koffi.view(p, size[0])).set(bytes, offset);
  }

  setMaxEntries(map: string, n: number): void {
    check(lib().map_set_max_entries(this.mapHandle(map), n), 'set max_entries of map', map);
  }

  /** Changes a map's type before load (BPF_MAP_TYPE_*: measuring another table kind on the same programs). */
  setMapType(map: string, type: number): void {
    check(lib().map_set_type(this.mapHandle(map), type), 'set type of map', map);
  }

  /** max_entries as compiled (or as set before load). */
  maxEntries(map: string): number {
    return lib().map_max_entries(this.mapHandle(map)) as number;
  }

  /** Each map's type and flags as defined (before load), for feature checks. */
  mapDefs(): Array<{ name: string; type: number; flags: number }> {
    const l = lib();
    return [...this.mapHandles()].map((m) => ({ name: m.name, type: l.map_type(m.handle) as number, flags: l.map_flags(m.handle) as number }));
  }

  /** Names of every program in the object (loaded or not). */
  programNames(): string[] {
    return [...this.programHandles()].map((p) => p.name);
  }

  /**
   * What the object will make of each map (after open and configuration,
   * before load): sizes, BTF type ids of key and value, where it is pinned,
   * and the initial bytes of global-data sections (.rodata consts).
   */
  mapSpecs(): MapSpec[] {
    const l = lib();
    return [...this.mapHandles()].map(({ name, handle }) => {
      const size = [0];
      const p = l.map_initial_value(handle, size) as Ptr;
      return {
        name, maxEntries: l.map_max_entries(handle) as number, keySize: l.map_key_size(handle) as number,
        valueSize: l.map_value_size(handle) as number, keyType: l.map_btf_key_type_id(handle) as number,
        valueType: l.map_btf_value_type_id(handle) as number, pinPath: (l.map_pin_path(handle) as string | null) ?? null,
        initial: p && size[0] ? Buffer.from(koffi.view(p, size[0]).slice(0)) : null,
      };
    });
  }

  *mapNames(): Generator<string> {
    for (const m of this.mapHandles()) yield m.name;
  }

  load(): this {
    const ret = lib().object_load(this.h) as number;
    if (ret < 0) {
      const log = this.logBuf.toString('utf8', 0, Math.max(0, this.logBuf.indexOf(0)));
      // The log names the failing program only through libbpf's messages.
      const failed = libbpfMessages
        .map((m) => /prog '([^']+)': (?:BPF program load failed|failed to load)/.exec(m)?.[1])
        .filter(Boolean)
        .pop();
      if (log) throw new VerifierError(failed ?? this.path, -ret, log);
      throw new BpfError('load object', this.path, -ret, libbpfMessages.slice(-3).join('\n') || undefined);
    }
    this.loaded = true;
    return this;
  }

  program(name: string): BpfProgram {
    for (const p of this.programHandles()) {
      if (p.name === name) {
        const fd = lib().program_fd(p.handle) as number;
        if (fd < 0) throw new XdpnetError(`program ${name} of ${this.path} is not loaded`);
        return new BpfProgram(fd, name, false);
      }
    }
    throw new XdpnetError(`program ${name} not found in ${this.path}`);
  }

  /**
   * Attaches an iterator program (SEC("iter/...")): over `map`'s elements for
   * a map element iterator, else over its kind of object (every map, ...).
   * Each read() of the returned link runs the program anew.
   */
  attachIter(program: string, map?: BpfMap): BpfIter {
    const l = lib();
    const p = [...this.programHandles()].find((x) => x.name === program);
    if (!p) throw new XdpnetError(`program ${program} not found in ${this.path}`);
    const info = Buffer.alloc(8); // union bpf_iter_link_info: map.map_fd first
    if (map) info.writeUInt32LE(map.fd, 0);
    const link = l.program_attach_iter(p.handle, { sz: koffi.sizeof(l.IterAttachOpts), link_info: map ? info : null, link_info_len: map ? info.length : 0 }) as Ptr;
    if (!link) throw new BpfError('attach iterator', map ? `${program} to map ${map.name}` : program, errno());
    return new BpfIter(link, map ? `${program} over ${map.name}` : program);
  }

  map(name: string): BpfMap {
    const fd = lib().map_fd(this.mapHandle(name)) as number;
    if (fd < 0) throw new XdpnetError(`map ${name} of ${this.path} is not created yet (load first)`);
    return BpfMap.fromFd(fd, name, false);
  }

  /** Frees libbpf's object; fds handed out by program()/map() close with it. */
  close(): void {
    if (this.handle) lib().object_close(this.handle);
    this.handle = null;
  }
}

/** An attached BPF iterator (a link): read() runs it to the end and returns what it wrote. */
export class BpfIter {
  constructor(
    private link: Ptr,
    readonly name: string,
  ) {}

  read(): Buffer {
    const l = lib();
    if (!this.link) throw new XdpnetError(`iterator ${this.name} is closed`);
    const fd = check(l.iter_create(l.link_fd(this.link) as number) as number, 'create iterator', this.name);
    const parts: Buffer[] = [];
    try {
      for (;;) {
        const buf = Buffer.alloc(8192);
        let n: number;
        try {
          n = readSync(fd, buf);
        } catch (e) {
          // The kernel pauses a long walk that has written nothing yet (1M elements, or a
          // reschedule) with EAGAIN; the next read goes on where it stopped.
          if ((e as NodeJS.ErrnoException).code === 'EAGAIN' || (e as NodeJS.ErrnoException).code === 'EINTR') continue;
          throw new BpfError('read iterator', this.name, (e as NodeJS.ErrnoException).errno ?? EINVAL);
        }
        if (!n) return Buffer.concat(parts);
        parts.push(buf.subarray(0, n));
      }
    } finally {
      closeFd(fd);
    }
  }

  close(): void {
    if (this.link) lib().link_destroy(this.link);
    this.link = null;
  }
}

export interface MapSpec {
  name: string;
  maxEntries: number;
  keySize: number;
  valueSize: number;
  /** BTF type ids in the object's BTF (0: none). */
  keyType: number;
  valueType: number;
  /** Where libbpf pins (or adopts) it; null for maps of this object alone. */
  pinPath: string | null;
  initial: Buffer | null;
}

export interface TestRunOptions {
  data: Buffer;
  /** Room for the output frame (defaults to input length + 256 for encapsulation). */
  dataOutSize?: number;
  ctx?: Buffer;
  repeat?: number;
  flags?: number;
  batchSize?: number;
}

export interface TestRunResult {
  retval: number;
  data: Buffer;
  durationNs: number;
}

export class BpfProgram {
  constructor(
    readonly fd: number,
    readonly name: string,
    private owned: boolean,
  ) {}

  static fromPin(path: string): BpfProgram {
    return new BpfProgram(objGet(path), path, true);
  }

  /** A loaded program by its kernel id (e.g. an attached one's, from its link). */
  static fromId(id: number): BpfProgram {
    return new BpfProgram(check(lib().prog_get_fd_by_id(id) as number, 'open program', `id ${id}`), `program ${id}`, true);
  }

  /** BPF_PROG_TEST_RUN: runs the program on a frame (or sends live frames). */
  testRun(o: TestRunOptions): TestRunResult {
    const l = lib();
    const live = ((o.flags ?? 0) & BPF_F_TEST_XDP_LIVE_FRAMES) !== 0;
    const out = live ? null : Buffer.alloc(o.dataOutSize ?? o.data.length + 256);
    const opts = {
      sz: koffi.sizeof(l.TestRunOpts),
      data_in: o.data,
      data_out: out,
      data_size_in: o.data.length,
      data_size_out: out?.length ?? 0,
      ctx_in: o.ctx ?? null,
      ctx_out: null,
      ctx_size_in: o.ctx?.length ?? 0,
      ctx_size_out: 0,
      retval: 0,
      repeat: o.repeat ?? 1,
      duration: 0,
      flags: o.flags ?? 0,
      cpu: 0,
      batch_size: o.batchSize ?? 0,
    };
    check(l.prog_test_run_opts(this.fd, opts), 'test-run program', this.name);
    return {
      retval: opts.retval,
      data: out ? out.subarray(0, opts.data_size_out) : Buffer.alloc(0),
      durationNs: opts.duration,
    };
  }

  /** A runner for many single frames of up to maxLen bytes with a ctxLen-byte context (see FrameRunner). */
  frameRunner(maxLen: number, ctxLen: number): FrameRunner {
    return new FrameRunner(this, maxLen, ctxLen);
  }

  close(): void {
    if (this.owned) closeFd(this.fd);
  }
}

/**
 * BPF_PROG_TEST_RUN for millions of frames (the fuzz tier): the options, the
 * context, the frame and the output live in one block of C memory that the
 * options point into, so a run is one FFI call with nothing to marshal or
 * allocate (testRun() converts a JS object to the C struct and back on every
 * call). Write the context through `ctx`; `output` is valid until the next run.
 */
export class FrameRunner {
  /** The context the program gets (struct xdp_md / __sk_buff), written in place. */
  readonly ctx: Buffer;
  private readonly mem: unknown;
  private readonly block: Buffer;
  private readonly opts: Buffer;
  private readonly input: Buffer;
  private readonly out: Buffer;
  private readonly at: { retval: number; sizeIn: number; sizeOut: number };

  constructor(
    private readonly prog: BpfProgram,
    readonly maxLen: number,
    ctxLen: number,
  ) {
    const l = lib();
    const optsLen = koffi.sizeof(l.TestRunOpts);
    const align = (n: number) => Math.ceil(n / 64) * 64;
    const ctxAt = align(optsLen);
    const inAt = ctxAt + align(ctxLen);
    const outAt = inAt + align(maxLen);
    const outLen = maxLen + 256; // room to encapsulate
    this.mem = koffi.alloc('uint8_t', outAt + outLen);
    this.block = Buffer.from(koffi.view(this.mem, outAt + outLen));
    this.block.fill(0);
    const base = koffi.address(this.mem);
    const off = (f: string) => koffi.offsetof(l.TestRunOpts, f);
    this.opts = this.block.subarray(0, optsLen);
    this.ctx = this.block.subarray(ctxAt, ctxAt + ctxLen);
    this.input = this.block.subarray(inAt, inAt + maxLen);
    this.out = this.block.subarray(outAt, outAt + outLen);
    this.opts.writeBigUInt64LE(BigInt(optsLen), off('sz'));
    this.opts.writeBigUInt64LE(base + BigInt(inAt), off('data_in'));
    this.opts.writeBigUInt64LE(base + BigInt(outAt), off('data_out'));
    if (ctxLen) this.opts.writeBigUInt64LE(base + BigInt(ctxAt), off('ctx_in'));
    this.opts.writeUInt32LE(ctxLen, off('ctx_size_in'));
    this.opts.writeInt32LE(1, off('repeat'));
    this.at = { retval: off('retval'), sizeIn: off('data_size_in'), sizeOut: off('data_size_out') };
  }

  /** Runs the program on frame: 0, or the negative errno (EINVAL: the kernel refused the frame). */
  run(frame: Buffer): number {
    if (frame.length > this.maxLen) throw new XdpnetError(`test-run program ${this.prog.name}: frame of ${frame.length} bytes, the runner takes ${this.maxLen}`);
    frame.copy(this.input);
    this.opts.writeUInt32LE(frame.length, this.at.sizeIn);
    this.opts.writeUInt32LE(this.out.length, this.at.sizeOut);
    this.opts.writeUInt32LE(0, this.at.retval);
    return lib().prog_test_run_raw(this.prog.fd, this.mem) as number;
  }

  get retval(): number {
    return this.opts.readUInt32LE(this.at.retval);
  }

  /** The frame as the program left it (a view, valid until the next run). */
  get output(): Buffer {
    return this.out.subarray(0, this.opts.readUInt32LE(this.at.sizeOut));
  }

  close(): void {
    koffi.free(this.mem);
  }
}

export interface MapInfo {
  type: number;
  id: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  name: string;
}

/** A map by fd, with raw-bytes operations; typed access lives in objects/. */
export class BpfMap {
  readonly perCpu: boolean;
  /** Bytes one lookup returns: per-CPU maps give one 8-byte aligned slot per possible CPU. */
  readonly valueBufSize: number;

  private constructor(
    readonly fd: number,
    readonly name: string,
    readonly info: MapInfo,
    private owned: boolean,
  ) {
    this.perCpu = PERCPU_MAP_TYPES.has(info.type);
    this.valueBufSize = this.perCpu ? Math.ceil(info.valueSize / 8) * 8 * numPossibleCpus() : info.valueSize;
  }

  static fromFd(fd: number, name: string, owned: boolean): BpfMap {
    const buf = Buffer.alloc(96); // struct bpf_map_info (prefix)
    check(lib().obj_get_info_by_fd(fd, buf, [buf.length]), 'get info of map', name);
    const info: MapInfo = {
      type: buf.readUInt32LE(0),
      id: buf.readUInt32LE(4),
      keySize: buf.readUInt32LE(8),
      valueSize: buf.readUInt32LE(12),
      maxEntries: buf.readUInt32LE(16),
      name: buf.toString('utf8', 24, 40).replace(/\0.*$/s, ''),
    };
    return new BpfMap(fd, name, info, owned);
  }

  static fromPin(path: string): BpfMap {
    return BpfMap.fromFd(objGet(path), path, true);
  }

  /** Runs fn on a pinned map and closes it; undefined when nothing is pinned there. */
  static usePin<T>(path: string, fn: (m: BpfMap) => T): T | undefined {
    if (!existsSync(path)) return undefined;
    const m = BpfMap.fromPin(path);
    try {
      return fn(m);
    } finally {
      m.close();
    }
  }

  /**
   * Runs fn with several maps pinned in one folder, by role ({role: map name}),
   * and closes them; undefined unless every one is pinned there.
   */
  static usePins<K extends string, T>(dir: string, names: Record<K, string>, fn: (m: Record<K, BpfMap>) => T): T | undefined {
    const pins = Object.entries(names).map(([k, name]) => [k, join(dir, name as string)] as const);
    if (!pins.every(([, pin]) => existsSync(pin))) return undefined;
    const m = {} as Record<K, BpfMap>;
    try {
      for (const [k, pin] of pins) m[k as K] = BpfMap.fromPin(pin);
      return fn(m);
    } finally {
      Object.values<BpfMap>(m).forEach((x) => x.close());
    }
  }

  /**
   * Refuses buffers whose size is not the map's before the kernel reads them:
   * the kernel copies key_size/value_size bytes from whatever pointer it gets,
   * so a short buffer would be read past its end and a long one cut silently.
   */
  private checkSizes(op: string, keys: Buffer, values?: Buffer, count?: number): void {
    // One element: exactly the map's size. A batch of count: at least count of them (the kernel reads no more).
    const bad = (b: Buffer, one: number) => (count === undefined ? b.length !== one : b.length < one * count);
    const say = (what: string, b: Buffer, one: number) => {
      throw new XdpnetError(`${op} ${this.name}: ${what} buffer is ${b.length} bytes, the map needs ${count === undefined ? one : `${count} × ${one}`}`,
        "a codec and the map disagree: rebuild, or re-create the instance's maps");
    };
    if (bad(keys, this.info.keySize)) say('key', keys, this.info.keySize);
    if (values && bad(values, this.valueBufSize)) say('value', values, this.valueBufSize);
  }

  lookup(key: Buffer): Buffer | undefined {
    this.checkSizes('lookup in map', key);
    const v = Buffer.alloc(this.valueBufSize);
    const ret = lib().map_lookup_elem(this.fd, key, v) as number;
    if (ret === -ENOENT) return undefined;
    check(ret, 'lookup in map', this.name);
    return v;
  }

  update(key: Buffer, value: Buffer, flags = BPF_ANY): void {
    this.checkSizes('update map', key, value);
    check(lib().map_update_elem(this.fd, key, value, flags), 'update map', this.name);
  }

  /** Returns false when the key was not there. */
  delete(key: Buffer): boolean {
    this.checkSizes('delete from map', key);
    const ret = lib().map_delete_elem(this.fd, key) as number;
    if (ret === -ENOENT) return false;
    check(ret, 'delete from map', this.name);
    return true;
  }

  *keys(): Generator<Buffer> {
    const l = lib();
    let prev: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(this.info.keySize);
      const ret = l.map_get_next_key(this.fd, prev, next) as number;
      if (ret === -ENOENT) return;
      check(ret, 'iterate map', this.name);
      yield next;
      prev = next;
    }
  }

  /**
   * Reads every entry in batches of up to `chunk` entries, one syscall each, and hands fn the
   * raw key and value bytes of each batch (n entries, packed; the buffers are reused): no
   * Buffer or FFI call per entry, the path for big tables. Map types without batch ops
   * are iterated one entry at a time.
   */
  scan(fn: (keys: Buffer, values: Buffer, n: number) => void, chunk = 8192): void {
    const l = lib();
    const { keySize } = this.info;
    const keys = Buffer.alloc(keySize * chunk);
    const values = Buffer.alloc(this.valueBufSize * chunk);
    const inBatch = Buffer.alloc(Math.max(keySize, 8));
    const outBatch = Buffer.alloc(Math.max(keySize, 8));
    const opts = { sz: koffi.sizeof(l.BatchOpts), elem_flags: 0, flags: 0 };
    for (let first = true; ; first = false) {
      const count = [chunk];
      const ret = l.map_lookup_batch(this.fd, first ? null : inBatch, outBatch, keys, values, count, opts) as number;
      if (first && (ret === -EINVAL || ret === -EOPNOTSUPP || ret === -ENOTSUPP)) {
        // EINVAL/EOPNOTSUPP/ENOTSUPP (the kernel's own, e.g. devmaps): no batch op for this map type
        for (const k of this.keys()) {
          const v = this.lookup(k);
          if (v) fn(k, v, 1);
        }
        return;
      }
      if (ret < 0 && ret !== -ENOENT) check(ret, 'batch lookup in map', this.name);
      if (count[0]) fn(keys, values, count[0]);
      if (ret === -ENOENT) return; // iteration complete
      outBatch.copy(inBatch);
    }
  }

  /** All entries, copied out (see scan() for big tables). */
  entries(): Array<[Buffer, Buffer]> {
    const { keySize } = this.info;
    const vs = this.valueBufSize;
    const out: Array<[Buffer, Buffer]> = [];
    this.scan((keys, values, n) => {
      for (let i = 0; i < n; i++) {
        out.push([Buffer.from(keys.subarray(i * keySize, (i + 1) * keySize)), Buffer.from(values.subarray(i * vs, (i + 1) * vs))]);
      }
    }, 4096);
    return out;
  }

  /** How many entries the map holds (a full scan). */
  count(): number {
    let n = 0;
    this.scan((_k, _v, c) => (n += c));
    return n;
  }

  /** Writes many entries in one syscall. Not atomic: on error the message says how many went in. */
  updateBatch(keys: Buffer, values: Buffer, count: number, elemFlags = BPF_ANY): void {
    this.checkSizes('batch update map', keys, values, count);
    const l = lib();
    const n = [count];
    const ret = l.map_update_batch(this.fd, keys, values, n, { sz: koffi.sizeof(l.BatchOpts), elem_flags: elemFlags, flags: 0 }) as number;
    check(ret, 'batch update map', this.name, `${n[0]} of ${count} entries were written`);
  }

  /**
   * Deletes `count` packed keys in as few syscalls as possible, skipping keys that are
   * already gone (the kernel's batch delete stops at the first missing one). Returns how
   * many were deleted.
   */
  deleteKeys(keys: Buffer, count: number): number {
    const l = lib();
    const ks = this.info.keySize;
    this.checkSizes('batch delete from map', keys, undefined, count);
    const opts = { sz: koffi.sizeof(l.BatchOpts), elem_flags: 0, flags: 0 };
    let deleted = 0;
    for (let at = 0; at < count;) {
      const n = [count - at];
      const ret = l.map_delete_batch(this.fd, keys.subarray(at * ks), n, opts) as number;
      deleted += n[0];
      at += n[0];
      if (ret === -ENOENT) at++; // this key was gone: skip it
      else check(ret, 'batch delete from map', this.name);
    }
    return deleted;
  }

  deleteBatch(keys: Buffer, count: number): void {
    this.checkSizes('batch delete from map', keys, undefined, count);
    const l = lib();
    check(
      l.map_delete_batch(this.fd, keys, [count], { sz: koffi.sizeof(l.BatchOpts), elem_flags: 0, flags: 0 }),
      'batch delete from map',
      this.name,
    );
  }

  close(): void {
    if (this.owned) closeFd(this.fd);
  }
}

export function objGet(path: string): number {
  return check(lib().obj_get(path) as number, 'open pinned object', path);
}

export function objPin(fd: number, path: string): void {
  check(lib().obj_pin(fd, path) as number, 'pin', path);
}

export interface LinkInfo {
  type: string;
  id: number;
  progId: number;
  /** 0 once the interface the link was attached to is gone. */
  ifindex: number;
}

export function linkInfo(fd: number, what: string): LinkInfo {
  const buf = Buffer.alloc(64); // struct bpf_link_info (prefix)
  check(lib().obj_get_info_by_fd(fd, buf, [buf.length]), 'get info of link', what);
  const type = buf.readUInt32LE(0);
  return {
    type: LINK_TYPE[type] ?? `type ${type}`,
    id: buf.readUInt32LE(4),
    progId: buf.readUInt32LE(8),
    ifindex: buf.readUInt32LE(16), // xdp.ifindex and tcx.ifindex share this offset
  };
}

/** The info of a pinned link. */
export function pinnedLinkInfo(pin: string): LinkInfo {
  const fd = objGet(pin);
  try {
    return linkInfo(fd, pin);
  } finally {
    closeFd(fd);
  }
}

/** bpf_link_create: an XDP (with mode flags) or tcx link; returns its fd. */
export function linkCreate(progFd: number, ifindex: number, attachType: number, flags: number, what: string): number {
  const l = lib();
  return check(
    l.link_create(progFd, ifindex, attachType, { sz: koffi.sizeof(l.LinkCreateOpts), flags }) as number,
    'attach',
    what,
  );
}

/** The id of a program by fd (e.g. one opened from a pin). */
export function progId(fd: number, what: string): number {
  return progInfo(fd, what).id;
}

/** A program's id and name (cut at 15 characters by the kernel). */
export function progInfo(fd: number, what: string): { id: number; name: string } {
  const buf = Buffer.alloc(80); // struct bpf_prog_info (prefix): type, id, tag, ..., name at 64
  check(lib().obj_get_info_by_fd(fd, buf, [buf.length]), 'get info of program', what);
  return { id: buf.readUInt32LE(4), name: buf.toString('utf8', 64, 80).replace(/\0.*$/s, '') };
}

/**
 * Swaps the program a link runs (XDP, tcx) in one step: the hook never runs
 * without a program (bpf_link_update).
 */
export function linkUpdate(linkFd: number, newProgFd: number, what: string): void {
  check(lib().link_update(linkFd, newProgFd, null) as number, 'replace the program of', what);
}

/** Creates a map from user space (one no BPF object defines); the caller owns it. */
export function mapCreate(type: number, name: string, keySize: number, valueSize: number, maxEntries: number): BpfMap {
  const l = lib();
  const fd = check(l.map_create(type, name, keySize, valueSize, maxEntries, null) as number, 'create map', name);
  return BpfMap.fromFd(fd, name, true);
}

/**
 * Whether the kernel has tcx links (6.6+). Asks for a tcx link to no
 * interface: a kernel that knows the attach type says ENODEV; an older one
 * EINVAL (it does not know BPF_TCX_INGRESS). Anything else also means no tcx:
 * the classic path works wherever tc does.
 */
export function probeTcx(tcProgFd: number): boolean {
  const l = lib();
  const ret = l.link_create(tcProgFd, 0, BPF_TCX_INGRESS, { sz: koffi.sizeof(l.LinkCreateOpts), flags: 0 }) as number;
  if (ret >= 0) closeFd(ret);
  return ret >= 0 || ret === -ENODEV;
}

// ---- classic tc: clsact qdisc and direct-action cls_bpf filters ------------

export const BPF_TC_INGRESS = 1;
export const BPF_TC_EGRESS = 2;
const BPF_TC_F_REPLACE = 1;

export interface TcFilterId { ifindex: number; handle: number; priority: number }

function tcHook(ifindex: number, attachPoint: number) {
  return { sz: koffi.sizeof(lib().TcHook), ifindex, attach_point: attachPoint, parent: 0 };
}

function tcOpts(o: { progFd?: number; flags?: number; handle: number; priority: number }) {
  return { sz: koffi.sizeof(lib().TcOpts), prog_fd: o.progFd ?? 0, flags: o.flags ?? 0, prog_id: 0, handle: o.handle, priority: o.priority };
}

/** Adds a clsact qdisc to the interface; false when it had one already (someone else's, or ours). */
export function clsactCreate(ifindex: number, what: string): boolean {
  const ret = lib().tc_hook_create(tcHook(ifindex, BPF_TC_INGRESS | BPF_TC_EGRESS)) as number;
  if (ret === -EEXIST) return false;
  check(ret, 'add clsact qdisc to', what);
  return true;
}

/** Deletes the interface's clsact qdisc with every filter on it (callers check it is empty). */
export function clsactDestroy(ifindex: number, what: string): void {
  const ret = lib().tc_hook_destroy(tcHook(ifindex, BPF_TC_INGRESS | BPF_TC_EGRESS)) as number;
  if (ret !== -ENOENT && ret !== -ENODEV && ret !== -EINVAL) check(ret, 'delete clsact qdisc of', what); // gone already
}

/** Adds or replaces (same handle and priority) a direct-action cls_bpf filter on clsact ingress; returns its program id. */
export function tcFilterAttach(progFd: number, f: TcFilterId, what: string): number {
  const l = lib();
  const opts = tcOpts({ progFd, flags: BPF_TC_F_REPLACE, handle: f.handle, priority: f.priority });
  check(l.tc_attach(tcHook(f.ifindex, BPF_TC_INGRESS), opts) as number, 'attach tc filter', what);
  return opts.prog_id;
}

/** Removes one filter by handle and priority; false when it was not there. */
export function tcFilterDetach(f: TcFilterId, what: string): boolean {
  const ret = lib().tc_detach(tcHook(f.ifindex, BPF_TC_INGRESS), tcOpts(f)) as number;
  if (ret === -ENOENT || ret === -ENODEV || ret === -EINVAL) return false; // ENODEV/EINVAL: no such interface or qdisc
  check(ret, 'detach tc filter', what);
  return true;
}

/** The program id of the filter at this handle and priority, or 0 when there is none. */
export function tcFilterProgId(f: TcFilterId): number {
  const opts = tcOpts(f);
  const ret = lib().tc_query(tcHook(f.ifindex, BPF_TC_INGRESS), opts) as number;
  if (ret < 0) return 0; // ENOENT, or no qdisc / interface
  return opts.prog_id;
}

// ---- kernel feature probes (libbpf loads a tiny program or map) ------------

export function probeProgType(type: number): boolean {
  return (lib().probe_prog_type(type, null) as number) === 1;
}

export function probeMapType(type: number): boolean {
  return (lib().probe_map_type(type, null) as number) === 1;
}

export function probeHelper(progType: number, helper: number): boolean {
  return (lib().probe_helper(progType, helper, null) as number) === 1;
}

/** Whether the kernel creates a map of this type with these flags (e.g. BPF_F_MMAPABLE). */
export function probeMapFlags(type: number, flags: number): boolean {
  const l = lib();
  const fd = l.map_create(type, null, 4, 8, 1, {
    sz: koffi.sizeof(l.MapCreateOpts), btf_fd: 0, btf_key_type_id: 0, btf_value_type_id: 0,
    btf_vmlinux_value_type_id: 0, inner_map_fd: 0, map_flags: flags,
  }) as number;
  if (fd < 0) return false;
  closeFd(fd);
  return true;
}

/** The run time and count the kernel keeps for a program while kernel.bpf_stats_enabled is 1. */
export function progRunStats(progId: number): { name: string; runTimeNs: bigint; runCnt: bigint } | undefined {
  const fd = lib().prog_get_fd_by_id(progId) as number;
  if (fd < 0) return undefined;
  try {
    const buf = Buffer.alloc(216); // struct bpf_prog_info up to run_cnt
    check(lib().obj_get_info_by_fd(fd, buf, [buf.length]), 'get info of program', `id ${progId}`);
    return { name: buf.toString('utf8', 64, 80).replace(/\0.*$/s, ''), runTimeNs: buf.readBigUInt64LE(192), runCnt: buf.readBigUInt64LE(200) };
  } finally {
    closeFd(fd);
  }
}

/**
 * Turns on the kernel's run time accounting (as kernel.bpf_stats_enabled=1
 * does) for as long as the returned fd is open: it ends with the process,
 * whatever the sysctl is set to meanwhile. Costs every program ~20 ns a run.
 */
export function enableRunTimeStats(): number {
  return check(lib().enable_stats(0 /* BPF_STATS_RUN_TIME */) as number, 'enable run time stats', 'BPF_ENABLE_STATS');
}

/** Attaches a tp_btf/raw_tp program to its tracepoint; returns the link's fd (pinnable). */
export function rawTracepointOpen(progFd: number, what: string): number {
  return check(lib().raw_tracepoint_open(null, progFd) as number, 'attach tracepoint program', what);
}

/** A BPF ring buffer map's consumer: poll() hands each record to onRecord (a view valid only during the call). */
export class RingBuffer {
  private rb: Ptr;
  private cb: unknown;

  constructor(map: BpfMap, onRecord: (data: Buffer) => void) {
    const l = lib();
    this.cb = koffi.register((_ctx: unknown, data: unknown, size: number) => {
      onRecord(Buffer.from(koffi.view(data as never, Number(size))));
      return 0;
    }, koffi.pointer(l.SampleFn));
    this.rb = l.ring_buffer_new(map.fd, this.cb as never, null, null) as Ptr;
    if (!this.rb) {
      koffi.unregister(this.cb as never);
      throw new BpfError('open ring buffer', map.name, errno());
    }
  }

  /** Waits up to ms for records and consumes them; how many. */
  poll(ms: number): number {
    if (!this.rb) throw new XdpnetError('ring buffer is closed');
    const n = lib().ring_buffer_poll(this.rb, ms) as number;
    if (n < 0 && n !== -EINTR) check(n, 'poll ring buffer', 'xn_events'); // a signal, not an error
    return Math.max(n, 0);
  }

  close(): void {
    if (this.rb) lib().ring_buffer_free(this.rb);
    if (this.rb) koffi.unregister(this.cb as never);
    this.rb = null;
  }
}
