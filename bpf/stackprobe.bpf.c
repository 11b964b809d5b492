/* Not a datapath program: the loader (src/objects/paths.ts) loads it once to
 * learn how the verifier counts a call chain's stack against its 512 bytes.
 * A 488-byte frame calling a 16-byte one counts 496 + 16 = 512 where frames
 * are counted in 16-byte steps (Linux 6.8 and newer, with the JIT) and
 * 512 + 32 = 544, refused, where they are counted in 32-byte steps. The normal
 * objects' NAT programs need the former; the compat objects fit the latter. */
#include "lib/common.h"

/* The frames are written in asm: clang would shrink arrays it sees unused. */
static __noinline int xn_probe_callee(void)
{
	asm volatile("r1 = 0; *(u64 *)(r10 - 16) = r1" ::: "r1");
	return 0;
}

SEC("tc")
int xn_probe_stack(struct __sk_buff *skb)
{
	asm volatile("r1 = 0; *(u64 *)(r10 - 488) = r1" ::: "r1");
	return xn_probe_callee();
}

char LICENSE[] SEC("license") = "GPL";
