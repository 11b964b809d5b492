/* Bounds-checked parsing with a cursor: every header is pulled through
 * cursor_pull, so no helper reads past data_end. */
#pragma once
#include "common.h"

struct cursor {
	void *pos;
	void *end;
};

struct vlan_hdr {
	__be16 tci;
	__be16 proto; /* the encapsulated EtherType */
};

#define VLAN_VID_MASK 0x0fff

/* IPv4 fragment field bits, and AF_INET for bpf_fib_lookup (no libc here). */
#define IP_DF 0x4000
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#ifndef AF_INET
#define AF_INET 2
#endif

/* Returns a pointer to len bytes at the cursor and advances it, or NULL. */
__inline_fn void *cursor_pull(struct cursor *c, const __u32 len)
{
	void *p = c->pos;
	if (p + len > c->end)
		return NULL;
	c->pos = p + len;
	return p;
}

__inline_fn int mac_is_multicast(const __u8 *mac)
{
	return mac[0] & 1;
}

__inline_fn int mac_is_zero(const __u8 *mac)
{
	return !(mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]);
}

__inline_fn int mac_eq(const __u8 *a, const __u8 *b)
{
	return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) | (a[5] ^ b[5])) == 0;
}
