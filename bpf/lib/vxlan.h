/* The VXLAN VTEP (RFC 7348) of the bridge: encapsulation towards remote VTEPs
 * (XDP and tc ingress of bridge ports) and decapsulation (XDP on the uplink).
 * Configuration lookups, routing, header building and the flow hash are
 * shared; only the byte moving differs by hook. */
#pragma once
/* Split by job, each header including what it builds on:
 *   vx_maps.h    maps, outer header layout, VTEP lookups
 *   vx_hash.h    flow hash for the outer source port
 *   vx_route.h   outer routing and the XDP next-hop cache
 *   vx_header.h  outer header building
 *   vx_encap.h   encapsulation (XDP and tc)
 *   vx_decap.h   decapsulation (XDP and tc)
 *   vx_flood.h   head-end replication of floods (tc) */
#include "vx_decap.h"
#include "vx_flood.h"
