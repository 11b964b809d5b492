/* Loops over a callback, the same body on every kernel. Normally bpf_loop
 * (Linux 5.17): the verifier checks the callback once, whatever the count.
 * The compat objects (-DXN_COMPAT, build/bpf-compat: kernels 5.12-5.16) have
 * no bpf_loop, so the same callback runs in a bounded for loop, which the
 * verifier walks once per iteration: `max` must be a small constant there.
 * See docs/kernels.md. */
#pragma once
#include "common.h"

/* cb(i, data) for i = 0, 1, ... while i < n (and i < max, a constant: the
 * compat loop's bound), until cb returns nonzero; cb is
 * `static long cb(__u64 i, void *data)`, a bpf_loop callback. */
#ifdef XN_COMPAT
#define xn_loop(n, max, cb, data)                                              \
	do {                                                                   \
		__u32 n_ = (n);                                                \
		for (__u32 i_ = 0; i_ < (max) && i_ < n_; i_++)                \
			if (cb(i_, data))                                      \
				break;                                         \
	} while (0)
/* A function holding a loop. Under XN_COMPAT a global function: the verifier
 * checks it once, on its own, instead of walking its loop again for every
 * state its callers reach it in (the NAT and bridge programs exceed the
 * verifier's million instructions otherwise), and its locals stay off its
 * caller's stack frame. Its arguments must then be the context, scalars or
 * pointers to sized, initialised memory (Linux 5.12), and it must check a
 * pointer argument for NULL. */
#define __loop_fn __noinline
#else
/* max is the compat loop's bound: callers keep n within it. */
#define xn_loop(n, max, cb, data) bpf_loop(n, cb, data, 0)
#define __loop_fn __inline_fn
#endif
