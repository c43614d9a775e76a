// SPDX-License-Identifier: GPL-2.0
/*
 * insns: a QEMU TCG plugin that counts the guest instructions executed,
 * by the address of the translation block that executed them.
 *
 * Usage: qemu-system-ppc64 -plugin lab-insns.so,out=FILE ...
 *
 * At exit, FILE gets a header line naming the columns ("# vaddr insns runs"
 * and the kinds), then one line per translation that ran: its start address
 * (hex), its instruction count, how many times it ran, and how many of its
 * instructions are of each kind that costs an emulator more than its count
 * says: isync (ends the translation block: back to the main loop), lwarx or
 * ldarx (an atomic's load), sync or lwsync, mtmsr or mtmsrd. An address
 * translated more than once has a line per translation. lab/bench --insns
 * boots each kernel twice, with different numbers of messages, and takes
 * the difference per message: exact counts, where timings on an emulated
 * CPU vary by more than the drivers differ.
 */
#include <glib.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <qemu-plugin.h>

#include "kind.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

struct block {
	uint64_t vaddr;
	uint64_t insns;
	uint64_t runs;
	unsigned int kinds[NR_KINDS];
};

static GPtrArray *blocks;
static GMutex lock;
static char *out;

static void block_ran(unsigned int vcpu, void *udata)
{
	struct block *b = udata;

	/* The counts are read at exit only: a torn add is one run off. */
	__atomic_fetch_add(&b->runs, 1, __ATOMIC_RELAXED);
}

static void translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	struct block *b = g_new0(struct block, 1);
	size_t i;

	b->vaddr = qemu_plugin_tb_vaddr(tb);
	b->insns = qemu_plugin_tb_n_insns(tb);
	for (i = 0; i < b->insns; i++) {
		uint32_t w;
		enum kind k;

		/*
		 * As the guest holds it: the kernel is little-endian, which
		 * is all lab/bench reads these counts for.
		 */
		if (qemu_plugin_insn_data(qemu_plugin_tb_get_insn(tb, i), &w,
					  sizeof(w)) != sizeof(w))
			continue;
		k = kind_of(GUINT32_FROM_LE(w));
		if (k != NR_KINDS)
			b->kinds[k]++;
	}
	g_mutex_lock(&lock);
	g_ptr_array_add(blocks, b);
	g_mutex_unlock(&lock);
	qemu_plugin_register_vcpu_tb_exec_cb(tb, block_ran,
					     QEMU_PLUGIN_CB_NO_REGS, b);
}

static void write_counts(qemu_plugin_id_t id, void *unused)
{
	FILE *f = fopen(out, "w");
	guint i;
	int k;

	if (!f) {
		g_autofree char *msg = g_strdup_printf("insns: %s: cannot write\n",
						       out);

		qemu_plugin_outs(msg);
		return;
	}
	fputs("# vaddr insns runs", f);
	for (k = 0; k < NR_KINDS; k++)
		fprintf(f, " %s", kind_names[k]);
	fputc('\n', f);
	g_mutex_lock(&lock);
	for (i = 0; i < blocks->len; i++) {
		struct block *b = g_ptr_array_index(blocks, i);

		if (!b->runs)
			continue;
		fprintf(f, "%" PRIx64 " %" PRIu64 " %" PRIu64, b->vaddr,
			b->insns, b->runs);
		for (k = 0; k < NR_KINDS; k++)
			fprintf(f, " %u", b->kinds[k]);
		fputc('\n', f);
	}
	g_mutex_unlock(&lock);
	fclose(f);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id,
					   const qemu_info_t *info,
					   int argc, char **argv)
{
	int i;

	for (i = 0; i < argc; i++)
		if (!strncmp(argv[i], "out=", 4) && argv[i][4])
			out = g_strdup(argv[i] + 4);
	if (!out) {
		fprintf(stderr, "insns: needs out=FILE\n");
		return -1;
	}
	blocks = g_ptr_array_new_with_free_func(g_free);
	qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
	qemu_plugin_register_atexit_cb(id, write_counts, NULL);
	return 0;
}
