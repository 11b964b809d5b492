// The bpf-tier suites whose programs run live on a tc hook, again with the
// hook a direct-action filter on a clsact qdisc (what kernels without tcx get):
// the programs' return codes and redirects must mean the same there.
process.env.XDPNET_TC = 'clsact';

await import('./nat-translate.test.js');
await import('./nat-conntrack.test.js');
await import('./nat-delivery.test.js');
await import('./vxlan-encap.test.js');
await import('./vxlan-decap.test.js');
await import('./vxlan-interop.test.js');
