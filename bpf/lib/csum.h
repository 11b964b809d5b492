/* Incremental Internet checksum updates (RFC 1624) on 32-bit ones'-complement
 * partial sums. The sum does not depend on byte order as long as every operand
 * is in network order, so fields are used exactly as loaded from the packet. */
#pragma once
#include "common.h"

__inline_fn __u32 csum_add(__u32 a, __u32 b)
{
	a += b;
	return a + (a < b); /* end-around carry */
}

__inline_fn __u16 csum_fold(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* What replacing a field adds to the sum: ~m + m' (RFC 1624, eqn. 3). */
__inline_fn __u32 csum_diff32(__be32 from, __be32 to)
{
	return csum_add(~from, to);
}

__inline_fn __u32 csum_diff16(__be16 from, __be16 to)
{
	return csum_add((__u16)~from, to);
}

/* A complete checksum after its data changed by diff: HC' = ~(~HC + diff).
 * Eqn. 3 rather than 2, so a field never turns into -0 wrongly. */
__inline_fn __sum16 csum_update(__sum16 check, __u32 diff)
{
	return (__sum16)~csum_fold(csum_add((__u16)~check, diff));
}

/* UDP: 0 means the sender computed no checksum (keep it so), and a computed
 * 0 goes out as 0xffff (RFC 768). */
__inline_fn __sum16 csum_update_udp(__sum16 check, __u32 diff)
{
	if (!check)
		return 0;
	check = csum_update(check, diff);
	return check ? check : 0xffff;
}
