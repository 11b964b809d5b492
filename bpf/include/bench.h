/* Shared with user space: src/objects/bench.ts mirrors these. */
#pragma once
#include <linux/types.h>

/* The generator's frames are Ethernet / IPv4 without options / UDP; the UDP
 * source port (varied over flows) sits at this offset. */
#define XN_GEN_SPORT_OFF 34
#define XN_GEN_HDR_MAX 128

/* Frame template: its first hdr_len bytes (a multiple of 8, at least
 * XN_GEN_SPORT_OFF + 2) are restored into every generated frame. */
struct xn_gen_frame {
	__u8 hdr[XN_GEN_HDR_MAX];
	__u32 hdr_len;
};

/* Per CPU: frames generated (xn_gen) or received (xn_sink). */
struct xn_bench_count {
	__u64 packets;
	__u64 bytes;
};
