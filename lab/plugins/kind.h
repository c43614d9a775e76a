/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kinds of Power instruction that lab/plugins/insns.c counts apart,
 * because they cost an emulator more than their count says, and their
 * decoder. A header of its own so that lab/plugins/kind-test.c can check
 * the decoder without QEMU's plugin API.
 */
#ifndef LAB_PLUGINS_KIND_H
#define LAB_PLUGINS_KIND_H

#include <stdint.h>

enum kind { ISYNC, LARX, SYNC, MTMSR, NR_KINDS };

/* The header's names of the kinds: lab/bench takes them from there. */
static const char *const kind_names[NR_KINDS] = {
	[ISYNC] = "isync", [LARX] = "larx", [SYNC] = "sync", [MTMSR] = "mtmsr",
};

/*
 * The kind of a Power instruction word, or NR_KINDS: primary opcode 19
 * with extended opcode 150 is isync, 31 with 20 or 84 lwarx or ldarx,
 * 31 with 598 sync (L=1: lwsync), 31 with 146 or 178 mtmsr or mtmsrd.
 */
static inline enum kind kind_of(uint32_t w)
{
	uint32_t xo = (w >> 1) & 0x3ff;

	if (w >> 26 == 19 && xo == 150)
		return ISYNC;
	if (w >> 26 != 31)
		return NR_KINDS;
	if (xo == 20 || xo == 84)
		return LARX;
	if (xo == 598)
		return SYNC;
	if (xo == 146 || xo == 178)
		return MTMSR;
	return NR_KINDS;
}

#endif /* LAB_PLUGINS_KIND_H */
